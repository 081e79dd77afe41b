"""``reprocess_connections``: re-run the connection engines for some or all documents.
Mode ``all`` replaces every connection; ``smart`` keeps the user-validated ones.

A checkpoint after each document, and inside a document after each batch of each engine.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from rhizome.handlers.connections_common import ENGINE_LABELS, Detection, find_all
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import Stage, registry
from rhizome.library.repo import Library
from rhizome.pipeline.connect import Weights

STAGES = (
    Stage("select", "Selecting documents", 0, 2),
    Stage("documents", "Reprocessing documents", 2, 100),
)


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

    def select() -> list[str]:
        if data.document_ids:
            return [library.get_document(d, user).id for d in data.document_ids]
        return [d.id for d in library.list_documents(user, status="ready", limit=100000)]

    ids: list[str] = ctx.run_stage("select", select)
    keep = data.mode == "smart"

    def documents() -> int:
        cursor = ctx.cursor("documents", start={"done": 0, "inserted": 0})
        done, inserted = int(cursor.value["done"]), int(cursor.value["inserted"])
        while done < len(ids):
            position = done

            def on_batch(engine: str, chunk: int, total: int, position: int = position) -> None:
                ctx.progress(
                    fraction=(position + chunk / max(total, 1) / 3) / max(len(ids), 1),
                    details=f"Document {position + 1:,} of {len(ids):,} · "
                    f"{ENGINE_LABELS[engine]}: chunk {chunk:,} of {total:,}",
                )

            detection = Detection(library, ids[done], user, Weights())
            found = find_all(ctx, detection, on_batch)
            inserted += library.replace_connections(ids[done], user, found, keep_validated=keep)
            done += 1
            cursor.save({"done": done, "inserted": inserted})
        return inserted

    total = ctx.run_stage("documents", documents)
    return {"mode": data.mode, "documents": len(ids), "connections": total}
