"""``reprocess_connections``: re-run the connection engines for some or all documents.
Mode ``all`` replaces every connection; ``smart`` keeps the user-validated ones."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from rhizome.handlers.connections_common import find_for_document
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import Stage, registry
from rhizome.library.repo import Library

STAGES = (Stage("documents", "Reprocessing documents", 0, 100),)


class ReprocessInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["all", "smart"] = "smart"
    document_ids: list[str] | None = None
    """None: every ready document of the user."""


@registry.job_type(
    "reprocess_connections",
    label="Connections",
    icon="network",
    stages=STAGES,
    input_model=ReprocessInput,
)
def reprocess_connections(ctx: JobContext, data: ReprocessInput) -> dict[str, Any]:
    """Re-run connection detection for documents (a checkpoint after each document)."""
    library = Library(ctx.store)
    user = ctx.job.user_id
    point = ctx.resume_point()
    if point is not None:
        ids: list[str] = point.data["ids"]
        done: int = point.data["done"]
        total_inserted: int = point.data["inserted"]
    else:
        if data.document_ids:
            ids = [library.get_document(d, user).id for d in data.document_ids]
        else:
            ids = [d.id for d in library.list_documents(user, status="ready", limit=100000)]
        done, total_inserted = 0, 0
    ctx.stage("documents")
    keep = data.mode == "smart"
    for i in range(done, len(ids)):
        ctx.progress(fraction=i / max(len(ids), 1), details=f"Document {i + 1:,} of {len(ids):,}")
        found = find_for_document(library, ids[i], user)
        total_inserted += library.replace_connections(ids[i], user, found, keep_validated=keep)
        ctx.checkpoint("documents", {"ids": ids, "done": i + 1, "inserted": total_inserted})
    return {"mode": data.mode, "documents": len(ids), "connections": total_inserted}
