"""``/api/events`` while the database is down, on both stores: the stream tells the client
(an ``outage`` message), retries with backoff, sends the snapshot once the database is
back, and logs no unhandled error. The outage is a store that raises (the error a dead
PostgreSQL or a locked or unreadable SQLite file gives)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rhizome.app import App
from rhizome.errors import DatabaseUnavailableError
from rhizome.jobs.registry import registry
from rhizome.jobs.store import SqlJobStore
from rhizome.web import sse
from rhizome.web.sse import Broadcaster, event_stream

pytestmark = pytest.mark.timeout(60)

OUTAGES: list[Callable[[], Exception]] = [
    lambda: DatabaseUnavailableError("Lost the connection to PostgreSQL: server closed."),
    lambda: sqlite3.OperationalError("database is locked"),
]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "OUTAGE_FIRST_RETRY", 0.02)
    monkeypatch.setattr(sse, "OUTAGE_MAX_RETRY", 0.05)


def test_the_stream_reports_the_outage_and_retries(store: SqlJobStore) -> None:
    failures = [f() for f in OUTAGES]

    def snapshot() -> str:
        if failures:
            raise failures.pop(0)
        return json.dumps({"jobs": []})

    async def first(n: int) -> list[dict[str, Any]]:
        async def run_sync(fn: Callable[[], str]) -> str:
            return fn()

        out = []
        stream = event_stream(Broadcaster(store, registry), "local", snapshot, run_sync)
        async for message in stream:
            out.append(message)
            if len(out) == n:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return out

    got: list[list[dict[str, Any]]] = []
    # its own thread: an earlier test may have left an event loop running in this one
    runner = threading.Thread(target=lambda: got.append(asyncio.run(first(3))))
    runner.start()
    runner.join(30)
    [messages] = got
    assert [m["event"] for m in messages] == ["outage", "outage", "snapshot"]
    outage = json.loads(messages[0]["data"])
    assert "not reachable" in outage["message"] and "PostgreSQL" in outage["detail"]
    assert outage["retry_in"] == pytest.approx(0.02)
    assert json.loads(messages[1]["data"])["retry_in"] > outage["retry_in"]  # backing off
    assert [m["id"] for m in messages] == ["1", "2", "3"]


def test_events_over_http_during_an_outage(
    web: tuple[App, FastAPI],
    store: SqlJobStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, fapp = web
    client = TestClient(fapp)
    assert client.get("/api/jobs").status_code == 200  # credentials checked once: cached
    real = store.search_jobs
    failures = [f() for f in OUTAGES] * 2

    def down(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailableError("Lost the connection to PostgreSQL: server closed.")

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "search_jobs", flaky)
    # the guard's own look-ups fail too: it keeps the last answer instead of a 500
    monkeypatch.setattr(fapp.state.web.security.authenticator.users, "count", down)
    caplog.set_level(logging.WARNING)
    events: list[str] = []
    with client.stream("GET", "/api/events") as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
            if "snapshot" in events:
                break
    assert events[:4] == ["outage"] * 4 and events[-1] == "snapshot"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    warnings = [r.getMessage() for r in caplog.records if "live updates" in r.getMessage()]
    assert len(warnings) == 4 and "database is locked" in " ".join(warnings)
    # while the database is down, an API call is a clean 503, not an error in the log
    monkeypatch.setattr(store, "search_jobs", down)
    r = client.get("/api/jobs")
    assert r.status_code == 503 and r.json()["error"]["type"] == "DatabaseUnavailableError"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
