"""Who may do what over HTTP.

* Every request's Host header must be ``host[:port]`` (a DNS name, an IPv4 address or a
  bracketed IPv6 address; nothing else: no user info, no path, no spaces).
* Bound to loopback without ``RHIZOME_API_TOKEN`` and without users: anyone on this
  machine is the ``local`` user, an admin; state-changing requests must come from a
  same-origin page (Origin / Sec-Fetch-Site / Referer checks) or from a non-browser
  client, and the Host header must name this machine (a guard against DNS rebinding).
* With a token (required to bind anything but loopback) or with users (``rhizome users
  add``): every request but ``/healthz`` and the login page needs ``Authorization: Bearer
  <token>`` or the session cookie the login page sets; cookie-authenticated writes must
  also be same-origin. ``RHIZOME_API_TOKEN`` is the ``local`` admin; a user's token is
  that user, with that user's role (``admin`` or ``user``).
* ``X-Rhizome-User`` names the user only on requests from a trusted reverse proxy
  (``RHIZOME_TRUSTED_PROXY``); from anyone else it is ignored. A user named by the proxy
  has the role the users table gives it (``user`` when it is not there).
* Wrong tokens are throttled per client: after ``login_burst`` failures, requests that
  present a token (and login attempts) get 429 with ``Retry-After`` until the bucket
  refills (one attempt per ``login_refill_seconds``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

import anyio.to_thread

from rhizome.auth import (
    ADMIN,
    DEFAULT_USER,
    USER,
    USER_PATTERN,
    Identity,
    Role,
    Users,
    session_value,
)
from rhizome.errors import ConfigError, DatabaseUnavailableError

log = logging.getLogger("rhizome.web.security")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

USER_HEADER = "x-rhizome-user"
SESSION_COOKIE = "rhizome_session"
IDENTITY_KEY = "rhizome.identity"
"""Where the guard leaves the request's :class:`~rhizome.auth.Identity` in the ASGI scope."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
OPEN_PATHS = frozenset({"/healthz", "/login", "/favicon.ico"})

__all__ = [
    "DEFAULT_USER",
    "IDENTITY_KEY",
    "SESSION_COOKIE",
    "USER_PATTERN",
    "Authenticator",
    "GuardMiddleware",
    "LoginThrottle",
    "SecurityConfig",
    "TrustedProxies",
    "check_bind",
    "is_loopback",
    "parse_host",
    "session_value",
]

_USER_RE = re.compile(USER_PATTERN)
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_RE = re.compile(rf"^(?P<name>{_LABEL}(?:\.{_LABEL})*\.?)(?::(?P<port>[0-9]{{1,5}}))?$")
_IPV6_RE = re.compile(r"^\[(?P<name>[0-9A-Fa-f:.]{2,45})\](?::(?P<port>[0-9]{1,5}))?$")


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a Host header that is exactly ``host[:port]``, else None.

    ``name`` is lower case, without brackets for IPv6. Refused: an empty header, user info
    (``localhost:8000@evil.example``), paths, spaces, a port out of range, a bracketed
    name that is not an IPv6 address."""
    if not value or len(value) > 300:
        return None
    match = _IPV6_RE.match(value)
    if match:
        try:
            ipaddress.IPv6Address(match.group("name"))
        except ValueError:
            return None
    else:
        match = _HOST_RE.match(value)
        if not match:
            return None
    port_text = match.group("port")
    port = int(port_text) if port_text is not None else None
    if port is not None and not 0 < port <= 65535:
        return None
    return match.group("name").lower().rstrip("."), port


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"Refusing to bind {host}: without RHIZOME_API_TOKEN anyone who can reach this "
            "address could read and change your library.",
            "Set RHIZOME_API_TOKEN to a long random secret (e.g. `openssl rand -hex 32`), "
            "or bind 127.0.0.1 (the default).",
        )


# --- trusted proxies ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedProxies:
    """Peers whose ``X-Rhizome-User`` (and ``X-Forwarded-For``) headers are believed."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    loopback: bool = False
    anyone: bool = False

    @classmethod
    def parse(cls, value: str | None) -> TrustedProxies:
        """``RHIZOME_TRUSTED_PROXY``: unset/``0``/``false``: nobody; ``1``/``true``/
        ``loopback``: a proxy on this machine; ``*``: any peer (only when nothing but the
        proxy can reach the server); otherwise addresses and networks, comma-separated
        (``10.0.0.5,192.168.0.0/24``)."""
        text = (value or "").strip().lower()
        if text in ("", "0", "false", "no", "off", "none"):
            return cls()
        if text in ("1", "true", "yes", "on", "loopback"):
            return cls(loopback=True)
        if text == "*":
            return cls(anyone=True)
        networks = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(
                    f"RHIZOME_TRUSTED_PROXY: {part!r} is not an IP address or network.",
                    "Give addresses or networks of your reverse proxies, comma-separated "
                    "(e.g. 10.0.0.5,192.168.0.0/24), or 1 for a proxy on this machine.",
                ) from None
        return cls(networks=tuple(networks))

    def __bool__(self) -> bool:
        return self.anyone or self.loopback or bool(self.networks)

    def trusts(self, peer: str | None) -> bool:
        if self.anyone:
            return True
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if self.loopback and address.is_loopback:
            return True
        return any(address in net for net in self.networks)


