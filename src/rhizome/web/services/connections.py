"""Connection operations of the web layer: views of connections with both passages and
their per-engine scores, a document's detection state ("Detecting…" vs "No connections
found (N documents compared)"), the library-wide search, decisions, and queuing a
``reprocess_connections`` job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rhizome.jobs.model import Job, JobFilter
from rhizome.jobs.store import SqlJobStore
from rhizome.library.connections import (
    ConnectionDetail,
    ConnectionPage,
    Curation,
    DetectionInfo,
    queue_reprocess,
    weights_from_settings,
)
from rhizome.pipeline.connect import ENGINES

ENGINE_NAMES = {
    "semantic": "Semantic",
    "contradiction": "Contradiction",
    "thematic": "Thematic bridge",
}
STATE_LABELS = {
    "visible": "All but rejected",
    "undecided": "Undecided",
    "validated": "Validated",
    "starred": "Starred",
    "rejected": "Rejected",
    "all": "Everything",
}
SORT_LABELS = {
    "score": "Best score first",
    "score_asc": "Lowest score first",
    "newest": "Newest first",
    "decided": "Recently decided",
    "document": "By document",
}
DETECTION_TYPES = ("detect_connections", "reprocess_connections")


def engine_rows(detail: ConnectionDetail, weights: dict[str, float]) -> list[dict[str, Any]]:
    """One row per engine: its name, weight and score (None: it did not judge the pair)."""
    return [
        {
            "engine": e,
            "label": ENGINE_NAMES[e],
            "weight": weights.get(e, 0.0),
            "score": detail.engine_scores.get(e) if detail.engine_scores.get(e, 0) > 0 else None,
        }
        for e in ENGINES
    ]


_WEIGHTS: list[tuple[float, dict[str, float]]] = []
WEIGHTS_TTL = 5.0
"""Views read the settings' weights at most this often (reading the settings costs more
than the rest of a document page)."""


def current_weights() -> dict[str, float]:
    now = time.monotonic()
    if _WEIGHTS and now - _WEIGHTS[0][0] < WEIGHTS_TTL:
        return _WEIGHTS[0][1]
    try:
        w = weights_from_settings()
    except Exception:  # bad settings are reported by the jobs; the view just shows none
        return {}
    weights = {e: w.of(e) for e in ENGINES}
    _WEIGHTS[:] = [(now, weights)]
    return weights


def connection_view(
    detail: ConnectionDetail,
    document_id: str | None = None,
    weights: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A connection as JSON: every field, the per-engine rows and, seen from
    ``document_id``, which side is this document's (``chunk_*``, ``own_text``) and which
    is the other's (``other_*``)."""
    out = detail.to_dict()
    out["engine_rows"] = engine_rows(detail, weights if weights is not None else current_weights())
    outgoing = document_id is None or detail.source_document_id == document_id
    own = ("source", "target") if outgoing else ("target", "source")
    out.update(
        {
            "chunk_id": out[f"{own[0]}_chunk_id"],
            "chunk_index": out[f"{own[0]}_index"],
            "own_text": out[f"{own[0]}_text"],
            "own_title": out[f"{own[0]}_title"],
            "other_chunk_id": out[f"{own[1]}_chunk_id"],
            "other_chunk_index": out[f"{own[1]}_index"],
            "other_text": out[f"{own[1]}_text"],
            "other_document_id": out[f"{own[1]}_document_id"],
            "other_document_title": out[f"{own[1]}_title"],
        }
    )
    return out


def search(
    store: SqlJobStore,
    user_id: str,
    *,
    document_id: str | None = None,
    state: str | None = None,
    engine: str | None = None,
    min_score: float | None = None,
    sort: str = "score",
    limit: int = 50,
    offset: int = 0,
) -> tuple[ConnectionPage, list[dict[str, Any]]]:
    page = Curation(store).search(
        user_id,
        document_id=document_id,
        state=state,
        engine=engine,
        min_score=min_score,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    weights = current_weights()
    return page, [connection_view(c, document_id, weights) for c in page.items]


def decide(store: SqlJobStore, connection_id: str, user_id: str, action: str) -> dict[str, Any]:
    return connection_view(Curation(store).decide(connection_id, user_id, action))


def get(store: SqlJobStore, connection_id: str, user_id: str) -> dict[str, Any]:
    return connection_view(Curation(store).get(connection_id, user_id))


@dataclass
class Detection:
    """What the document page says about a document's connections."""

    state: str
    """``detecting``, ``waiting`` (the document is still being processed),
    ``not_detected``, ``none_found`` or ``found``."""
    text: str
    info: DetectionInfo

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "text": self.text, **self.info.to_dict()}


def _covers(job: Job, document_id: str) -> bool:
    if job.job_type == "detect_connections":
        return job.entity_id == document_id or job.input_data.get("document_id") == document_id
    ids = job.input_data.get("document_ids")
    return not ids or document_id in ids


def detection_state(store: SqlJobStore, document_id: str, user_id: str) -> Detection:
    info = Curation(store).detection_info(document_id, user_id)
    active = store.search_jobs(
        JobFilter(user_id=user_id, types=DETECTION_TYPES, statuses=("active",)), limit=200
    )
    if any(_covers(j, info.document_id) for j in active):
        return Detection("detecting", "Detecting…", info)
    if info.status in ("pending", "processing"):
        return Detection("waiting", "Connections are detected when processing has finished.", info)
    if info.detected_at is None:
        return Detection("not_detected", "Connections have not been detected yet.", info)
    if info.visible == 0:
        n = info.compared or 0
        return Detection(
            "none_found",
            f"No connections found ({n:,} document{'s' if n != 1 else ''} compared).",
            info,
        )
    return Detection("found", f"{info.visible:,} connections.", info)


def document_connections(
    store: SqlJobStore, document_id: str, user_id: str, *, limit: int = 500
) -> dict[str, Any]:
    """The document's connections for its page and its API view: the visible ones (best
    first), the rejected ones (for undo), at most ``limit`` of each (``connection_totals``
    says how many there are), and the detection state."""
    weights = current_weights()
    curation = Curation(store)
    visible = curation.search(user_id, document_id=document_id, limit=limit)
    rejected = curation.search(user_id, document_id=document_id, state="rejected", limit=limit)
    return {
        "connection_totals": {"visible": visible.total, "rejected": rejected.total},
        "connections": [connection_view(c, document_id, weights) for c in visible.items],
        "rejected_connections": [connection_view(c, document_id, weights) for c in rejected.items],
        "connection_counts": visible.counts,
        "detection": detection_state(store, document_id, user_id).to_dict(),
        "weights": weights,
    }


def enqueue_reprocess(
    store: SqlJobStore,
    user_id: str,
    *,
    mode: str,
    document_ids: list[str] | None,
    backup_first: bool | None,
) -> Job:
    """Queue a ``reprocess_connections`` job (for one document: attached to it, so it
    shows on its page and in the dock under its title)."""
    return queue_reprocess(
        store, user_id, mode=mode, document_ids=document_ids, backup_first=backup_first
    )
