"""``detect_connections``: the connection engines over a new document's chunks against the
user's library (semantic similarity, contradiction, thematic bridge), combined score,
stored as ``connections`` rows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rhizome.handlers.connections_common import find_for_document
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import Stage, registry
from rhizome.library.repo import Library
from rhizome.pipeline.connect import Weights

STAGES = (
    Stage("load", "Loading chunks", 0, 10),
    Stage("semantic", "Semantic similarity", 10, 40),
    Stage("contradiction", "Contradictions", 40, 65),
    Stage("thematic", "Thematic bridges", 65, 90),
    Stage("save", "Saving connections", 90, 100, pause_safe=False),
)
ENGINE_STAGES = ("semantic", "contradiction", "thematic")


class DetectInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: str
    semantic_weight: float = Field(0.25, ge=0)
    contradiction_weight: float = Field(0.40, ge=0)
    thematic_weight: float = Field(0.35, ge=0)
    keep_validated: bool = True


@registry.job_type(
    "detect_connections",
    label="Detecting",
    icon="git-branch",
    stages=STAGES,
    input_model=DetectInput,
)
def detect_connections_job(ctx: JobContext, data: DetectInput) -> dict[str, Any]:
    """Find connections between a document and the rest of the library."""
    library = Library(ctx.store)
    user = ctx.job.user_id
    library.get_document(data.document_id, user)  # exists and is the user's
    ctx.stage("load")
    current = ["load"]

    def on_progress(engine: str, done: int, total: int) -> None:
        if engine in ENGINE_STAGES and engine != current[0]:
            ctx.stage(engine)
            current[0] = engine
            ctx.safe_point()
        if engine in ENGINE_STAGES:
            ctx.progress(fraction=done / max(total, 1), details=f"{engine}: {done:,} of {total:,}")

    found = find_for_document(
        library,
        data.document_id,
        user,
        weights=Weights(data.semantic_weight, data.contradiction_weight, data.thematic_weight),
        progress=on_progress,
    )
    ctx.stage("save")
    inserted = library.replace_connections(
        data.document_id, user, found, keep_validated=data.keep_validated
    )
    return {
        "document_id": data.document_id,
        "connections": inserted,
        "by_engine": {
            name: sum(1 for f in found if f["scores"].get(name, 0) > 0) for name in ENGINE_STAGES
        },
    }