# --- throttling ---------------------------------------------------------------------------


class LoginThrottle:
    """A token bucket of failed authentications per client address (in memory: one per
    server process). Each failure takes one token; the bucket holds ``burst`` and refills
    one every ``refill_seconds``."""

    def __init__(self, burst: int = 10, refill_seconds: float = 6.0, max_clients: int = 10_000):
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, client: str, now: float) -> float:
        level, at = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), level + (now - at) / self.refill_seconds)

    def retry_after(self, client: str) -> int:
        """Seconds until this client may try again; 0: it may now."""
        if client not in self._buckets:
            return 0
        level = self._level(client, time.monotonic())
        if level >= 1:
            return 0
        return max(1, math.ceil((1 - level) * self.refill_seconds))

    def failed(self, client: str) -> None:
        now = time.monotonic()
        level = self._level(client, now) - 1
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            self._prune(now)
        self._buckets[client] = (max(level, -1.0), now)

    def _prune(self, now: float) -> None:
        full = [c for c in self._buckets if self._level(c, now) >= self.burst]
        for c in full:
            del self._buckets[c]
        if len(self._buckets) >= self.max_clients:  # under attack from many addresses
            self._buckets.clear()


# --- who is asking ------------------------------------------------------------------------

T = TypeVar("T")


class _Cache(Generic[T]):
    """Answers of the users table for ``ttl`` seconds; a stale answer is used while the
    database is unreachable (a blip must not log everyone out)."""

    def __init__(self, ttl: float, max_items: int = 10_000) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._items: dict[str, tuple[float, T]] = {}

    async def get(self, key: str, load: Callable[[], T]) -> T:
        now = time.monotonic()
        hit = self._items.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            value = await anyio.to_thread.run_sync(load)
        except Exception:  # the database is down (or locked): the last answer stands
            if hit is not None:
                return hit[1]
            raise
        if len(self._items) >= self.max_items:
            self._items.clear()
        self._items[key] = (time.monotonic(), value)
        return value

    def clear(self) -> None:
        self._items.clear()


