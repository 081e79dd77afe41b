"""``import_document``: an export ZIP (or a document folder already in storage) → the
library, with a strategy for documents that already have chunks: ``skip``, ``replace``
or ``merge_smart`` (seed §5.2).

Stages (✓ pause-safe): read ✓, validate ✓, apply ✓ (a checkpoint per document), embed ✓
(a checkpoint per batch), finish. Everything is validated before anything is written:
the archive (no ``..``, absolute paths or links; caps on entries, size and compression
ratio), every JSON file against its typed model, every file against its size and SHA-256
in the manifest, and the conflicts (none may be left without a strategy). A bad input
fails as ``invalid`` with nothing written outside the job's own folder
(``jobs/{job_id}/``) and nothing in the database changed. Each document is applied in one
transaction, after its files; a re-run after a crash gives the same result.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from rhizome.errors import InvalidInputError, RhizomeError
from rhizome.handlers.process_document import wait_for_model
from rhizome.jobs.client import enqueue
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import HOUR, Stage, registry
from rhizome.jobs.store.queries import load_queries
from rhizome.storage import validate_key

# The library's import code and the embedding model are imported when an import runs, not
# when the job type is registered: a starting worker imports this module.

STAGES = (
    Stage("read", "Reading the archive", 0, 8),
    Stage("validate", "Validating", 8, 25),
    Stage("apply", "Importing documents", 25, 70),
    Stage("embed", "Embedding", 70, 97),
    Stage("finish", "Finishing", 97, 100, pause_safe=False),
)
EMBED_BATCH = 32
KEEP_DETAILS = 200
"""Per-document results kept in the job output (totals cover every document)."""


class ImportInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zip_key: str | None = None
    """An export ZIP in storage: ``imports/{user}/…`` (an upload) or ``exports/{user}/…``."""
    document_id: str | None = None
    """Or a document folder already in storage (``documents/{user}/{document_id}``)."""
    strategy: Literal["skip", "replace", "merge_smart"] | None = None
    """For documents that already have chunks; without one such a conflict is an error."""
    regenerate_embeddings: bool = False
    reprocess_connections: bool = False
    """Queue a detect_connections job for every imported document."""
    delete_source: bool = False
    """Remove the uploaded ZIP once the import has finished."""

    @model_validator(mode="after")
    def _one_source(self) -> ImportInput:
        if (self.zip_key is None) == (self.document_id is None):
            raise ValueError("give either zip_key or document_id")
        return self


def _valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except RhizomeError:
        return False
    return True


def source_prefixes(user_id: str) -> tuple[str, str]:
    """Where a user's import ZIPs may come from: their uploads and their exports."""
    return f"imports/{user_id}/", f"exports/{user_id}/"


