"""``detect_connections``: the connection engines over a new document's chunks against the
user's library (semantic similarity, contradiction, thematic bridge), combined score,
stored as ``connections`` rows.

Each engine is a stage with a checkpoint per batch of the document's chunks, so a paused
or crashed detection resumes inside the engine it was in, without redoing finished ones.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rhizome.handlers.connections_common import ENGINE_LABELS, Detection, run_engine
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import Stage, registry
from rhizome.library.repo import Library
from rhizome.pipeline.connect import ENGINES, Weights

STAGES = (
    Stage("load", "Loading chunks", 0, 10),
    Stage("semantic", ENGINE_LABELS["semantic"], 10, 40),
    Stage("contradiction", ENGINE_LABELS["contradiction"], 40, 65),
    Stage("thematic", ENGINE_LABELS["thematic"], 65, 90),
    Stage("save", "Saving connections", 90, 100, pause_safe=False),
)


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
    detection = Detection(
        library,
        data.document_id,
        user,
        Weights(data.semantic_weight, data.contradiction_weight, data.thematic_weight),
    )
    ctx.run_stage("load", detection.counts)
    found: dict[str, list[list[Any]]] = {}
    for engine in ENGINES:

        def on_batch(done: int, total: int, engine: str = engine) -> None:
            ctx.progress(
                fraction=done / max(total, 1),
                details=f"{ENGINE_LABELS[engine]}: chunk {done:,} of {total:,}",
            )

        found[engine] = ctx.run_stage(engine, run_engine, ctx, detection, engine, on_batch=on_batch)

    def save() -> dict[str, Any]:
        connections = detection.combine(found)
        inserted = library.replace_connections(
            data.document_id, user, connections, keep_validated=data.keep_validated
        )
        return {
            "connections": inserted,
            "by_engine": {
                name: sum(1 for c in connections if c["scores"].get(name, 0) > 0)
                for name in ENGINES
            },
        }

    saved = ctx.run_stage("save", save)
    return {"document_id": data.document_id, **saved}
