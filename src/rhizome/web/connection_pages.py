"""Server-rendered connection pages: the library-wide Connections page (filters by
engine, state, score and document; sorting; paging) and the connections panel of a
document page (``static/connections.js`` swaps it in after a decision)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from rhizome.errors import InvalidInputError
from rhizome.library import Library
from rhizome.library.connections import SORTS, STATES
from rhizome.pipeline.connect import ENGINES
from rhizome.web.rendering import render
from rhizome.web.services import connections as service
from rhizome.web.state import StateDep, UserDep

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25


def _clean_score(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        score = float(value)
    except ValueError:
        raise InvalidInputError(
            f"{value!r} is not a score.", "Give a number from 0 to 1, e.g. 0.5."
        ) from None
    if not 0 <= score <= 1:
        raise InvalidInputError(f"The score {score} is not between 0 and 1.", "Give 0 to 1.")
    return score


@router.get("/connections", response_class=HTMLResponse)
def connections_page(
    request: Request,
    state: StateDep,
    user: UserDep,
    document: Annotated[str | None, Query(max_length=64)] = None,
    engine: Annotated[str | None, Query(max_length=20)] = None,
    connection_state: Annotated[str | None, Query(alias="state", max_length=20)] = None,
    min_score: Annotated[str | None, Query(max_length=20)] = None,
    sort: Annotated[str | None, Query(max_length=20)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    partial: bool = False,
) -> HTMLResponse:
    current = {
        "document": document or None,
        "engine": engine or None,
        "state": connection_state or "visible",
        "min_score": (min_score or "").strip() or None,
        "sort": sort or "score",
    }
    docs = Library(state.store).list_documents(user, limit=1000)
    try:
        result, items = service.search(
            state.store,
            user,
            document_id=current["document"],
            state=current["state"],
            engine=current["engine"],
            min_score=_clean_score(current["min_score"]),
            sort=current["sort"] or "score",
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
    except InvalidInputError as exc:
        return render(
            request,
            "error.html",
            {"page": "error", "title": "Bad filter", "message": exc.message, "hint": exc.hint},
            status=422,
        )

    def link(**change: Any) -> str:
        """This page's URL with some filters changed (a filter change goes to page 1)."""
        params = {**current, "page": None, **change}
        if params.get("state") == "visible":
            params["state"] = None
        if params.get("sort") == "score":
            params["sort"] = None
        clean = {k: v for k, v in params.items() if v not in (None, "", 1)}
        return "/connections" + ("?" + urlencode(clean) if clean else "")

    ctx = {
        "page": "connections",
        "connections": items,
        "total": result.total,
        "counts": result.counts,
        "current": current,
        "documents": [{"id": d.id, "title": d.title} for d in docs],
        "engines": [(e, service.ENGINE_NAMES[e]) for e in ENGINES],
        "states": [(s, service.STATE_LABELS[s]) for s in STATES],
        "sorts": [(s, service.SORT_LABELS[s]) for s in SORTS],
        "weights": service.current_weights(),
        "link": link,
        "page_number": page,
        "page_size": PAGE_SIZE,
        "has_next": page * PAGE_SIZE < result.total,
        "partial_url": link(page=page),
    }
    return render(request, "_connections.html" if partial else "connections.html", ctx)


@router.get("/documents/{document_id}/connections-panel", response_class=HTMLResponse)
def document_connections_panel(
    request: Request, state: StateDep, user: UserDep, document_id: str
) -> HTMLResponse:
    """The connections section of a document page, alone."""
    doc = Library(state.store).get_document(document_id, user)
    ctx = {
        "page": "document",
        "document_id": doc.id,
        "doc": {"id": doc.id, "title": doc.title},
        **service.document_connections(state.store, doc.id, user, limit=20),
    }
    return render(request, "_connections_panel.html", ctx)
