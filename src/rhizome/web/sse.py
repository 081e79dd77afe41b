"""Live job updates over Server-Sent Events.

One :class:`Broadcaster` per server process owns one :class:`~rhizome.jobs.events.ChangeFeed`
(LISTEN/NOTIFY on PostgreSQL, ``data_version`` on SQLite: no table polling) and one
thread that turns each change into a JSON message once, then hands it to the event loop
of every connected client of the job's user. A client gets a ``snapshot`` first (its
unfinished jobs), then ``job`` / ``event`` / ``deleted`` messages; after a reconnect (or
if it fell too far behind) it gets a fresh snapshot, so nothing is ever lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from rhizome.errors import RhizomeError
from rhizome.jobs.events import Change, ChangeFeed, Subscription
from rhizome.jobs.model import JobFilter
from rhizome.jobs.registry import Registry
from rhizome.jobs.store import SqlJobStore
from rhizome.web import display
from rhizome.web.services.documents import TitleCache
from rhizome.web.views import job_summary

log = logging.getLogger("rhizome.web.sse")

Message = tuple[str, str]  # (event name, JSON data)
EVERYONE = "*"
"""The "user" of messages every client gets (the queue controls)."""
MAX_BACKLOG = 5000


class Listener:
    """One connected client (lives on the event loop that serves it)."""

    def __init__(self, user_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.user_id = user_id
        self.loop = loop
        self.items: deque[Message] = deque()
        self.wake = asyncio.Event()
        self.resync = False

    def push(self, items: list[Message] | None) -> None:
        """Called on the loop (``call_soon_threadsafe``); ``None`` asks for a resync."""
        if items is None or len(self.items) + len(items) > MAX_BACKLOG:
            self.items.clear()
            self.resync = True
        else:
            self.items.extend(items)
        self.wake.set()

    async def next(self, stop: Callable[[], bool] | None = None) -> list[Message] | None:
        """The next messages; None when the client must get a fresh snapshot; an empty
        list when ``stop()`` says the server is shutting down."""
        while not self.items and not self.resync:
            if stop is not None and stop():
                return []
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), 0.5 if stop else None)
            except TimeoutError:
                continue
        if self.resync:
            self.resync = False
            self.items.clear()
            return None
        out = list(self.items)
        self.items.clear()
        return out


class Broadcaster:
    def __init__(self, store: SqlJobStore, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._feed: ChangeFeed | None = None
        self._sub: Subscription | None = None
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._owners_lock = threading.Lock()
        self.titles = TitleCache(store)
        """Document titles of jobs (shared with the API and the pages)."""
        self.messages_sent = 0
        self.observers: list[Callable[[list[Change] | None], None]] = []
        """Told of every batch of changes before the browsers are (None: changes may have
        been missed), e.g. the facet cache."""
        self.feed_ok = False

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rhizome-sse", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._feed is not None:
            self._feed.stop()
        self.feed_ok = False

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._listeners)

    def listen(self, user_id: str) -> Listener:
        listener = Listener(user_id, asyncio.get_running_loop())
        with self._lock:
            self._listeners.add(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def remember(self, job_id: str, user_id: str) -> None:
        with self._owners_lock:
            self._owners[job_id] = user_id
            self._owners.move_to_end(job_id)
            while len(self._owners) > 100_000:
                self._owners.popitem(last=False)

    def _owner(self, job_id: str, *, forget: bool = False) -> str | None:
        with self._owners_lock:
            return self._owners.pop(job_id, None) if forget else self._owners.get(job_id)

    # --- the feed thread --------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sub is None:
                try:
                    feed = ChangeFeed(self.store)
                    feed.start()
                    self._feed, self._sub = feed, feed.subscribe()
                    self.feed_ok = True
                    self._resync_all()  # changes may have been missed while it was down
                except Exception as exc:  # the database is down: retry, never die
                    self.feed_ok = False
                    log.warning("change feed not available: %s", exc)
                    self._stop.wait(2.0)
                    continue
            change = self._sub.get(timeout=0.5)
            if change is None:
                continue
            batch = [change]
            while len(batch) < 500:
                more = self._sub.get(timeout=0)
                if more is None:
                    break
                batch.append(more)
            if self._sub.overflowed:
                self._sub.overflowed = False
                self._resync_all()
            self._notify(batch)
            try:
                self._deliver(batch)
            except Exception as exc:  # e.g. the database went away mid-batch
                log.warning("could not deliver job changes (%s); clients resync", exc)
                self._resync_all()

    def _deliver(self, batch: list[Change]) -> None:
        with self._lock:
            watched = {listener.user_id for listener in self._listeners}
        by_user: dict[str, list[Message]] = {}
        for change in batch:
            if change.kind == "job" and change.job is not None:
                self.remember(change.job.id, change.job.user_id)
                if change.job.user_id not in watched:
                    continue  # nobody of this user listens: no message to build
            elif not watched:
                continue
            message = self._message(change)
            if message is not None:
                user, event, data = message
                by_user.setdefault(user, []).append((event, data))
        if not by_user:
            return
        with self._lock:
            listeners = list(self._listeners)
        everyone = by_user.pop(EVERYONE, [])  # queue controls: every user sees them
        for listener in listeners:
            items = everyone + by_user.get(listener.user_id, [])
            if items:
                self._send(listener, items)

    def _send(self, listener: Listener, items: list[Message] | None) -> None:
        try:
            listener.loop.call_soon_threadsafe(listener.push, items)
            self.messages_sent += len(items or ())
        except RuntimeError:  # its loop is closed
            self.unlisten(listener)

    def _notify(self, batch: list[Change] | None) -> None:
        for observe in self.observers:
            try:
                observe(batch)
            except Exception as exc:
                log.warning("a change observer failed: %s", exc)

    def _resync_all(self) -> None:
        self._notify(None)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            self._send(listener, None)

    def _message(self, change: Change) -> tuple[str, str, str] | None:
        if change.kind == "job" and change.job is not None:
            job = change.job
            self.remember(job.id, job.user_id)
            data = job_summary(self.registry, job, self.titles.of_job(job))
            return job.user_id, "job", _dumps(data)
        if change.kind == "event" and change.event is not None:
            event = change.event
            owner = self._owner(event.job_id)
            if owner is None:
                try:
                    owner = self.store.get(event.job_id).user_id
                except RhizomeError:
                    return None
                self.remember(event.job_id, owner)
            return owner, "event", _dumps(event.to_dict())
        if change.kind == "log" and change.log is not None:
            line = change.log
            owner = self._owner(line.job_id)
            if owner is None:
                try:
                    owner = self.store.get(line.job_id).user_id
                except RhizomeError:
                    return None
                self.remember(line.job_id, owner)
            return owner, "log", _dumps(line.to_dict())
        if change.kind == "queue" and change.queue is not None:
            return EVERYONE, "queue", _dumps(queue_view(change.queue, self.registry))
        if change.kind == "deleted" and change.job_id is not None:
            owner = self._owner(change.job_id, forget=True)
            if owner is None:
                return None
            return owner, "deleted", _dumps({"job_id": change.job_id})
        return None


OUTAGE_FIRST_RETRY = 1.0
OUTAGE_MAX_RETRY = 10.0
"""While the database is down, a stream retries its snapshot after 1, 2, 4, … 10 s."""


async def _sleep(seconds: float, stop: Callable[[], bool] | None) -> bool:
    """Sleep; False as soon as ``stop()`` says the server is shutting down."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        if stop is not None and stop():
            return False
        await asyncio.sleep(min(left, 0.25))
    return not (stop is not None and stop())


