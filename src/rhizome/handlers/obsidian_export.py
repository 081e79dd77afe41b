"""``obsidian_export``: documents → notes in the user's Obsidian vault.

Stages (✓ pause-safe): prepare ✓ (the vault is there; the documents are the user's),
documents ✓ (one checkpoint per document), finish. Each document gets its note
(``content.md`` with YAML frontmatter), its Highlights and Connections notes and its
``.rhizome/`` files, each rewritten only when its bytes changed; a note edited in the
vault since the last sync is left alone (see :mod:`rhizome.library.obsidian`). The job
runs on a worker that sees the vault (``rhizome worker --types
obsidian_export,obsidian_sync``); elsewhere it fails ``invalid`` with that advice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rhizome.errors import InvalidInputError
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import HOUR, Stage, registry
from rhizome.library.repo import Library

# The library code behind this job is imported when it runs, not when the job type is
# registered: a starting worker imports this module.

STAGES = (
    Stage("prepare", "Checking the vault", 0, 3),
    Stage("documents", "Writing notes", 3, 98),
    Stage("finish", "Finishing", 98, 100, pause_safe=False),
)
MAX_DOCUMENTS = 100_000
MAX_LISTED = 200


class ExportInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[str] | None = Field(None, max_length=MAX_DOCUMENTS)
    """The documents to export; None: every ready document of the user."""


@registry.job_type(
    "obsidian_export",
    label="Obsidian Export",
    icon="gem",
    stages=STAGES,
    input_model=ExportInput,
    owned={"document_ids": "document"},  # checked by the API before it enqueues
    time_limit_seconds=HOUR,  # 1,000 documents: under a minute
)
def obsidian_export(ctx: JobContext, data: ExportInput) -> dict[str, Any]:
    """Write documents as notes into the user's Obsidian vault."""
    from rhizome.library.obsidian import Context, export_document

    user = ctx.job.user_id
    scratch = f"jobs/{ctx.job.id}"

    def prepare() -> dict[str, Any]:
        vault = Context.open(ctx.store, ctx.storage, user, ctx.job.id)
        library = Library(ctx.store)
        if data.document_ids:
            ids = list(dict.fromkeys(library.get_document(d, user).id for d in data.document_ids))
        else:
            docs = library.list_documents(user, status="ready", limit=MAX_DOCUMENTS)
            ids = [d.id for d in reversed(docs)]  # oldest first
        if not ids:
            raise InvalidInputError(
                "There is nothing to export: the library has no ready documents.",
                "Add documents and wait for their processing to finish.",
            )
        payload = json.dumps(ids).encode()
        ctx.storage.put(f"{scratch}/documents.json", payload)
        return {
            "count": len(ids),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "vault": str(vault.vault.vault),
            "folder": vault.vault.subfolder,
        }

    prepared = ctx.run_stage("prepare", prepare)
    total = int(prepared["count"])

    def documents() -> dict[str, Any]:
        vault = Context.open(ctx.store, ctx.storage, user, ctx.job.id)
        payload = ctx.storage.get(f"{scratch}/documents.json")
        if hashlib.sha256(payload).hexdigest() != prepared["sha256"]:
            raise InvalidInputError(
                "The export's list of documents changed in storage.",
                "Restart the export from the beginning.",
            )
        ids: list[str] = json.loads(payload)
        cursor = ctx.cursor("written", start={"n": 0, "counts": {}, "other": []})
        state = dict(cursor.value)
        while state["n"] < total:
            n = state["n"]
            result = export_document(vault, ids[n], n)
            counts = dict(state["counts"])
            status = str(result.get("status"))
            counts[status] = counts.get(status, 0) + 1
            other = list(state["other"])
            if status in ("missing", "skipped", "refused") and len(other) < MAX_LISTED:
                other.append(result)
            state = {"n": n + 1, "counts": counts, "other": other}
            ctx.progress(
                fraction=(n + 1) / total,
                details=f"Note {n + 1:,} of {total:,} · {result.get('title') or ids[n]}",
                documents=n + 1,
                total=total,
            )
            cursor.save(state)  # after the note and its sync state are written
        return state

    written = ctx.run_stage("documents", documents)

    def finish() -> dict[str, Any]:
        vault = Context.open(ctx.store, ctx.storage, user, ctx.job.id)
        notes = [st.last_result for st in vault.repo.job_results(user, ctx.job.id)]
        listed = [n for n in notes if n][:MAX_LISTED] + list(written.get("other") or [])
        return {
            "documents": total,
            "counts": written["counts"],
            "vault": prepared["vault"],
            "folder": prepared["folder"],
            "vault_link": vault.vault.vault_link(),
            "notes": listed,
            "notes_listed": len(listed),
        }

    result: dict[str, Any] = ctx.run_stage("finish", finish)
    return result
