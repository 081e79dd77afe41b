"""What every request handler reaches through ``request.app.state.web``."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from rhizome.app import App
from rhizome.auth import Identity
from rhizome.errors import ForbiddenError, InvalidInputError, UnauthorizedError
from rhizome.jobs.model import Facets, WorkerInfo
from rhizome.jobs.registry import Registry
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.worker import Worker
from rhizome.storage import Storage
from rhizome.web import display
from rhizome.web.readcache import WRITES_KEY, FacetCache, ResponseCache
from rhizome.web.security import IDENTITY_KEY, SecurityConfig
from rhizome.web.sse import Broadcaster

WORKERS_TTL = 1.0
"""Seconds the workers table is reused for jobs' pages."""


@dataclass
class WebState:
    app: App
    security: SecurityConfig
    broadcaster: Broadcaster
    max_upload_bytes: int
    embedded_worker: bool = False
    worker: Worker | None = None
    worker_thread: threading.Thread | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    facet_cache: FacetCache[Facets] = field(init=False)
    """Facet counts, reused until a job's type, shown status or stage changes."""
    responses: ResponseCache = field(init=False)
    """Whole answers of the read endpoints, reused until a change may move them."""

    def __post_init__(self) -> None:
        self._registry = self.app.registry  # one lookup (App.registry imports the handlers)
        self._workers: tuple[float, list[WorkerInfo]] | None = None
        # titles first: an answer recomputed after a change must not take an old title
        self.broadcaster.observers.insert(0, self.broadcaster.titles.observe)
        self.facet_cache = FacetCache(lambda: self.broadcaster.feed_ok)
        self.broadcaster.observers.append(self.facet_cache.observe)
        self.responses = ResponseCache(
            lambda: self.broadcaster.feed_ok, ttl=self.app.settings.api_cache_seconds
        )
        self.broadcaster.observers.append(self.responses.observe)
        self.security.after_write.append(self.after_write)

    def after_write(self, scope: MutableMapping[str, Any]) -> None:
        """A state-changing request answers (its change is committed): the read caches
        drop what it may have changed, before its client can ask again. A route that said
        what it changed (``WRITES_KEY``: the jobs it created) moves only that; any other
        write drops every cached answer of its user, or of everyone for an admin's."""
        identity = scope.get(IDENTITY_KEY)
        writes = scope.get(WRITES_KEY)
        if isinstance(identity, Identity) and isinstance(writes, list):
            self.facet_cache.moved((user, job_type, True) for user, job_type, _ in writes)
            self.responses.moved(
                library=[(user, job_type) for user, job_type, _ in writes],
                jobs=[job_id for _, _, job_id in writes],
            )
            return
        self.facet_cache.invalidate()
        self.broadcaster.titles.clear()
        if isinstance(identity, Identity) and not identity.is_admin:
            self.responses.forget_user(identity.user)
        else:
            self.responses.invalidate()

    @property
    def store(self) -> SqlJobStore:
        return self.app.store

    @property
    def storage(self) -> Storage:
        return self.app.storage

    @property
    def registry(self) -> Registry:
        return self._registry

    def workers(self) -> list[WorkerInfo]:
        """The workers table, read at most once a second (a job's page shows its worker;
        such answers are cached for a second at most anyway)."""
        now = time.monotonic()
        cached = self._workers
        if cached is not None and now - cached[0] < WORKERS_TTL:
            return cached[1]
        workers = self.store.list_workers()
        self._workers = (now, workers)
        return workers

    def known_types(self) -> set[str]:
        """The job types offered as filters and accepted by the API: the registered ones."""
        return set(self.registry.names())

    def hidden_types(self) -> tuple[str, ...]:
        return tuple(display.hidden_types(self.registry))


async def get_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


async def current_identity(request: Request) -> Identity:
    """Who the request acts as, as the security guard established it (token, login
    cookie, a trusted proxy's X-Rhizome-User, or the local admin of a laptop install)."""
    identity = request.scope.get(IDENTITY_KEY)
    if not isinstance(identity, Identity):
        raise UnauthorizedError(
            "This request carries no identity.", "Send the API token or sign in at /login."
        )
    return identity


async def current_user(identity: Annotated[Identity, Depends(current_identity)]) -> str:
    return identity.user


async def require_admin(identity: Annotated[Identity, Depends(current_identity)]) -> Identity:
    """Queue controls, emergency controls and the other admin actions."""
    if not identity.is_admin:
        raise ForbiddenError(
            f"This needs the admin role; {identity.user} is a {identity.role}.",
            "Ask an admin, or run the matching `rhizome` command on the server (an admin "
            "grants the role with `rhizome users role NAME admin`).",
        )
    return identity


StateDep = Annotated[WebState, Depends(get_state)]
IdentityDep = Annotated[Identity, Depends(current_identity)]
AdminDep = Annotated[Identity, Depends(require_admin)]
ADMIN_ONLY = [Depends(require_admin)]
"""``dependencies=ADMIN_ONLY`` on a route: only admins may call it."""
UserDep = Annotated[str, Depends(current_user)]


# --- input hygiene --------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def clean_text(value: str, what: str = "text") -> str:
    """Refuse strings no database can store (NUL, lone surrogates)."""
    if "\x00" in value:
        raise InvalidInputError(f"The {what} contains a NUL character.", "Remove it and retry.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"The {what} is not valid Unicode (lone surrogate).", "Send UTF-8 text."
        ) from None
    return value


def clean_json(value: Any, what: str = "input", max_depth: int = 32) -> Any:
    """Check a JSON value before it is stored: no NUL or lone surrogates in strings (keys
    too), no NaN/Infinity, bounded nesting. Iterative: hostile nesting cannot recurse."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise InvalidInputError(
                f"The {what} is nested more than {max_depth} levels deep.", "Flatten it."
            )
        if isinstance(item, str):
            clean_text(item, what)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInputError(
                    f"The {what} contains NaN or Infinity.", "Use finite numbers or null."
                )
        elif isinstance(item, dict):
            for k, v in item.items():
                clean_text(str(k), what)
                stack.append((v, depth + 1))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


def safe_filename(name: str | None) -> str | None:
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _CONTROL.sub("", base.replace("\x00", "")).strip()
    try:
        base.encode("utf-8")
    except UnicodeEncodeError:
        base = base.encode("utf-8", "replace").decode("utf-8")
    return base[:255] or None