@registry.job_type(
    "import_document",
    label="Import",
    icon="upload",
    stages=STAGES,
    input_model=ImportInput,
    public=False,  # enqueued by the server (its own route), never from POST /api/jobs
    time_limit_seconds=2 * HOUR,  # as the export
)
def import_document(ctx: JobContext, data: ImportInput) -> dict[str, Any]:
    """Import an export ZIP or a storage folder into the library."""
    from rhizome.library.archive import hash_stream
    from rhizome.library.portability import (
        FolderSource,
        ImportConflictError,
        ImportSource,
        Remap,
        ZipSource,
        apply_document,
        find_taken_ids,
        plan_import,
        read_document,
    )
    from rhizome.library.repo import Library
    from rhizome.pipeline.embed import get_embedder

    user = ctx.job.user_id
    scratch = f"jobs/{ctx.job.id}"
    if data.zip_key is not None and (
        not data.zip_key.startswith(source_prefixes(user)) or not _valid_key(data.zip_key)
    ):
        raise InvalidInputError(
            f"{data.zip_key!r} is not one of your uploads or exports.",
            "Upload the ZIP (rhizome import FILE, or the Import/Export page).",
        )
    library = Library(ctx.store)
    queries = load_queries(ctx.store.dialect, "rhizome.library")
    with ExitStack() as stack:
        opened: dict[str, ImportSource] = {}

        def source() -> ImportSource:
            """The source, opened once per run (a ZIP is read from storage into a local
            temporary file on S3; on a local folder it is read in place)."""
            if "it" not in opened:
                if data.zip_key is not None:
                    try:
                        fh = stack.enter_context(ctx.storage.open_read(data.zip_key))
                    except FileNotFoundError:
                        raise InvalidInputError(
                            f"There is no file {data.zip_key} in storage.",
                            "Upload the ZIP again.",
                        ) from None
                    if ctx.is_done("read"):  # the same archive as the one validated
                        _, digest = hash_stream(fh)
                        fh.seek(0)
                        if digest != ctx.stage_result("read")["sha256"]:
                            raise InvalidInputError(
                                f"{data.zip_key} changed since the import began.",
                                "Restart the import from the beginning.",
                            )
                    zs = ZipSource(fh, data.zip_key.rsplit("/", 1)[-1])
                    stack.callback(zs.close)
                    opened["it"] = zs
                else:
                    assert data.document_id is not None
                    opened["it"] = FolderSource(ctx.storage, user, data.document_id)
            return opened["it"]

        def read() -> dict[str, Any]:
            src = source()
            out: dict[str, Any] = {"source": src.label, "documents": len(src.document_ids())}
            if isinstance(src, ZipSource):
                fh = src.zip.fp
                assert fh is not None
                fh.seek(0)
                out["size"], out["sha256"] = hash_stream(fh)
            ctx.progress(fraction=1.0, details=f"{out['documents']:,} documents", force=True)
            return out

        ctx.run_stage("read", read)

        def validate() -> dict[str, Any]:
            src = source()
            ids = src.document_ids()
            remap = Remap(user)
            for n, doc_id in enumerate(ids):
                doc = read_document(src, doc_id, verify=True)
                for taken in find_taken_ids(ctx.store, user, doc):
                    remap.add(taken)
                ctx.progress(
                    fraction=(n + 1) / max(len(ids), 1),
                    details=f"Checked document {n + 1:,} of {len(ids):,}",
                )
            plan = plan_import(ctx.store, src, user, data.strategy, parse=False, remap=remap)
            if plan.report is not None and data.strategy is None:
                raise ImportConflictError(plan.report)
            payload = json.dumps(
                {
                    "documents": [[d.id, d.action] for d in plan.documents],
                    "remap": remap.to_json(),
                    "conflicts": plan.report,
                }
            ).encode()
            ctx.storage.put(f"{scratch}/import-plan.json", payload)
            actions: dict[str, int] = {}
            for d in plan.documents:
                actions[d.action] = actions.get(d.action, 0) + 1
            return {
                "sha256": hashlib.sha256(payload).hexdigest(),
                "documents": len(plan.documents),
                "conflicts": len(plan.conflicts),
                "actions": actions,
            }

        validated = ctx.run_stage("validate", validate)

        def load_plan() -> dict[str, Any]:
            payload = ctx.storage.get(f"{scratch}/import-plan.json")
            if hashlib.sha256(payload).hexdigest() != validated["sha256"]:
                raise InvalidInputError(
                    "The import plan changed in storage.", "Restart the import from the beginning."
                )
            plan: dict[str, Any] = json.loads(payload)
            return plan

        def apply() -> dict[str, Any]:
            plan = load_plan()
            remap = Remap(user, dict(plan["remap"]))
            steps: list[list[str]] = plan["documents"]
            src = source()
            cursor = ctx.cursor("applied", start={"n": 0, "totals": {}, "details": []})
            state = dict(cursor.value)
            while state["n"] < len(steps):
                n = state["n"]
                doc_id, action = steps[n]
                doc = read_document(src, doc_id, verify=False)
                result = apply_document(
                    ctx.store,
                    ctx.storage,
                    src,
                    user,
                    doc,
                    action,
                    remap,
                    copy_files=isinstance(src, ZipSource),
                )
                totals = dict(state["totals"])
                for key, value in result.to_dict().items():
                    if isinstance(value, bool):
                        totals[key] = totals.get(key, 0) + int(value)
                    elif isinstance(value, int):
                        totals[key] = totals.get(key, 0) + value
                totals[f"action_{action}"] = totals.get(f"action_{action}", 0) + 1
                details = list(state["details"])
                if len(details) < KEEP_DETAILS:
                    details.append(result.to_dict())
                state = {"n": n + 1, "totals": totals, "details": details}
                ctx.progress(
                    fraction=(n + 1) / len(steps),
                    details=f"Document {n + 1:,} of {len(steps):,} · {doc.record.title} ({action})",
                )
                cursor.save(state)  # after the document's transaction committed
            return state

        applied = ctx.run_stage("apply", apply)

        def targets() -> list[str]:
            plan = load_plan()
            remap = Remap(user, dict(plan["remap"]))
            return [remap(d) for d, action in plan["documents"] if action != "skip"]

        def embed() -> dict[str, Any]:
            docs = targets()
            embedder = None
            cursor = ctx.cursor("embedded", start={"doc": 0, "offset": 0, "chunks": 0})
            state = dict(cursor.value)
            while state["doc"] < len(docs):
                doc_id = docs[state["doc"]]
                if data.regenerate_embeddings:
                    chunks = [(c.id, c.text) for c in library.list_chunks(doc_id, user)]
                    todo = chunks[state["offset"] :]
                else:
                    with ctx.store.session(queries) as s:
                        rows = s.all("missing_embeddings", {"user_id": user, "document_id": doc_id})
                    todo = [(str(r["id"]), r["text"]) for r in rows]
                if not todo:
                    state = {**state, "doc": state["doc"] + 1, "offset": 0}
                    cursor.save(state)
                    continue
                batch = todo[:EMBED_BATCH]
                if embedder is None:
                    embedder = get_embedder()
                    wait_for_model(ctx, embedder)
                vectors = embedder.embed([text for _, text in batch])
                library.set_embeddings(
                    user, [cid for cid, _ in batch], vectors, model=embedder.name
                )
                offset = state["offset"] + len(batch) if data.regenerate_embeddings else 0
                state = {**state, "offset": offset, "chunks": state["chunks"] + len(batch)}
                ctx.progress(
                    fraction=state["doc"] / max(len(docs), 1),
                    details=f"Document {state['doc'] + 1:,} of {len(docs):,} · "
                    f"{state['chunks']:,} chunks embedded",
                )
                cursor.save(state)  # after the batch's vectors are stored
            return {"chunks": state["chunks"], "embedder": embedder.name if embedder else None}

        embedded = ctx.run_stage("embed", embed)

        def finish() -> dict[str, Any]:
            queued: list[str] = []
            if data.reprocess_connections:
                for doc_id in targets():
                    [job] = enqueue(
                        ctx.store,
                        "detect_connections",
                        {"document_id": doc_id},
                        user_id=user,
                        entity_type="document",
                        entity_id=doc_id,
                        dedupe_key=f"detect_connections:{doc_id}",
                    )
                    queued.append(job.id)
            if data.delete_source and data.zip_key is not None:
                ctx.storage.delete(data.zip_key)
            return {"detect_connections_jobs": queued}

        finished = ctx.run_stage("finish", finish)

    totals = applied["totals"]
    return {
        "source": data.zip_key or data.document_id,
        "strategy": data.strategy,
        "documents": validated["documents"],
        "conflicts": validated["conflicts"],
        "imported": sum(
            v for k, v in totals.items() if k.startswith("action_") and k != "action_skip"
        ),
        "skipped": totals.get("action_skip", 0),
        "changed_documents": totals.get("changed", 0),
        "totals": {k: v for k, v in totals.items() if k != "changed"},
        "details": applied["details"],
        "embedded_chunks": embedded["chunks"],
        "detect_connections_jobs": finished["detect_connections_jobs"],
    }