class Authenticator:
    """Turns credentials into an :class:`Identity`: the master token
    (``RHIZOME_API_TOKEN``, the ``local`` admin) and the users' tokens and login cookies
    (looked up by hash, cached for ``ttl`` seconds: a token revoked by ``rhizome users
    revoke`` in another process stops working within that time)."""

    def __init__(self, users: Users | None, master_token: str | None, ttl: float = 5.0) -> None:
        self.users = users
        self.master_token = master_token or None
        self._master_session = session_value(master_token) if master_token else None
        self._tokens: _Cache[Identity | None] = _Cache(ttl)
        self._sessions: _Cache[Identity | None] = _Cache(ttl)
        self._roles: _Cache[Role] = _Cache(ttl)
        self._count: _Cache[int] = _Cache(min(ttl, 2.0))

    def master(self) -> Identity:
        return Identity(DEFAULT_USER, ADMIN, "master")

    async def required(self) -> bool:
        """Whether requests must authenticate: a master token is set or users exist."""
        if self.master_token:
            return True
        if self.users is None:
            return False
        users = self.users
        return await self._count.get("n", users.count) > 0

    async def by_token(self, token: str) -> Identity | None:
        if self.master_token and hmac.compare_digest(token.encode(), self.master_token.encode()):
            return self.master()
        if self.users is None or not token.startswith("rhz_") or len(token) > 200:
            return None
        users = self.users
        return await self._tokens.get(token, lambda: users.authenticate(token))

    async def by_session(self, cookie: str) -> Identity | None:
        if self._master_session and hmac.compare_digest(
            cookie.encode(), self._master_session.encode()
        ):
            return Identity(DEFAULT_USER, ADMIN, "cookie")
        if self.users is None or len(cookie) != 64:
            return None
        users = self.users
        return await self._sessions.get(cookie, lambda: users.by_session(cookie))

    async def role_of(self, name: str) -> Role:
        if self.users is None:
            return USER
        users = self.users
        return await self._roles.get(name, lambda: users.role_of(name) or USER)

    def login(self, token: str) -> str | None:
        """The session cookie for a valid token (master or a user's), or None. Blocking:
        call it from a worker thread."""
        if self.master_token and hmac.compare_digest(token.encode(), self.master_token.encode()):
            return session_value(token)
        users = self.users
        if users is not None and token.startswith("rhz_") and len(token) <= 200:
            return session_value(token) if users.authenticate(token) is not None else None
        return None

    def forget(self) -> None:
        """Drop every cached answer (after a token was revoked in this process)."""
        self._tokens.clear()
        self._sessions.clear()
        self._roles.clear()
        self._count.clear()


@dataclass
class SecurityConfig:
    token: str | None = None
    bind_host: str = "127.0.0.1"
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    """Extra Host header names accepted without a token (besides loopback names)."""
    max_body_bytes: int = 1024 * 1024
    max_upload_request_bytes: int = 1024 * 1024 * 1024
    upload_paths: tuple[str, ...] = ("/api/documents",)
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    auth: Authenticator | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    after_write: list[Callable[[Scope], None]] = field(default_factory=list)
    """Called with the request's scope when a state-changing request starts its answer (its
    change is committed): read caches drop what it may have changed before the client can
    ask again (the route may have said what it changed: ``WRITES_KEY``)."""

    def __post_init__(self) -> None:
        if self.auth is None:
            self.auth = Authenticator(None, self.token)

    @property
    def authenticator(self) -> Authenticator:
        assert self.auth is not None
        return self.auth

    def host_allowed(self, host_header: str) -> bool:
        parsed = parse_host(host_header)
        if parsed is None:
            return False
        if self.token:
            return True
        name = parsed[0]
        if name in self.allowed_hosts or name == self.bind_host.lower().strip("[]"):
            return True
        return is_loopback(name)


class RequestTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def error_body(status: int, kind: str, message: str, hint: str = "") -> bytes:
    return json.dumps({"error": {"type": kind, "message": message, "hint": hint}}).encode()


