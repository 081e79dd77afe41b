"""Facet counts (the filter badges of the Jobs panel and of ``GET /api/jobs``) reused until
a job changes in a way that moves one of them.

Counting groups every job of the user, so under load it is the most expensive part of a
job list; the counts only change when a job appears, disappears, or changes its type,
shown status or stage, which is rarer than the progress writes a running worker makes, and
a change moves only the counts of its user's filters that do not leave its type out (the
hidden ``noop`` jobs of a benchmark leave the default views alone). The server's change
feed (:class:`~rhizome.web.sse.Broadcaster`) tells the cache of every change before it
tells the browsers, and every write request through the API empties it, so what a client
reads after an action or a live message is never older than that. Without a running feed
(tests that skip the lifespan) nothing is cached.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

from rhizome.auth import Identity
from rhizome.jobs.events import Change
from rhizome.jobs.model import JobFilter
from rhizome.web.security import IDENTITY_KEY, ASGIApp, Receive, Send
from rhizome.web.security import Scope as ASGIScope

T = TypeVar("T")

MAX_JOBS = 100_000
"""Jobs whose last counted shape is remembered (older ones count as unknown)."""


class FacetCache(Generic[T]):
    def __init__(self, enabled: Callable[[], bool], ttl: float = 30.0, max_items: int = 256):
        self.enabled = enabled
        self.ttl = ttl
        self.max_items = max_items
        self.version = 0
        """Counts every change seen; an answer computed across a change is not kept."""
        self.hits = 0
        self.misses = 0
        self.gaps = 0
        """Times the feed said it may have missed changes (everything was forgotten)."""
        self._items: dict[JobFilter, tuple[float, T]] = {}
        self._shapes: OrderedDict[str, tuple[str, str, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: JobFilter, compute: Callable[[], T]) -> T:
        if not self.enabled():
            return compute()
        version = self.version
        hit = self._items.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            self.hits += 1
            return hit[1]
        self.misses += 1
        value = compute()
        with self._lock:
            if self.version == version:  # nothing changed while it was computed
                if len(self._items) >= self.max_items:
                    self._items.clear()
                self._items[key] = (time.monotonic(), value)
        return value

    def invalidate(self) -> None:
        """Forget every answer."""
        with self._lock:
            self.version += 1
            self._items.clear()

    def moved(self, changes: Iterable[tuple[str, str, bool]]) -> None:
        """Forget the answers that a change of a job of ``(user, type, whether its type,
        status or stage changed)`` may have moved."""
        moved = set(changes)
        if not moved:
            return
        with self._lock:
            self.version += 1
            for f in list(self._items):
                if any(_affects(f, *change) for change in moved):
                    del self._items[f]

    def observe(self, changes: Iterable[Change] | None) -> None:
        """Called by the change feed (None: it may have missed changes)."""
        if changes is None:
            self.gaps += 1
            self._shapes.clear()
            self.invalidate()
            return
        moved: list[tuple[str, str, bool]] = []
        for change in changes:
            if change.kind == "deleted":
                self._shapes.pop(change.job_id or "", None)
                self.invalidate()  # the feed does not say whose job it was
                return
            if change.kind == "job" and change.job is not None:
                job = change.job
                shape = (job.job_type, job.display_status, job.stage)
                reshaped = self._shapes.get(job.id) != shape
                moved.append((job.user_id, job.job_type, reshaped))
                if reshaped:
                    self._shapes[job.id] = shape
                    self._shapes.move_to_end(job.id)
                    if len(self._shapes) > MAX_JOBS:
                        self._shapes.popitem(last=False)
        self.moved(moved)


def _affects(f: JobFilter, user: str, job_type: str, reshaped: bool) -> bool:
    """Whether a change of a job of ``user`` and ``job_type`` may move a count under ``f``
    (the counts group by type, shown status and stage; with a text search, any change may
    make the job match or not)."""
    if f.user_id is not None and f.user_id != user:
        return False
    if job_type in f.exclude_types and job_type not in f.types:
        return False
    return reshaped or f.q is not None


# --- whole answers ------------------------------------------------------------------------

LIBRARY_NEUTRAL_TYPES = frozenset({"noop"})
"""Job types whose runs change no document, chunk, connection or title (the hidden ``noop``
of tests and benchmarks): their changes leave the cached job lists that leave them out,
and every cached document answer, alone. Any other type may change the library."""

AS_ASKED: ContextVar[Hashable | None] = ContextVar("rhizome_answer_as_asked", default=None)
"""The key of the request as it came (user, path, query string) while a cacheable answer is
computed for it (set by :class:`CachedAnswers`)."""

WRITES_KEY = "rhizome.writes"
"""A state-changing route may list what it changed in its request scope, as
``[(user, job type, job id), …]`` of the jobs it created; the caches then drop only what
those move instead of everything of the user (see ``WebState.after_write``)."""

MAX_ANSWERS = 2048
"""Cached answers kept at most (the oldest go first)..."""
MAX_BYTES = 64 * 1024 * 1024
"""... and their bytes at most; a larger answer than a sixteenth of that is not kept."""


@dataclass(frozen=True)
class Scope:
    """What a cached answer depends on, so a change drops exactly the answers it may move.

    * a user's *library* answers (job lists and searches, the documents, a document): any
      change of one of the user's jobs except those of a type in ``ignore``;
    * one job's page (``job`` = the id, prefix or short id it was asked by): any change
      of a job whose id starts or ends with it (a short id is the id's last digits), or of
      its timeline.
    """

    user: str
    job: str | None = None
    ignore: frozenset[str] = frozenset()

    def moved_by(self, user: str | None, job_id: str | None, job_type: str | None) -> bool:
        """Whether a change of a job (``None``: not known) may move this answer."""
        if self.job is not None:
            if job_id is None:
                return True
            job_id = job_id.lower()
            return job_id.startswith(self.job) or job_id.endswith(self.job)
        if user is not None and user != self.user:
            return False
        return job_type is None or job_type not in self.ignore


@dataclass
class _Answer:
    scope: Scope
    body: bytes
    expires: float
    resolved: str | None
    """For a job's page asked by a prefix: the job it named."""


@dataclass(eq=False)
class _Ticket:
    scope: Scope
    moved: bool = False


class ResponseCache:
    """Whole JSON answers of the read endpoints (job lists and searches, a job, the
    documents, a document) per user and request, kept until a change may move them.

    Freshness: the server's change feed reports every committed change of a job (and of its
    timeline) to :meth:`observe` **before** any browser hears of it, and drops the answers
    of that job's user that the change may move (a change of a hidden ``noop`` job leaves
    the views that hide it alone); every state-changing API request empties the cache when
    it answers, so a client never reads an answer older than its own write or than a live
    message it got. An answer being computed while a change that moves it arrives is not
    kept. Changes outside the feed (another API process's writes that are not jobs, the
    workers table) and answers that depend on the clock (run time, ETA, retry countdown of
    unfinished jobs, a live worker's last sign of life) are bounded by ``ttl``
    (``RHIZOME_API_CACHE_SECONDS``) and ``clock_ttl`` seconds; ``ttl`` 0 turns it off.
    Without a running feed nothing is cached. The key always includes the user: an answer
    is never served to another user.
    """

    def __init__(
        self,
        enabled: Callable[[], bool],
        ttl: float = 30.0,
        clock_ttl: float = 1.0,
        max_items: int = MAX_ANSWERS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.enabled = enabled
        self.ttl = ttl
        self.clock_ttl = min(clock_ttl, ttl)
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.size = 0
        """Bytes of the answers kept."""
        self.hits = 0
        self.misses = 0
        self._answers: OrderedDict[Hashable, _Answer] = OrderedDict()
        self._by_user: dict[str, set[Hashable]] = {}
        self._by_job: dict[str, set[Hashable]] = {}
        self._prefixed: set[Hashable] = set()
        self._pending: set[_Ticket] = set()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.ttl > 0 and self.enabled()

    def get(self, key: Hashable) -> bytes | None:
        """The cached answer, or None (then :meth:`begin` before computing it)."""
        if not self.active:
            return None
        answer = self._answers.get(key)
        if answer is None or answer.expires < time.monotonic():
            self.misses += 1
            return None
        self.hits += 1
        return answer.body

    def begin(self, scope: Scope) -> _Ticket:
        """Before an answer is computed: changes from now on that move it are noted."""
        ticket = _Ticket(scope)
        with self._lock:
            self._pending.add(ticket)
        return ticket

    def end(
        self,
        ticket: _Ticket,
        key: Hashable,
        body: bytes | None,
        *,
        clock: bool = False,
        resolved: str | None = None,
        alias: Hashable | None = None,
    ) -> None:
        """After it was computed (``body`` None: it failed): kept unless a change moved it
        meanwhile or the feed stopped. ``clock``: the answer depends on the clock;
        ``alias``: also kept under this key (the request as it came, see
        :class:`CachedAnswers`)."""
        with self._lock:
            self._pending.discard(ticket)
            if body is None or ticket.moved or not self.active:
                return
            if alias is not None:
                self._keep(alias, ticket.scope, body, clock, resolved)
            self._keep(key, ticket.scope, body, clock, resolved)

    def _keep(
        self, key: Hashable, scope: Scope, body: bytes, clock: bool, resolved: str | None
    ) -> None:
        """Under the lock."""
        self._drop(key)
        if len(body) > self.max_bytes // 16:
            return
        while self._answers and (
            len(self._answers) >= self.max_items or self.size + len(body) > self.max_bytes
        ):
            self._drop(next(iter(self._answers)))
        self.size += len(body)
        ttl = self.clock_ttl if clock else self.ttl
        self._answers[key] = _Answer(scope, body, time.monotonic() + ttl, resolved)
        if scope.job is not None:
            self._by_job.setdefault(resolved or scope.job, set()).add(key)
            if resolved is not None and resolved != scope.job:
                self._prefixed.add(key)
        else:
            self._by_user.setdefault(scope.user, set()).add(key)

    def _drop(self, key: Hashable) -> None:
        answer = self._answers.pop(key, None)
        if answer is None:
            return
        self.size -= len(answer.body)
        scope = answer.scope
        index, name = (
            (self._by_job, answer.resolved or scope.job)
            if scope.job is not None
            else (self._by_user, scope.user)
        )
        keys = index.get(name or "")
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[name or ""]
        self._prefixed.discard(key)

    def invalidate(self) -> None:
        """Forget every answer (and every answer being computed)."""
        with self._lock:
            self._answers.clear()
            self.size = 0
            self._by_user.clear()
            self._by_job.clear()
            self._prefixed.clear()
            for ticket in self._pending:
                ticket.moved = True

    def forget_user(self, user: str) -> None:
        """Forget every answer of ``user`` (and those being computed)."""
        with self._lock:
            for key in [k for k, a in self._answers.items() if a.scope.user == user]:
                self._drop(key)
            for ticket in self._pending:
                if ticket.scope.user == user:
                    ticket.moved = True

    def moved(
        self,
        library: Iterable[tuple[str | None, str | None]] = (),
        jobs: Iterable[str | None] = (),
    ) -> None:
        """Forget the answers that changes may move: ``library``, changes of a job of
        ``(user, type)``; ``jobs``, changes of these jobs or their timelines (``None``: not
        known, any)."""
        library = set(library)
        jobs = set(jobs)
        if not library and not jobs:
            return
        with self._lock:
            for ticket in self._pending:
                scope = ticket.scope
                if scope.job is None:
                    ticket.moved = ticket.moved or any(
                        scope.moved_by(u, None, t) for u, t in library
                    )
                else:
                    ticket.moved = ticket.moved or any(scope.moved_by(None, j, None) for j in jobs)
            for user, job_type in library:
                for name in list(self._by_user) if user is None else [user]:
                    for key in list(self._by_user.get(name, ())):
                        if self._answers[key].scope.moved_by(user, None, job_type):
                            self._drop(key)
            if None in jobs:
                for key in [k for k, a in self._answers.items() if a.scope.job is not None]:
                    self._drop(key)
                return
            for job_id in jobs:
                assert job_id is not None
                for key in list(self._by_job.get(job_id, ())):
                    self._drop(key)
            for key in list(self._prefixed):
                if any(self._answers[key].scope.moved_by(None, j, None) for j in jobs):
                    self._drop(key)

    def observe(self, changes: Iterable[Change] | None) -> None:
        """Called by the change feed (None: it may have missed changes)."""
        if changes is None:
            self.invalidate()
            return
        library: set[tuple[str | None, str | None]] = set()
        jobs: set[str | None] = set()
        for change in changes:
            if change.kind == "job" and change.job is not None:
                job = change.job
                library.add((job.user_id, job.job_type))
                jobs.add(job.id)
            elif change.kind == "event" and change.event is not None:
                jobs.add(change.event.job_id)  # a timeline entry shows on its job's page
            elif change.kind == "deleted":
                library.add((None, None))  # whose job it was is not said
                jobs.add(change.job_id)
        self.moved(library, jobs)


class CachedAnswers:
    """Pure ASGI, inside the security guard (every check has passed and the request has
    its identity): a ``GET /api/…`` whose answer the cache holds for this user, path and
    query string, as they came, is answered from it before any routing, parameter parsing
    or dependency runs; otherwise the endpoint that computes a cacheable answer keeps it
    under that key too (the same bytes, dropped by the same changes)."""

    def __init__(self, app: ASGIApp, cache: ResponseCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not self.cache.active:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        identity = scope.get(IDENTITY_KEY)
        if not path.startswith("/api/") or not isinstance(identity, Identity):
            await self.app(scope, receive, send)
            return
        key = ("as asked", identity.user, path, scope.get("query_string", b""))
        body = self.cache.get(key)
        if body is None:
            token = AS_ASKED.set(key)
            try:
                await self.app(scope, receive, send)
            finally:
                AS_ASKED.reset(token)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
