"""Change feed for live UIs: every change to a job (status, progress, checkpoint,
heartbeat), every timeline event, every line a job logs and every change of the queue
controls (a queue or job type paused), pushed to subscribers within milliseconds.

One :class:`ChangeFeed` thread per process waits on the store's change waiter
(:meth:`~rhizome.jobs.store.base.SqlJobStore.change_waiter`: ``LISTEN`` on PostgreSQL,
``PRAGMA data_version`` on SQLite) and, when something changed, asks the store for the rows
changed since its cursor and hands them to every subscriber's queue. Works across
processes and machines; no periodic polling of tables.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rhizome.errors import RhizomeError
from rhizome.jobs.model import Job, JobEvent, JobLogLine
from rhizome.jobs.store.base import ChangeWaiter, SqlJobStore

log = logging.getLogger("rhizome.jobs.events")


@dataclass(frozen=True)
class Change:
    kind: str  # "job" | "event" | "deleted" | "log" | "queue"
    job: Job | None = None
    event: JobEvent | None = None
    job_id: str | None = None
    log: JobLogLine | None = None
    queue: dict[str, dict[str, Any]] | None = None
    """The queue controls (``store.queue_controls()``) after they changed."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.job is not None:
            out["job"] = self.job.to_dict()
        if self.event is not None:
            out["event"] = self.event.to_dict()
        if self.job_id is not None:
            out["job_id"] = self.job_id
        if self.log is not None:
            out["log"] = self.log.to_dict()
        if self.queue is not None:
            out["queue"] = self.queue
        return out


class Subscription:
    def __init__(self, feed: ChangeFeed, maxsize: int = 10000) -> None:
        self.feed = feed
        self.queue: queue.Queue[Change] = queue.Queue(maxsize)
        self.overflowed = False

    def get(self, timeout: float | None = None) -> Change | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.feed.unsubscribe(self)


class ChangeFeed:
    """Start once per process (``start()``); ``subscribe()`` per listener."""

    def __init__(self, store: SqlJobStore) -> None:
        self.store = store
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_event = 0
        self._last_log = 0
        self._queue: dict[str, dict[str, Any]] | None = None
        self._since: datetime | None = None
        self._seen: dict[str, tuple[Any, Any, str]] = {}
        self.poke = threading.Event()
        """Set by in-process writers to skip the wait (optional)."""

    def start(self) -> None:
        if self._thread is not None:
            return
        self._last_event, self._since = self.store.feed_position()
        self._last_log = self.store.last_log_id()
        self._queue = self.store.queue_controls()
        self._thread = threading.Thread(target=self._run, name="rhizome-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def _run(self) -> None:
        wait: ChangeWaiter | None = None
        while not self._stop.is_set():
            try:
                if wait is None:
                    wait = self.store.change_waiter()
                wait(0.5)
                self._read()
            except Exception as exc:  # a bad moment of the database must not kill the feed
                if isinstance(exc, RhizomeError | OSError):
                    log.warning("change feed: %s", exc)
                else:
                    log.warning("change feed error: %s", exc)
                if wait is not None:
                    wait.close()
                wait = None
                self._stop.wait(1.0)
        if wait is not None:
            wait.close()

    def _read(self) -> None:
        changes: list[Change] = []
        # overlap by a second and deduplicate: commits may land with older timestamps
        since = self._since - timedelta(seconds=1) if self._since is not None else None
        jobs, events = self.store.changes_since(since, self._last_event)
        newest = self._since
        for job in jobs:
            mark = (job.updated_at, job.heartbeat_at, job.status.value)
            if self._seen.get(job.id) == mark:
                continue
            self._seen[job.id] = mark
            changes.append(Change("job", job=job))
            for stamp in (job.updated_at, job.heartbeat_at):
                if stamp is not None and (newest is None or stamp > newest):
                    newest = stamp
        self._since = newest
        for event in events:
            self._last_event = max(self._last_event, event.id)
            changes.append(Change("event", event=event))
            if event.from_status and not event.to_status:
                self._seen.pop(event.job_id, None)
                changes.append(Change("deleted", job_id=event.job_id))
        for line in self.store.logs_since(self._last_log):
            self._last_log = max(self._last_log, line.id)
            changes.append(Change("log", log=line, job_id=line.job_id))
        controls = self.store.queue_controls()
        if controls != self._queue:
            self._queue = controls
            changes.append(Change("queue", queue=controls))
        if len(self._seen) > 50000:
            self._seen.clear()
        if changes:
            self._publish(changes)

    def _publish(self, changes: list[Change]) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            for change in changes:
                try:
                    sub.queue.put_nowait(change)
                except queue.Full:
                    sub.overflowed = True
                    break
