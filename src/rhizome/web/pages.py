"""Server-rendered pages: the library, a document, the Jobs panel, a job. Light JavaScript
(static/app.js) keeps them live through /api/events; ``?partial=1`` returns the part of a
page the script swaps in when something structural changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markdown_it import MarkdownIt

from rhizome.errors import InvalidInputError
from rhizome.jobs.model import JOB_SORTS, STATUS_FILTERS
from rhizome.library import Library
from rhizome.web import display
from rhizome.web.rendering import render, show_hidden
from rhizome.web.security import SESSION_COOKIE
from rhizome.web.services import jobs as job_service
from rhizome.web.services.documents import (
    document_bundle,
    document_chunks,
    document_markdown,
    latest_jobs,
    markdown_preview,
)
from rhizome.web.state import StateDep, UserDep
from rhizome.web.views import document_view, job_summary

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
CHUNK_PAGE = 50
"""Chunks a document page shows at once ("Show more" loads the next ones)."""
CONNECTION_PAGE = 20
"""Connections a document page shows (the Connections page has them all, in pages)."""
MARKDOWN_PREVIEW = 40_000
"""Characters of the markdown a document page renders at first."""
LOG_TAIL = 300
"""Log lines a job page shows at first (the newest); new ones arrive live."""
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


# --- library --------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def library_page(
    request: Request, state: StateDep, user: UserDep, partial: bool = False
) -> HTMLResponse:
    docs = Library(state.store).list_documents(user, limit=500)
    latest = latest_jobs(state.store, [d.id for d in docs], user)
    rows = [document_view(d, latest.get(d.id), state.registry) for d in docs]
    ctx = {
        "page": "library",
        "documents": rows,
        "can_upload": "process_document" in state.registry,
    }
    return render(request, "_documents.html" if partial else "library.html", ctx)


@router.get("/documents/{document_id}", response_class=HTMLResponse)
def document_page(
    request: Request, state: StateDep, user: UserDep, document_id: str, partial: bool = False
) -> HTMLResponse:
    bundle = document_bundle(
        state.store,
        state.registry,
        document_id,
        user,
        chunk_limit=CHUNK_PAGE,
        connection_limit=CONNECTION_PAGE,
    )
    doc = Library(state.store).get_document(document_id, user)
    text = document_markdown(state.storage, doc)
    preview, cut = markdown_preview(text, MARKDOWN_PREVIEW) if text is not None else ("", False)
    ctx = {
        "page": "document",
        "document_id": doc.id,
        "doc": bundle["document"],
        "chunks": bundle["chunks"],
        "chunk_total": bundle["chunk_total"],
        "chunk_next": CHUNK_PAGE if bundle["chunk_total"] > CHUNK_PAGE else None,
        "connections": bundle["connections"],
        "rejected_connections": bundle["rejected_connections"],
        "connection_totals": bundle["connection_totals"],
        "detection": bundle["detection"],
        "jobs": bundle["jobs"],
        "markdown_html": _markdown.render(preview) if text is not None else None,
        "markdown_cut": cut,
        "markdown_chars": len(text or ""),
    }
    return render(request, "_document.html" if partial else "document.html", ctx)


@router.get("/documents/{document_id}/chunks", response_class=HTMLResponse)
def document_chunk_page(
    request: Request,
    state: StateDep,
    user: UserDep,
    document_id: str,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """The next page of a document's chunks (list items and a "more" link), appended by
    the document page."""
    doc = Library(state.store).get_document(document_id, user)
    chunks, total = document_chunks(state.store, doc.id, user, offset=offset, limit=CHUNK_PAGE)
    nxt = offset + CHUNK_PAGE
    ctx = {
        "page": "document",
        "doc": {"id": doc.id},
        "chunks": chunks,
        "chunk_next": nxt if nxt < total else None,
    }
    return render(request, "_chunk_items.html", ctx)


@router.get("/documents/{document_id}/markdown", response_class=HTMLResponse)
def document_markdown_page(
    request: Request, state: StateDep, user: UserDep, document_id: str
) -> HTMLResponse:
    """A document's whole markdown, rendered (the document page shows its start)."""
    doc = Library(state.store).get_document(document_id, user)
    text = document_markdown(state.storage, doc) or ""
    return HTMLResponse(_markdown.render(text), headers={"Cache-Control": "no-store"})


