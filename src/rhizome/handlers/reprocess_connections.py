"""``reprocess_connections``: re-run the connection engines for some or all documents.

Modes (seed §5.4, issue 14):

* ``all`` — every connection of the chosen documents is detected again; validated and
  starred ones are kept (their scores refreshed when found again), the rest is replaced.
  Rejected pairs stay rejected: found again, they come back hidden.
* ``add_new`` — nothing is deleted; only connections to documents added, re-chunked or
  processed again since the document's last detection are added.
* ``smart`` — validated, starred and rejected connections stay exactly as they are; the
  undecided rest is detected again.

``backup_first`` (default on for ``all`` and ``smart``) writes each document's decided
connections to ``documents/{user}/{doc}/connections-backup-{time}.json`` before anything
of it is deleted; if the job fails or is cancelled they are restored from there, and a
run that continues after a crash puts back any that went missing.

Per document: backup → the engines (a checkpoint per batch of each engine, as nested
cursors inside the per-document cursor) → one transaction that marks the connections
found again, deletes what the mode replaces and was not found again, and inserts the new
ones (so a document never shows fewer connections while its engines run). Connections
between two documents of the job are judged at the later one's turn, when both sides
have been looked at. The output has the counts of visible connections before and after,
and added / kept / removed, in total and per document.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rhizome.errors import JobLostError, RhizomeError
from rhizome.handlers.connections_common import (
    ENGINE_LABELS,
    Detection,
    find_all,
    reembed_stale,
)
from rhizome.jobs.context import JobContext, JobInterrupted
from rhizome.jobs.registry import HOUR, Stage, registry
from rhizome.library.connections import Curation, weights_from_settings
from rhizome.library.repo import Library
from rhizome.pipeline.connect import ENGINES, Weights

STAGES = (
    Stage("select", "Selecting documents", 0, 2),
    Stage("documents", "Reprocessing documents", 2, 98),
    Stage("count", "Counting connections", 98, 100),
)

PER_DOCUMENT_LIMIT = 200
"""The output lists at most this many documents one by one (totals cover all)."""


class ReprocessInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["all", "add_new", "smart"] = "smart"
    document_ids: list[str] | None = Field(None, max_length=100_000)
    """None: every ready document of the user."""
    backup_first: bool | None = None
    """Back up the decided connections before deleting (None: on for all and smart)."""


@registry.job_type(
    "reprocess_connections",
    label="Connections",
    icon="network",
    stages=STAGES,
    input_model=ReprocessInput,
    owned={"document_ids": "document"},  # checked by the API before it enqueues
    time_limit_seconds=6 * HOUR,  # every document of a library, one after another
)
def reprocess_connections(ctx: JobContext, data: ReprocessInput) -> dict[str, Any]:
    """Re-run connection detection for documents (a checkpoint after each document)."""
    library = Library(ctx.store)
    curation = Curation(ctx.store)
    user = ctx.job.user_id
    backup_first = data.backup_first if data.backup_first is not None else data.mode != "add_new"

    def select() -> dict[str, Any]:
        if data.document_ids:
            ids = list(dict.fromkeys(library.get_document(d, user).id for d in data.document_ids))
        else:
            ids = [d.id for d in library.list_documents(user, status="ready", limit=100_000)]
        weights = weights_from_settings()
        return {
            "ids": ids,
            "before": curation.count_visible(user, ids),
            "weights": [weights.of(e) for e in ENGINES],
            "started_at": datetime.now(UTC).isoformat(),
        }

    selected: dict[str, Any] = ctx.run_stage("select", select)
    ids: list[str] = selected["ids"]
    weights = Weights(*selected["weights"])
    started = datetime.fromisoformat(selected["started_at"])

    def documents() -> dict[str, Any]:
        cursor = ctx.cursor(
            "documents",
            start={
                "done": 0,
                "added": 0,
                "kept": 0,
                "removed": 0,
                "backups": [],
                "per_document": [],
                "current": None,
            },
        )
        state: dict[str, Any] = json.loads(json.dumps(cursor.value))  # a private copy
        if ctx.resumed_from is not None and state["backups"]:
            _restore(ctx, curation, state["backups"], include_rejected=data.mode != "all")
        try:
            while state["done"] < len(ids):
                position = int(state["done"])
                doc = ids[position]
                if state["current"] is None:
                    # the backup is durable (and listed in the checkpoint) before any delete
                    key = None
                    if backup_first:
                        key, _ = curation.write_backup(
                            ctx.storage, doc, user, job_id=ctx.job.id, mode=data.mode
                        )
                    if key:
                        state["backups"].append(key)
                    state["current"] = {
                        "document_id": doc,
                        "before": curation.visible_pairs(doc, user),
                        "started_at": datetime.now(UTC).isoformat(),
                        "backup": key,
                    }
                    cursor.save(state)
                current = state["current"]

                def on_batch(engine: str, chunk: int, total: int, position: int = position) -> None:
                    ctx.progress(
                        fraction=(position + chunk / max(total, 1) / 3) / max(len(ids), 1),
                        details=f"Document {position + 1:,} of {len(ids):,} · "
                        f"{ENGINE_LABELS[engine]}: chunk {chunk:,} of {total:,}",
                    )

                def on_embed(done: int, total: int, position: int = position) -> None:
                    ctx.progress(
                        details=f"Document {position + 1:,} of {len(ids):,} · "
                        f"re-embedding chunk {done:,} of {total:,} (another model made them)",
                    )

                # a change of model or precision: the document is embedded again first,
                # so its connections are judged by the same model as the rest
                reembedded = reembed_stale(ctx, library, doc, user, on_embed)
                if reembedded:
                    state["reembedded"] = int(state.get("reembedded", 0)) + reembedded
                detection = Detection(library, doc, user, weights)
                only = curation.new_documents_for(doc, user) if data.mode == "add_new" else None
                found = find_all(ctx, detection, on_batch) if only != [] else []
                counts = curation.save_detection(
                    doc,
                    user,
                    found,
                    mode=data.mode,
                    since=started,
                    pending=ids[position + 1 :],
                    only_documents=only,
                    compared=detection.compared,
                    detected_at=datetime.fromisoformat(current["started_at"]),
                    before=current["before"],
                )
                for name in ("added", "kept", "removed"):
                    state[name] += getattr(counts, name)
                if len(state["per_document"]) < PER_DOCUMENT_LIMIT:
                    state["per_document"].append(
                        {
                            "document_id": doc,
                            "title": library.get_document(doc, user).title,
                            **counts.to_dict(),
                            "backup": current["backup"],
                        }
                    )
                state["done"] = position + 1
                state["current"] = None
                cursor.save(state)
        except JobInterrupted as exc:
            if exc.action == "cancel":
                _restore(ctx, curation, state["backups"], include_rejected=True)
            raise
        except JobLostError:
            raise  # another worker owns the job now
        except Exception:
            _restore(ctx, curation, state["backups"], include_rejected=True)
            raise
        out = {k: state[k] for k in ("added", "kept", "removed", "backups", "per_document")}
        if state.get("reembedded"):
            out["reembedded_chunks"] = state["reembedded"]
        return out

    result: dict[str, Any] = ctx.run_stage("documents", documents)
    after: int = ctx.run_stage("count", lambda: curation.count_visible(user, ids))
    return {
        "mode": data.mode,
        "backup_first": backup_first,
        "documents": len(ids),
        "before": selected["before"],
        "after": after,
        "added": result["added"],
        # each pair is added or removed at most once per job (connections between two of
        # its documents are judged when both sides have been looked at)
        "kept": selected["before"] - result["removed"],
        "removed": result["removed"],
        "backups": result["backups"],
        "per_document": result["per_document"],
        **(
            {"reembedded_chunks": result["reembedded_chunks"]}
            if "reembedded_chunks" in result
            else {}
        ),
    }


def _restore(
    ctx: JobContext, curation: Curation, keys: list[str], *, include_rejected: bool
) -> int:
    """Put back the decisions of this job's backups (idempotent); a timeline line when
    anything came back. Never raises: the job's own outcome matters more."""
    restored = 0
    for key in keys:
        try:
            data = json.loads(ctx.storage.get(key))
            restored += curation.restore(data, ctx.job.user_id, include_rejected=include_rejected)
        except (RhizomeError, OSError, ValueError, KeyError) as exc:
            ctx.log.warning("could not restore connections from %s: %s", key, exc)
            ctx.store.add_event(
                ctx.job.id,
                f"could not restore connections from {key}: {exc}",
                worker_id=ctx.worker_id,
            )
    if restored:
        ctx.store.add_event(
            ctx.job.id,
            f"restored {restored} user-decided connection(s) from {len(keys)} backup(s)",
            worker_id=ctx.worker_id,
        )
    return restored
