"""``/api/connections``: the library's connections with filters and sorting, one
connection, the user's decisions on it (validate, star, reject and their undo, reset),
and queuing a ``reprocess_connections`` job (modes all / add_new / smart)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from rhizome.web.api.common import Model
from rhizome.web.services import connections as service
from rhizome.web.state import StateDep, UserDep
from rhizome.web.views import job_summary

router = APIRouter(tags=["connections"])

Action = Literal["validate", "unvalidate", "star", "unstar", "reject", "unreject", "reset"]
State = Literal["visible", "undecided", "validated", "starred", "rejected", "all"]
Engine = Literal["semantic", "contradiction", "thematic"]
Sort = Literal["score", "score_asc", "newest", "decided", "document"]
DocumentId = Annotated[str, Field(min_length=1, max_length=64)]


class ReprocessRequest(Model):
    mode: Literal["all", "add_new", "smart"] = "smart"
    document_ids: Annotated[list[DocumentId], Field(max_length=10_000)] | None = None
    """None or empty: every ready document."""
    backup_first: bool | None = None
    """None: on for all and smart, off for add_new."""


@router.get("/connections", summary="Connections of the library, filtered and sorted")
def list_connections(
    state: StateDep,
    user: UserDep,
    document_id: Annotated[str | None, Query(max_length=64)] = None,
    connection_state: Annotated[State, Query(alias="state")] = "visible",
    engine: Engine | None = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    sort: Sort = "score",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """``state``: ``visible`` (default: all but rejected), ``undecided``, ``validated``,
    ``starred``, ``rejected`` or ``all``. ``engine``: only pairs that engine judged.
    ``counts`` has the number per state under the other filters."""
    page, items = service.search(
        state.store,
        user,
        document_id=document_id or None,
        state=connection_state,
        engine=engine,
        min_score=min_score,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    return {
        "connections": items,
        "total": page.total,
        "counts": page.counts,
        "limit": limit,
        "offset": offset,
    }


@router.get("/connections/{connection_id}", summary="One connection with both passages")
def get_connection(state: StateDep, user: UserDep, connection_id: str) -> dict[str, Any]:
    return {"connection": service.get(state.store, connection_id, user)}


@router.post(
    "/connections/{connection_id}/{action}",
    summary="Validate, star or reject a connection, or undo it",
)
def decide(state: StateDep, user: UserDep, connection_id: str, action: Action) -> dict[str, Any]:
    """``validate`` (kept forever), ``star``, ``reject`` (hidden, and never re-created by
    a later detection of the same pair), ``unvalidate``, ``unstar``, ``unreject``, and
    ``reset`` (no decision at all). Validating or starring lifts a rejection; rejecting
    clears validated and starred."""
    return {"connection": service.decide(state.store, connection_id, user, action)}


@router.post(
    "/connections/reprocess",
    status_code=201,
    summary="Queue a reprocess_connections job",
)
def reprocess(state: StateDep, user: UserDep, body: ReprocessRequest) -> dict[str, Any]:
    """``all`` replaces every connection of the documents but validated and starred
    ones; ``add_new`` only adds connections to documents new since each one's last
    detection; ``smart`` keeps every decision and re-detects the rest."""
    job = service.enqueue_reprocess(
        state.store,
        user,
        mode=body.mode,
        document_ids=body.document_ids or None,
        backup_first=body.backup_first,
    )
    return {"job": job_summary(state.registry, job)}
