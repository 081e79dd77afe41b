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
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from rhizome.jobs.events import Change
from rhizome.jobs.model import JobFilter

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
