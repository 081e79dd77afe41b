"""Server-rendered pages: the library, a document, the Jobs panel, a job. Light JavaScript
(static/app.js) keeps them live through /api/events; ``?partial=1`` returns the part of a
page the script swaps in when something structural changed."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt

import rhizome
from rhizome.errors import InvalidInputError
from rhizome.library import Library
from rhizome.web import display, queries
from rhizome.web.api import build_filter, document_bundle, latest_jobs
from rhizome.web.documents import document_markdown
from rhizome.web.security import SESSION_COOKIE, session_value
from rhizome.web.state import StateDep, UserDep, WebState
from rhizome.web.views import document_view, job_detail, job_summary

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
HIDDEN_COOKIE = "rhizome_hidden"
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


def make_templates() -> Jinja2Templates:
    from rhizome.web.app import WEB_ROOT

    templates = Jinja2Templates(directory=str(WEB_ROOT / "templates"))
    env = templates.env
    env.globals.update(icon=display.icon, STATUS_TEXT=display.STATUS_TEXT)
    env.filters.update(
        int=display.fmt_int,
        bytes=display.fmt_bytes,
        duration=display.fmt_duration,
        time=display.fmt_time,
        iso=display.iso,
        pct=lambda v: f"{float(v or 0):.0f}",
        short=lambda v, n=12: (str(v)[:n] + "…") if v and len(str(v)) > n else (v or ""),
    )
    return templates


def _show_hidden(request: Request) -> bool:
    return request.cookies.get(HIDDEN_COOKIE) == "1"


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    state: WebState = request.app.state.web
    page = context.get("page", "")
    hidden = _show_hidden(request)
    boot = {
        "page": page,
        "hidden": hidden,
        "icons": display.icon_svgs(),
        "status_text": display.STATUS_TEXT,
        "job_id": context.get("job_id"),
        "document_id": context.get("document_id"),
        "token_mode": bool(state.security.token),
    }
    ctx = {
        "request": request,
        "page": page,
        "hidden": hidden,
        "show_dock": page != "jobs",
        "boot_json": json.dumps(boot).replace("<", "\\u003c"),  # inert inside <script>
        "version": rhizome.__version__,
        "token_mode": bool(state.security.token),
        **context,
    }
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )
    return response


def error_page(request: Request, status: int, title: str, message: str, hint: str) -> Response:
    try:
        return render(
            request,
            "error.html",
            {"page": "error", "title": title, "message": message, "hint": hint},
            status=status,
        )
    except Exception:
        return HTMLResponse(f"<h1>{status}</h1><p>{message}</p>", status_code=status)


# --- library --------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def library_page(
    request: Request, state: StateDep, user: UserDep, partial: bool = False
) -> HTMLResponse:
    docs = Library(state.store).list_documents(user, limit=500)
    latest = latest_jobs(state, [d.id for d in docs], user)
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
    bundle = document_bundle(state, document_id, user)
    doc = Library(state.store).get_document(document_id, user)
    text = document_markdown(state.storage, doc)
    ctx = {
        "page": "document",
        "document_id": doc.id,
        "doc": bundle["document"],
        "chunks": bundle["chunks"],
        "connections": bundle["connections"],
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
    hidden = _show_hidden(request)
    type, status, stage, q = (v or None for v in (type, status, stage, q))
    try:
        f = build_filter(
            state,
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
    result = queries.search_jobs(state.store, f, user_id=user, limit=PAGE_SIZE, offset=offset)
    counts = queries.facets(state.store, f, user_id=user)
    types = display.all_types(state.registry, include_hidden=hidden)
    if type and type not in {t.name for t in types}:
        types.append(display.type_display(state.registry, type))
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
        "statuses": display.STATUS_FILTERS,
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
    job = state.store.get(job_id, user)
    worker = None
    if job.worker_id:
        worker = next((w for w in state.store.list_workers() if w.id == job.worker_id), None)
    title = None
    if job.entity_type == "document" and job.entity_id:
        title = state.broadcaster.document_title(job.entity_id, job.user_id)
    detail = job_detail(
        state.registry, job, document_title=title, events=state.store.events(job.id), worker=worker
    )
    ctx = {
        "page": "job",
        "job_id": job.id,
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
    expected = state.security.token
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return render(
            request,
            "login.html",
            {"page": "login", "next": _safe_next(next), "error": "That is not the token."},
            status=401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(expected),
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
