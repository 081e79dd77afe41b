"""HTML rendering: the Jinja templates with their filters and globals, a page response
with the boot data the script needs and the security headers, and the error page."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import escape

import rhizome
from rhizome.errors import RhizomeError
from rhizome.web import display
from rhizome.web.resources import TEMPLATES
from rhizome.web.sse import queue_view
from rhizome.web.state import WebState

HIDDEN_COOKIE = "rhizome_hidden"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.globals.update(
        icon=display.icon, STATUS_TEXT=display.STATUS_TEXT, ERROR_TEXT=display.ERROR_TEXT
    )
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


def show_hidden(request: Request) -> bool:
    """The visitor chose to see hidden job types: ``?hidden=1`` in the URL (so a shared
    link shows the same jobs), else the cookie the Jobs panel sets."""
    asked = request.query_params.get("hidden")
    if asked in ("0", "1"):
        return asked == "1"
    return request.cookies.get(HIDDEN_COOKIE) == "1"


def queue_state(state: WebState) -> dict[str, Any] | None:
    """The queue controls for the banner every page shows (None if unreadable)."""
    try:
        return queue_view(state.store.queue_controls(), state.registry)
    except RhizomeError:
        return None


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    state: WebState = request.app.state.web
    page = context.get("page", "")
    hidden = show_hidden(request)
    queue = context.get("queue_banner", queue_state(state))
    boot = {
        "page": page,
        "queue": queue,
        "hidden": hidden,
        "icons": display.icon_svgs(),
        "status_text": display.STATUS_TEXT,
        "error_text": display.ERROR_TEXT,
        "job_id": context.get("job_id"),
        "document_id": context.get("document_id"),
        "token_mode": bool(state.security.token),
    }
    ctx = {
        "request": request,
        "page": page,
        "hidden": hidden,
        "show_dock": page not in ("jobs", "login", "error"),
        "queue_banner": queue,
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
        return HTMLResponse(f"<h1>{status}</h1><p>{escape(message)}</p>", status_code=status)
