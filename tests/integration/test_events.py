"""The change feed: job changes, timeline events and deletions reach subscribers."""

from __future__ import annotations

import time

from rhizome.jobs.events import Change, ChangeFeed
from rhizome.jobs.model import NewJob
from rhizome.jobs.store import SqlJobStore, open_store


def _collect(sub, until, timeout: float = 5.0) -> list[Change]:  # type: ignore[no-untyped-def]
    got: list[Change] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        change = sub.get(timeout=0.1)
        if change is not None:
            got.append(change)
            if until(got):
                return got
    raise AssertionError(f"feed did not deliver in {timeout}s: {[c.kind for c in got]}")


def test_feed_delivers_changes_from_another_connection(store: SqlJobStore, db_url: str) -> None:
    feed = ChangeFeed(store)
    feed.start()
    sub = feed.subscribe()
    other = open_store(db_url)  # another connection/process writes
    try:
        [job] = other.enqueue([NewJob("noop", {})])
        got = _collect(
            sub,
            lambda g: (
                any(c.kind == "job" and c.job and c.job.id == job.id for c in g)
                and any(c.kind == "event" and c.event and c.event.to_status == "pending" for c in g)
            ),
        )
        assert got

        [claimed] = other.claim("w1", 1, 30, None)
        other.update_progress(claimed.id, "w1", {"percent": 42, "stage": "x"})
        _collect(
            sub,
            lambda g: any(
                c.kind == "job" and c.job and c.job.progress.get("percent") == 42 for c in g
            ),
        )
        other.heartbeat("w1", 30, [claimed.id])
        other.delete(job.id)
        got = _collect(sub, lambda g: any(c.kind == "deleted" and c.job_id == job.id for c in g))
        assert got
    finally:
        sub.close()
        feed.stop()
        other.close()
