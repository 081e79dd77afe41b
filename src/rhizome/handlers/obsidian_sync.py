"""``obsidian_sync``: two-way sync of the user's Obsidian vault with the library.

Stages (✓ pause-safe): scan ✓ (which notes changed, by hash against the sync state;
unchanged notes are not read), apply ✓ (one checkpoint per changed note), finish.
For each changed note (see :mod:`rhizome.library.obsidian`): a vault edit becomes the
document's markdown in one transactional swap with highlight recovery and connection
remapping; a library change is exported; both → a conflict (nothing overwritten) until
``resolve`` keeps one side; a new note → a new document; a deleted note → reported.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rhizome.errors import InvalidInputError
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import HOUR, Stage, registry
from rhizome.library.repo import Library

# The library code behind this job is imported when it runs, not when the job type is
# registered: a starting worker imports this module.

STAGES = (
    Stage("scan", "Finding changed notes", 0, 10),
    Stage("apply", "Syncing notes", 10, 98),
    Stage("finish", "Finishing", 98, 100, pause_safe=False),
)
MAX_LISTED = 500


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: str = Field(min_length=1, max_length=64)
    keep: Literal["vault", "library"]


class SyncInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[str] | None = Field(None, max_length=100_000)
    """Sync only these documents' notes (no new notes then); None: the whole vault."""
    resolve: list[Resolution] = Field(default_factory=list, max_length=10_000)
    """Conflicts to resolve: keep the vault's or the library's version."""


@registry.job_type(
    "obsidian_sync",
    label="Obsidian Sync",
    icon="refresh-cw",
    stages=STAGES,
    input_model=SyncInput,
    owned={"document_ids": "document"},  # checked by the API before it enqueues
    time_limit_seconds=HOUR,  # 1,000 notes without changes: under a second
)
def obsidian_sync(ctx: JobContext, data: SyncInput) -> dict[str, Any]:
    """Bring vault edits into the library and library changes into the vault."""
    from rhizome.library.obsidian import Context, apply, scan, sync_summary

    user = ctx.job.user_id
    plan_key = f"jobs/{ctx.job.id}/plan.json"

    def open_vault() -> Context:
        vault = Context.open(ctx.store, ctx.storage, user, ctx.job.id)
        vault.progress = lambda text: ctx.progress(details=text)
        return vault

    def scan_stage() -> dict[str, Any]:
        vault = open_vault()
        library = Library(ctx.store)
        only = (
            [library.get_document(d, user).id for d in data.document_ids]
            if data.document_ids
            else None
        )
        resolve: dict[str, str] = {
            library.get_document(r.document_id, user).id: r.keep for r in data.resolve
        }
        found = scan(vault, document_ids=only, resolve=resolve)
        missing = set(resolve) - {i.get("document_id") for i in found.items}
        payload = json.dumps(found.items).encode()
        ctx.storage.put(plan_key, payload)
        ctx.progress(fraction=1.0, details=f"{len(found.items):,} notes to sync", force=True)
        summary = found.to_dict()
        summary.pop("items")
        return {
            "items": len(found.items),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "scan": summary,
            "not_in_conflict": sorted(missing),
        }

    scanned = ctx.run_stage("scan", scan_stage)
    total = int(scanned["items"])

    def apply_stage() -> dict[str, Any]:
        payload = ctx.storage.get(plan_key)
        if hashlib.sha256(payload).hexdigest() != scanned["sha256"]:
            raise InvalidInputError(
                "The sync's plan changed in storage.", "Restart the sync from the beginning."
            )
        items: list[dict[str, Any]] = json.loads(payload)
        vault = open_vault() if items else None
        cursor = ctx.cursor("synced", start={"n": 0, "counts": {}, "other": []})
        state = dict(cursor.value)
        while state["n"] < total:
            assert vault is not None
            n = state["n"]
            result = apply(vault, items[n], n)
            counts = dict(state["counts"])
            status = str(result.get("status"))
            counts[status] = counts.get(status, 0) + 1
            other = list(state["other"])
            if status in ("refused", "skipped") and len(other) < MAX_LISTED:
                other.append(result)
            state = {"n": n + 1, "counts": counts, "other": other}
            ctx.progress(
                fraction=(n + 1) / total,
                details=f"Note {n + 1:,} of {total:,} · {result.get('note')}: {status}",
                notes=n + 1,
                total=total,
            )
            cursor.save(state)  # after the note's effects and its recorded result
        return state

    applied = ctx.run_stage("apply", apply_stage)

    def finish() -> dict[str, Any]:
        vault = open_vault()
        notes = [st.last_result for st in vault.repo.job_results(user, ctx.job.id)]
        results = [r for r in notes if r] + list(applied.get("other") or [])
        summary = sync_summary(results, scanned["scan"])
        open_conflicts = [st.to_dict() for st in vault.repo.conflicts(user)]
        return {
            "notes": results[:MAX_LISTED],
            "counts": summary["counts"],
            "highlight_recovery": summary["highlight_recovery"],
            "conflicts": open_conflicts[:MAX_LISTED],
            "not_in_conflict": scanned.get("not_in_conflict") or [],
            "vault_link": vault.vault.vault_link(),
        }

    result: dict[str, Any] = ctx.run_stage("finish", finish)
    return result