# --- jobs -----------------------------------------------------------------------------------------


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    state: StateDep,
    user: UserDep,
    type: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=100)] = None,
    stage: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    sort: Annotated[str | None, Query(max_length=40)] = None,
    partial: bool = False,
) -> HTMLResponse:
    hidden = show_hidden(request)
    type, status, stage, q = (v or None for v in (type, status, stage, q))
    sort = sort if sort in JOB_SORTS else None
    try:
        f = job_service.build_filter(
            state,
            user,
            types=[type] if type else [],
            statuses=[status] if status else [],
            stage=stage,
            q=q,
            include_hidden=hidden,
        )
    except InvalidInputError as exc:
        return render(
            request,
            "error.html",
            {"page": "error", "title": "Bad filter", "message": exc.message, "hint": exc.hint},
            status=422,
        )
    offset = (page - 1) * PAGE_SIZE
    result = job_service.search(state, f, limit=PAGE_SIZE, offset=offset, sort=sort)
    counts = job_service.facets(state, f)
    types = [  # registered types only: others are never offered as filters
        t
        for t in display.all_types(state.registry, include_hidden=True)
        if hidden or not t.hidden or t.name == type
    ]
    stages = dict(sorted(counts.by_stage.items()))
    if stage and stage not in stages:
        stages[stage] = 0
    current = {"type": type, "status": status, "stage": stage, "q": q, "sort": sort}
    if request.query_params.get("hidden") in ("0", "1"):
        current["hidden"] = request.query_params["hidden"]

    def link(**change: Any) -> str:
        """This page's URL with some filters changed (a filter change goes to page 1): the
        filters, the order and the page live in the URL, so a view can be bookmarked or
        shared."""
        params = {**current, "page": None, **change}
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        if clean.get("page") == 1:
            clean.pop("page")
        return "/jobs" + ("?" + urlencode(clean) if clean else "")

    def sort_link(column: str) -> str:
        """The URL that sorts by ``column`` (again: the other direction)."""
        first = "asc" if column in ("type", "status") else "desc"
        other = "desc" if first == "asc" else "asc"
        now = sort or "created_desc"
        return link(sort=f"{column}_{other if now == f'{column}_{first}' else first}")

    ctx = {
        "page": "jobs",
        "jobs": [
            job_summary(state.registry, j, result.document_titles.get(j.id)) for j in result.jobs
        ],
        "counts": counts,
        "types": types,
        "statuses": STATUS_FILTERS,
        "stages": stages,
        "current": current,
        "link": link,
        "sort_link": sort_link,
        "sort": sort or "created_desc",
        "stage_labels": display.stage_labels(state.registry, [type] if type else None),
        "page_number": page,
        "page_size": PAGE_SIZE,
        "has_next": offset + PAGE_SIZE < counts.total,
        "queue": state.store.queue_controls(),
        "filter_json": json.dumps(
            {
                "type": [type] if type else [],
                "status": [status] if status else [],
                "stage": stage,
                "q": q,
                "include_hidden": hidden,
            }
        ),
    }
    return render(request, "_jobs.html" if partial else "jobs.html", ctx)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request, state: StateDep, user: UserDep, job_id: str, partial: bool = False
) -> HTMLResponse:
    detail = job_service.job_with_context(state, job_id, user)
    logs = state.store.job_logs(detail["id"], limit=LOG_TAIL, tail=True)
    ctx = {
        "page": "job",
        "job_id": detail["id"],
        "job": detail,
        "logs": [line.to_dict() for line in logs],
        "stage_map": {st["name"]: st["label"] for st in detail["stages"]},
        "log_tail": LOG_TAIL,
        "now": datetime.now(UTC),
        "input_json": json.dumps(detail["input_data"], indent=2, default=str),
        "output_json": json.dumps(detail["output_data"], indent=2, default=str)
        if detail["output_data"] is not None
        else None,
    }
    return render(request, "_job.html" if partial else "job.html", ctx)


# --- login (token mode) ---------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", {"page": "login", "next": _safe_next(next), "error": None})


@router.post("/login", response_model=None)
def login(
    request: Request,
    state: StateDep,
    token: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    session = state.security.authenticator.login(token)  # RHIZOME_API_TOKEN or a user's
    if session is None:
        return render(
            request,
            "login.html",
            {"page": "login", "next": _safe_next(next), "error": "That is not the token."},
            status=401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=30 * 24 * 3600,
    )
    return response


@router.post("/logout", response_model=None)
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _safe_next(value: str) -> str:
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
