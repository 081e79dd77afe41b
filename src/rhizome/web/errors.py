"""Every error becomes ``{"error": {"type", "message", "hint"}}`` with the right status
(HTML pages get an error page). Unknown ids are 404, bad input 422, illegal transitions
409, an unreachable database 503; only a bug is a 500, and it is logged."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rhizome.errors import (
    ConfigError,
    DatabaseUnavailableError,
    ForbiddenError,
    IllegalTransitionError,
    InvalidInputError,
    InvalidKeyError,
    JobLostError,
    JobNotFoundError,
    NotFoundError,
    RhizomeError,
    StorageError,
    UnauthorizedError,
    UnknownJobTypeError,
)
from rhizome.library.repo import DocumentNotFoundError
from rhizome.web.rendering import error_page
from rhizome.web.security import RequestTooLarge

log = logging.getLogger("rhizome.web")


class PayloadTooLargeError(RhizomeError):
    default_hint = "Send a smaller file."


class UnsupportedTypeError(RhizomeError):
    default_hint = "Upload a PDF, EPUB, HTML, Markdown or text file."


class NotAvailableError(RhizomeError):
    default_hint = "Try again later."


STATUS: list[tuple[type[RhizomeError], int]] = [
    (JobNotFoundError, 404),
    (DocumentNotFoundError, 404),
    (NotFoundError, 404),
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (UnknownJobTypeError, 422),
    (InvalidInputError, 422),
    (IllegalTransitionError, 409),
    (JobLostError, 409),
    (PayloadTooLargeError, 413),
    (UnsupportedTypeError, 415),
    (NotAvailableError, 503),
    (DatabaseUnavailableError, 503),
    (InvalidKeyError, 400),
    (StorageError, 503),
    (ConfigError, 500),
]


def status_for(exc: RhizomeError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_json(status: int, kind: str, message: str, hint: str = "", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": kind, "message": message, "hint": hint}
    body.update(extra)
    return JSONResponse({"error": body}, status_code=status)


def error_title(exc: BaseException) -> str:
    """A page title for an error a person reads: ``JobNotFoundError`` → "Job not found"."""
    name = type(exc).__name__.removesuffix("Error") or "Error"
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|\d+", name)
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text[:1].upper() + text[1:] if text else "Error"


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith("/api/") or path in ("/metrics", "/healthz", "/openapi.json"):
        return False
    return "text/html" in request.headers.get("accept", "")


def _page(request: Request, status: int, title: str, message: str, hint: str) -> Response:
    return error_page(request, status, title, message, hint)


def install(app: FastAPI) -> None:
    @app.exception_handler(RhizomeError)
    async def rhizome_error(request: Request, exc: RhizomeError) -> Response:
        status = status_for(exc)
        if status >= 500:
            log.warning(
                "%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc
            )
        if _wants_html(request):
            return _page(request, status, error_title(exc), exc.message, exc.hint)
        return error_json(status, type(exc).__name__, exc.message, exc.hint)

    @app.exception_handler(RequestTooLarge)
    async def too_large(request: Request, exc: RequestTooLarge) -> Response:
        return error_json(
            413,
            "RequestTooLarge",
            f"The request body is larger than the {exc.limit:,} byte limit.",
            "Send smaller files (one per request).",
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            problems.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
        message = "Invalid request: " + "; ".join(problems[:5]) + "."
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()[:20]
        ]
        return error_json(
            422,
            "ValidationError",
            message,
            "Check the listed fields against the OpenAPI schema at /openapi.json.",
            details=details,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = f"Nothing at {request.url.path}."
        if _wants_html(request):
            return _page(request, exc.status_code, "Not found", message, "")
        return error_json(
            exc.status_code,
            {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError"),
            message,
            "See /openapi.json for the API." if exc.status_code in (404, 405) else "",
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_json(
            500,
            "InternalError",
            "Something went wrong on the server.",
            "This is a bug; the server log has the details.",
        )
