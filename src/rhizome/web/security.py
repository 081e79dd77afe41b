"""Who may do what over HTTP.

* Bound to loopback without ``RHIZOME_API_TOKEN``: anyone on this machine; state-changing
  requests must come from a same-origin page (Origin / Sec-Fetch-Site / Referer checks)
  or from a non-browser client, and the Host header must name this machine (a guard
  against DNS rebinding).
* With a token (required to bind anything but loopback): every request but ``/healthz``
  and the login page needs ``Authorization: Bearer <token>`` or the session cookie the
  login page sets; cookie-authenticated writes must also be same-origin.
* The user is the ``X-Rhizome-User`` header (default ``local``); every query is scoped by it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from rhizome.errors import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

USER_HEADER = "x-rhizome-user"
USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$"
DEFAULT_USER = "local"
SESSION_COOKIE = "rhizome_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
OPEN_PATHS = frozenset({"/healthz", "/login", "/favicon.ico"})

_USER_RE = re.compile(USER_PATTERN)


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"Refusing to bind {host}: without RHIZOME_API_TOKEN anyone who can reach this "
            "address could read and change your library.",
            "Set RHIZOME_API_TOKEN to a long random secret (e.g. `openssl rand -hex 32`), "
            "or bind 127.0.0.1 (the default).",
        )


def session_value(token: str) -> str:
    """What the login cookie holds: derived from the token, never the token itself."""
    return hmac.new(token.encode(), b"rhizome-session-v1", hashlib.sha256).hexdigest()


@dataclass
class SecurityConfig:
    token: str | None = None
    bind_host: str = "127.0.0.1"
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    """Extra Host header names accepted without a token (besides loopback names)."""
    max_body_bytes: int = 1024 * 1024
    max_upload_request_bytes: int = 1024 * 1024 * 1024
    upload_paths: tuple[str, ...] = ("/api/documents",)

    def host_allowed(self, host_header: str) -> bool:
        if self.token:
            return True
        name = _host_name(host_header)
        if not name:
            return False
        if name in self.allowed_hosts or name == self.bind_host.lower():
            return True
        return is_loopback(name)


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def error_body(status: int, kind: str, message: str, hint: str = "") -> bytes:
    return json.dumps({"error": {"type": kind, "message": message, "hint": hint}}).encode()


class GuardMiddleware:
    """Pure ASGI (streaming responses pass through untouched): host, auth, same-origin,
    content type and body size checks, before any route runs."""

    def __init__(self, app: ASGIApp, config: SecurityConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"].upper()
        path: str = scope["path"]
        cfg = self.config
        is_api = path.startswith("/api/") or path in ("/metrics", "/openapi.json")

        if not cfg.host_allowed(headers.get("host", "")):
            await _reply(
                send,
                421,
                "HostNotAllowed",
                f"Host {headers.get('host', '')!r} is not this server.",
                "Open the UI at http://127.0.0.1:<port>/ (or set RHIZOME_API_TOKEN to serve "
                "other names).",
            )
            return

        via_bearer = False
        if cfg.token:
            via_bearer = _bearer_ok(headers, cfg.token)
            via_cookie = not via_bearer and _cookie_ok(headers, cfg.token)
            open_path = path in OPEN_PATHS or path.startswith("/static/")
            if not (via_bearer or via_cookie or open_path):
                if method in SAFE_METHODS and not is_api:
                    qs = scope.get("query_string", b"").decode("latin-1")
                    target = quote(path + ("?" + qs if qs else ""), safe="")
                    await _redirect(send, f"/login?next={target}")
                    return
                await _reply(
                    send,
                    401,
                    "Unauthorized",
                    "This server requires its API token.",
                    "Send 'Authorization: Bearer <RHIZOME_API_TOKEN>' or sign in at /login.",
                    extra_headers=[(b"www-authenticate", b'Bearer realm="rhizome"')],
                )
                return

        if method not in SAFE_METHODS:
            if not via_bearer and not _same_origin(headers, scope, strict=bool(cfg.token)):
                await _reply(
                    send,
                    403,
                    "CrossOriginRefused",
                    "State-changing requests must come from this server's own pages.",
                    "Use the UI, or call the API without browser Origin headers (or with the "
                    "API token).",
                )
                return
            if is_api:
                problem = _content_type_problem(path, headers, cfg)
                if problem:
                    await _reply(send, 415, "UnsupportedMediaType", problem[0], problem[1])
                    return
            limit = cfg.max_upload_request_bytes if path in cfg.upload_paths else cfg.max_body_bytes
            length = headers.get("content-length")
            if length is not None:
                try:
                    declared = int(length)
                except ValueError:
                    await _reply(send, 400, "BadRequest", "Invalid Content-Length header.")
                    return
                if declared > limit:
                    await _reply(
                        send,
                        413,
                        "RequestTooLarge",
                        f"The request body is {declared:,} bytes; the limit is {limit:,}.",
                        "Send smaller files (one per request) or raise the limit.",
                    )
                    return
            receive = _limited(receive, limit)
        await self.app(scope, receive, send)


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise RequestTooLarge(limit)
        return message

    return wrapped


def _content_type_problem(
    path: str, headers: dict[str, str], cfg: SecurityConfig
) -> tuple[str, str] | None:
    has_body = headers.get("content-length", "0") not in ("0", "") or (
        "transfer-encoding" in headers
    )
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if path in cfg.upload_paths:
        if ctype != "multipart/form-data":
            return (
                f"Uploads must be multipart/form-data, not {ctype or 'nothing'}.",
                "Send the files as form fields named 'files'.",
            )
        return None
    if has_body and ctype != "application/json":
        return (
            f"This endpoint takes application/json, not {ctype or 'an untyped body'}.",
            "Send a JSON body with 'Content-Type: application/json'.",
        )
    return None


def _bearer_ok(headers: dict[str, str], token: str) -> bool:
    value = headers.get("authorization", "")
    scheme, _, given = value.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _cookie_ok(headers: dict[str, str], token: str) -> bool:
    raw = headers.get("cookie")
    if not raw:
        return False
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return False
    morsel = jar.get(SESSION_COOKIE)
    return morsel is not None and hmac.compare_digest(
        morsel.value.encode(), session_value(token).encode()
    )


def _same_origin(headers: dict[str, str], scope: Scope, *, strict: bool) -> bool:
    """True unless a browser says the request comes from another site. ``strict``
    (cookie-authenticated): a browser header must positively confirm the origin."""
    host = headers.get("host", "").lower()
    origin = headers.get("origin")
    if origin is not None:
        if origin == "null":
            return False
        parts = urlsplit(origin)
        return parts.netloc.lower() == host and parts.scheme in ("http", "https")
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    referer = headers.get("referer")
    if referer:
        return urlsplit(referer).netloc.lower() == host
    return not strict


async def _reply(
    send: Send,
    status: int,
    kind: str,
    message: str,
    hint: str = "",
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = error_body(status, kind, message, hint)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def user_from_header(value: str | None) -> str | None:
    """The user named by the header, or None when it is malformed."""
    if value is None or value == "":
        return DEFAULT_USER
    return value if _USER_RE.match(value) else None
