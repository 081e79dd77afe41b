"""``detect_connections``: the connection engines over a new document's chunks against the
user's library (semantic similarity, contradiction, thematic bridge), combined score,
stored as ``connections`` rows.

Each engine is a stage with a checkpoint per batch of the document's chunks, so a paused
or crashed detection resumes inside the engine it was in, without redoing finished ones.
Batches are sized to take about half a second whatever the document (a 96,000-chunk one
included), and so are the pages of the library's load and the batches of the merge into
scored connections (see :mod:`rhizome.handlers.connections_common`): a pause or a cancel
is honoured within about that time in every stage but the save. The combined score is
the weighted mean over the engines that judged a pair, with the weights of the settings
(or of the input). Saving keeps the user's decisions: validated,
starred and rejected connections stay, and a rejected pair is never shown again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rhizome.handlers.connections_common import (
    ENGINE_LABELS,
    Detection,
    loading_step,
    merge_found,
    merged_connections,
    run_engine,
)
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import HOUR, Stage, registry
from rhizome.library.connections import Curation, weights_from_settings
from rhizome.library.repo import Library
from rhizome.pipeline.connect import ENGINES, Weights

STAGES = (
    Stage("load", "Loading chunks", 0, 10),
    Stage("semantic", ENGINE_LABELS["semantic"], 10, 40),
    Stage("contradiction", ENGINE_LABELS["contradiction"], 40, 65),
    Stage("thematic", ENGINE_LABELS["thematic"], 65, 88),
    Stage("combine", "Scoring connections", 88, 94),
    Stage("save", "Saving connections", 94, 100, pause_safe=False),
)


class DetectInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: str
    semantic_weight: float | None = Field(None, ge=0)
    """None: the ``semantic_weight`` setting (default 0.25)."""
    contradiction_weight: float | None = Field(None, ge=0)
    """None: the ``contradiction_weight`` setting (default 0.40)."""
    thematic_weight: float | None = Field(None, ge=0)
    """None: the ``thematic_weight`` setting (default 0.35)."""
    keep_validated: bool = True
    """True: replace only undecided connections (validated, starred and rejected ones
    stay as they are); False: also replace rejected ones (validated and starred stay)."""


@registry.job_type(
    "detect_connections",
    label="Detecting",
    icon="git-branch",
    stages=STAGES,
    input_model=DetectInput,
    owned={"document_id": "document"},  # checked by the API before it enqueues
    time_limit_seconds=2 * HOUR,  # a huge document against a big library: ~10 min here
)
def detect_connections_job(ctx: JobContext, data: DetectInput) -> dict[str, Any]:
    """Find connections between a document and the rest of the library."""
    library = Library(ctx.store)
    user = ctx.job.user_id
    library.get_document(data.document_id, user)  # exists and is the user's
    detection = Detection(library, data.document_id, user, Weights())

    def load() -> dict[str, Any]:
        detection.prepare(loading_step(ctx))  # a safe point per page of a long load
        weights = weights_from_settings(
            data.semantic_weight, data.contradiction_weight, data.thematic_weight
        )
        return {
            **detection.counts(),
            "weights": [weights.of(e) for e in ENGINES],
            "started_at": datetime.now(UTC).isoformat(),
        }

    loaded: dict[str, Any] = ctx.run_stage("load", load)
    if "weights" in loaded:
        detection.weights = Weights(*loaded["weights"])
    else:  # a checkpoint of an older version
        detection.weights = weights_from_settings()
    found: dict[str, Any] = {}  # per engine: its parts (see run_engine)
    for engine in ENGINES:

        def on_batch(done: int, total: int, engine: str = engine) -> None:
            ctx.progress(
                fraction=done / max(total, 1),
                details=f"{ENGINE_LABELS[engine]}: chunk {done:,} of {total:,}",
            )

        found[engine] = ctx.run_stage(engine, run_engine, ctx, detection, engine, on_batch=on_batch)

    def on_merge(done: int, total: int) -> None:
        ctx.progress(
            fraction=done / max(total, 1),
            details=f"Scoring connections: chunk {done:,} of {total:,}",
        )

    merged: dict[str, Any] = ctx.run_stage(
        "combine", merge_found, ctx, detection, found, on_batch=on_merge
    )

    def save() -> dict[str, Any]:
        detection.prepare(loading_step(ctx))  # after a crash in the save: a cancel can stop it
        connections = merged_connections(ctx, detection, found, merged)
        started = loaded.get("started_at")
        counts = Curation(ctx.store).save_detection(
            data.document_id,
            user,
            connections,
            mode="smart" if data.keep_validated else "all",
            since=datetime.fromisoformat(started) if started else None,
            compared=detection.compared,
            detected_at=datetime.fromisoformat(started) if started else None,
        )
        return {
            "connections": counts.after,
            "found": len(connections),
            **{k: v for k, v in counts.to_dict().items() if k != "after"},
            "documents_compared": detection.compared,
            "by_engine": {
                name: sum(1 for c in connections if c["scores"].get(name, 0) > 0)
                for name in ENGINES
            },
        }

    saved = ctx.run_stage("save", save)
    return {"document_id": data.document_id, **saved}