def queue_view(controls: dict[str, dict[str, Any]], registry: Registry) -> dict[str, Any]:
    """The queue controls as the pages show them: whether the whole queue is paused, and
    the paused job types with their labels."""
    paused_types = sorted(k for k, v in controls.items() if v.get("paused") and k != "*")
    whole = controls.get("*", {})
    return {
        "paused": bool(whole.get("paused")),
        "reason": whole.get("reason") if whole.get("paused") else None,
        "paused_types": [
            {"name": t, "label": display.type_display(registry, t).label} for t in paused_types
        ],
    }


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def snapshot(store: SqlJobStore, registry: Registry, b: Broadcaster, user_id: str) -> str:
    """The user's unfinished jobs (running first), for a client that (re)connects."""
    running = store.search_jobs(JobFilter(user_id=user_id, statuses=("processing",)), limit=100)
    waiting = store.search_jobs(
        JobFilter(user_id=user_id, statuses=("pending", "paused", "retrying")), limit=100
    )
    jobs = []
    for job in running + waiting:
        b.remember(job.id, job.user_id)
        jobs.append(job_summary(registry, job, b.titles.of_job(job)))
    return _dumps(
        {
            "jobs": jobs,
            "queue": queue_view(store.queue_controls(), registry),
            "server_time": datetime.now(UTC).isoformat(),
            "user_id": user_id,
        }
    )


async def event_stream(
    b: Broadcaster,
    user_id: str,
    make_snapshot: Callable[[], str],
    run_sync: Callable[[Callable[[], str]], Any],
    stop: Callable[[], bool] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The SSE messages for one client (the caller wraps them in EventSourceResponse).
    Ends cleanly when ``stop()`` turns true (server shutdown)."""
    listener = b.listen(user_id)  # before the snapshot: no change falls between the two
    counter = 0
    delay = OUTAGE_FIRST_RETRY
    try:
        while True:
            try:
                data = await run_sync(make_snapshot)
            except Exception as exc:  # the database is down: say so, retry, never crash
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                log.warning(
                    "live updates for %s: cannot read jobs (%s); retry in %.0fs",
                    user_id,
                    message,
                    delay,
                )
                counter += 1
                yield {
                    "event": "outage",
                    "data": _dumps(
                        {
                            "message": "The database is not reachable; live updates "
                            "resume by themselves when it is back.",
                            "detail": message,
                            "retry_in": delay,
                        }
                    ),
                    "id": str(counter),
                    "retry": 1000,
                }
                if not await _sleep(delay, stop):
                    return  # shutting down
                delay = min(delay * 2, OUTAGE_MAX_RETRY)
                continue
            delay = OUTAGE_FIRST_RETRY
            counter += 1
            yield {"event": "snapshot", "data": data, "id": str(counter), "retry": 1000}
            while True:
                items = await listener.next(stop)
                if items is None:
                    break  # resync: a fresh snapshot
                if not items:
                    return  # shutting down
                for event, payload in items:
                    counter += 1
                    yield {"event": event, "data": payload, "id": str(counter)}
    finally:
        b.unlisten(listener)
