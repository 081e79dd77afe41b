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
from rhizome.jobs.model import STATUS_FILTERS
from rhizome.library import Library
from rhizome.web import display
from rhizome.web.rendering import render, show_hidden
from rhizome.web.security import SESSION_COOKIE
from rhizome.web.services import jobs as job_service
from rhizome.web.services.documents import document_bundle, document_markdown, latest_jobs
from rhizome.web.state import StateDep, UserDep
from rhizome.web.views import document_view, job_summary

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


# --- library --------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def library_page(
    request: Request, state: StateDep, user: UserDep, partial: bool = False
) -> HTMLResponse:
    docs = Library(state.store).list_documents(user, limit=500)
    latest = latest_jobs(state.store, [d.id for d in docs], user)
    rows = [document_view(d, latest.get(d.id)) for d in docs]
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
    bundle = document_bundle(state.store, state.registry, document_id, user)
    doc = Library(state.store).get_document(document_id, user)
    text = document_markdown(state.storage, doc)
    ctx = {
        "page": "document",
        "document_id": doc.id,
        "doc": bundle["document"],
        "chunks": bundle["chunks"],
        "connections": bundle["connections"],
        "rejected_connections": bundle["rejected_connections"],
        "detection": bundle["detection"],
        "jobs": bundle["jobs"],
        "markdown_html": _markdown.render(text) if text is not None else None,
    }
    return render(request, "_document.html" if partial else "document.html", ctx)


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
    partial: bool = False,
) -> HTMLResponse:
    hidden = show_hidden(request)
    type, status, stage, q = (v or None for v in (type, status, stage, q))
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
    result = job_service.search(state, f, limit=PAGE_SIZE, offset=offset)
    counts = job_service.facets(state, f)
    types = [  # registered types only: others are never offered as filters
        t
        for t in display.all_types(state.registry, include_hidden=True)
        if hidden or not t.hidden or t.name == type
    ]
    stages = dict(sorted(counts.by_stage.items()))
    if stage and stage not in stages:
        stages[stage] = 0
    current = {"type": type, "status": status, "stage": stage, "q": q}

    def link(**change: Any) -> str:
        """This page's URL with some filters changed (a filter change goes to page 1)."""
        params = {**current, "page": None, **change}
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        if clean.get("page") == 1:
            clean.pop("page")
        return "/jobs" + ("?" + urlencode(clean) if clean else "")

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
    ctx = {
        "page": "job",
        "job_id": detail["id"],
        "job": detail,
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