class GuardMiddleware:
    """Pure ASGI (streaming responses pass through untouched): host, auth, identity,
    throttling, same-origin, content type and body size checks, before any route runs."""

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
        auth = cfg.authenticator
        is_api = path.startswith("/api/") or path in ("/metrics", "/openapi.json")
        host = headers.get("host", "")

        if parse_host(host) is None:
            await _reply(
                send,
                400,
                "BadHost",
                f"The Host header {host[:100]!r} is not host[:port].",
                "Send a plain Host header, e.g. 127.0.0.1:8000.",
            )
            return
        if not cfg.host_allowed(host):
            await _reply(
                send,
                421,
                "HostNotAllowed",
                f"Host {host!r} is not this server.",
                "Open the UI at http://127.0.0.1:<port>/ (or set RHIZOME_API_TOKEN to serve "
                "other names).",
            )
            return

        peer = (scope.get("client") or (None, None))[0]
        trusted = cfg.trusted_proxies.trusts(peer)
        client = _client_address(peer, headers, trusted)
        login_attempt = method == "POST" and path == "/login"
        bearer = _bearer(headers)
        if (bearer is not None or login_attempt) and (wait := cfg.throttle.retry_after(client)):
            await _reply(
                send,
                429,
                "TooManyAttempts",
                "Too many wrong tokens from this address.",
                f"Wait {wait} s and try again with the right token.",
                extra_headers=[(b"retry-after", str(wait).encode())],
            )
            return

        try:
            identity: Identity | None = None
            via_bearer = via_cookie = False
            if bearer is not None:
                identity = await auth.by_token(bearer)
                if identity is None:
                    cfg.throttle.failed(client)
                    log.warning("refused a wrong API token from %s", client)
                    await _unauthorized(send)
                    return
                via_bearer = True
            proxied = identity is None or identity.via == "master"
            if trusted and USER_HEADER in headers and proxied:
                name = headers[USER_HEADER]
                if not _USER_RE.match(name):
                    await _reply(
                        send,
                        422,
                        "InvalidUser",
                        f"X-Rhizome-User {name[:70]!r} is not a valid user name.",
                        "Use 1 to 64 letters, digits and _ . @ + -.",
                    )
                    return
                identity = Identity(name, await auth.role_of(name), "proxy")
            if identity is None:
                cookie = _cookie(headers)
                if cookie:
                    identity = await auth.by_session(cookie)
                    via_cookie = identity is not None
            if identity is None:
                if await auth.required():
                    if not (path in OPEN_PATHS or path.startswith("/static/")):
                        if method in SAFE_METHODS and not is_api:
                            qs = scope.get("query_string", b"").decode("latin-1")
                            target = quote(path + ("?" + qs if qs else ""), safe="")
                            await _redirect(send, f"/login?next={target}")
                            return
                        await _unauthorized(send)
                        return
                else:
                    identity = Identity(DEFAULT_USER, ADMIN, "local")
        except Exception as exc:  # the users table cannot be read: the database is down
            message = exc.message if isinstance(exc, DatabaseUnavailableError) else str(exc)
            log.warning("cannot check credentials: %s", message)
            await _reply(
                send,
                503,
                "DatabaseUnavailable",
                f"Cannot check credentials: {message}",
                "Try again in a moment; the server reconnects by itself.",
                extra_headers=[(b"retry-after", b"2")],
            )
            return
        scope[IDENTITY_KEY] = identity

        if method not in SAFE_METHODS:
            if not via_bearer and not _same_origin(headers, scope, strict=via_cookie):
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
        if login_attempt:
            send = _watch_login(send, cfg.throttle, client)
        if method not in SAFE_METHODS and cfg.after_write:
            send = _after_write(send, cfg.after_write, scope)
        await self.app(scope, receive, send)


def _client_address(peer: str | None, headers: dict[str, str], trusted: bool) -> str:
    """The address a throttle counts: the peer, or behind a trusted proxy the last address
    it added to X-Forwarded-For."""
    if trusted:
        forwarded = headers.get("x-forwarded-for", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last[:100]
    return peer or "unknown"


def _after_write(send: Send, hooks: list[Callable[[Scope], None]], scope: Scope) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            for hook in hooks:
                hook(scope)
        await send(message)

    return wrapped


def _watch_login(send: Send, throttle: LoginThrottle, client: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message.get("status") == 401:
            throttle.failed(client)
            log.warning("refused a wrong login token from %s", client)
        await send(message)

    return wrapped


async def _unauthorized(send: Send) -> None:
    await _reply(
        send,
        401,
        "Unauthorized",
        "This server requires an API token.",
        "Send 'Authorization: Bearer <token>' (RHIZOME_API_TOKEN, or a user's token from "
        "`rhizome users token NAME`) or sign in at /login.",
        extra_headers=[(b"www-authenticate", b'Bearer realm="rhizome"')],
    )


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


def _bearer(headers: dict[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header (None without one)."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, given = value.partition(" ")
    if scheme.lower() != "bearer":
        return None  # another scheme is no credential of ours
    return given.strip()


def _cookie(headers: dict[str, str]) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else None


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
