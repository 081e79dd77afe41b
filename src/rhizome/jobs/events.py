"""Change feed for live UIs: every change to a job (status, progress, checkpoint,
heartbeat) and every timeline event, pushed to subscribers within milliseconds.

One :class:`ChangeFeed` thread per process watches the database — ``LISTEN
rhizome_changes`` on PostgreSQL (a statement trigger notifies), ``PRAGMA data_version`` on
SQLite (it changes whenever another connection commits) — and, when something changed,
reads the rows changed since its cursor and hands them to every subscriber's queue.
Works across processes and machines; no periodic polling of tables.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rhizome.errors import RhizomeError
from rhizome.jobs.model import Job, JobEvent, parse_time
from rhizome.jobs.store.base import SqlJobStore

log = logging.getLogger("rhizome.jobs.events")

CHANNEL = "rhizome_changes"


@dataclass(frozen=True)
class Change:
    kind: str  # "job" | "event" | "deleted"
    job: Job | None = None
    event: JobEvent | None = None
    job_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.job is not None:
            out["job"] = self.job.to_dict()
        if self.event is not None:
            out["event"] = self.event.to_dict()
        if self.job_id is not None:
            out["job_id"] = self.job_id
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


def _waiter(store: SqlJobStore) -> Callable[[float], bool]:
    """A function that blocks until the database changed (True) or the timeout (False)."""
    if store.dialect == "postgres":
        import psycopg

        conn = psycopg.connect(store.url, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")

        def wait_pg(timeout: float) -> bool:
            return any(True for _ in conn.notifies(timeout=timeout, stop_after=1))

        return wait_pg

    path = getattr(store, "path", None)
    watcher = sqlite3.connect(str(path), check_same_thread=False)
    version = [watcher.execute("PRAGMA data_version").fetchone()[0]]

    def wait_sqlite(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            now = watcher.execute("PRAGMA data_version").fetchone()[0]
            if now != version[0]:
                version[0] = now
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    return wait_sqlite


class ChangeFeed:
    """Start once per process (``start()``); ``subscribe()`` per listener."""

    def __init__(self, store: SqlJobStore) -> None:
        self.store = store
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_event = 0
        self._since: Any = None
        self._seen: dict[str, tuple[Any, Any, str]] = {}
        self.poke = threading.Event()
        """Set by in-process writers to skip the wait (optional)."""

    def start(self) -> None:
        if self._thread is not None:
            return
        with self.store.session(self._queries()) as s:
            row = s.one("last_event_id")
        assert row is not None
        self._last_event = int(row["id"])
        self._since = row["now"]
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

    def _queries(self) -> dict[str, str]:
        return self.store.queries

    def _run(self) -> None:
        wait: Callable[[float], bool] | None = None
        while not self._stop.is_set():
            try:
                if wait is None:
                    wait = _waiter(self.store)
                wait(0.5)
                self._read()
            except (RhizomeError, OSError, sqlite3.Error) as exc:
                log.warning("change feed: %s", exc)
                wait = None
                self._stop.wait(1.0)
            except Exception as exc:  # a bad moment of the database must not kill the feed
                log.warning("change feed error: %s", exc)
                wait = None
                self._stop.wait(1.0)

    def _read(self) -> None:
        changes: list[Change] = []
        with self.store.session(self._queries()) as s:
            # overlap by a second and deduplicate: commits may land with older timestamps
            since = self._since
            if since is not None:
                since_time = parse_time(since)
                assert since_time is not None
                since = since_time - timedelta(seconds=1)
            rows = s.all("changed_jobs", {"since": _param(self.store, since)})
            events = s.all("events_after", {"after": self._last_event})
        newest = self._since
        for row in rows:
            job = Job.from_row(row)
            mark = (job.updated_at, job.heartbeat_at, job.status.value)
            if self._seen.get(job.id) == mark:
                continue
            self._seen[job.id] = mark
            changes.append(Change("job", job=job))
            for stamp in (row.get("updated_at"), row.get("heartbeat_at")):
                if stamp is not None and (newest is None or parse_time(stamp) > parse_time(newest)):  # type: ignore[operator]
                    newest = stamp
        self._since = newest
        for row in events:
            event = JobEvent.from_row(row)
            self._last_event = max(self._last_event, event.id)
            changes.append(Change("event", event=event))
            if event.from_status and not event.to_status:
                self._seen.pop(event.job_id, None)
                changes.append(Change("deleted", job_id=event.job_id))
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


def _param(store: SqlJobStore, value: Any) -> Any:
    if value is None:
        return "1970-01-01T00:00:00.000Z" if store.dialect == "sqlite" else None
    if store.dialect == "sqlite":
        from rhizome.jobs.store.sqlite import format_time

        parsed = parse_time(value)
        assert parsed is not None
        return format_time(parsed)
    return parse_time(value)
