"""/api/events against a real server process, on both stores: a snapshot on connect, then
every change another process commits (status, progress, checkpoint, timeline, deletion),
scoped to the user; reconnects resume from a fresh snapshot; SIGTERM ends the streams."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rhizome.jobs.store import SqlJobStore
from tests.web import helpers as h
from tests.web.conftest import LiveServer, start_server
from tests.web.sse_client import Message, SSEClient


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[LiveServer]:
    s = start_server(tmp_path, db_url, "--no-worker", env={"RHIZOME_TRUSTED_PROXY": "1"})
    try:
        yield s
    finally:
        s.stop()
        print("--- server log ---\n" + s.output()[-4000:])  # shown when a test fails


def job_msg(job_id: str, **want: object) -> object:
    def check(m: Message) -> bool:
        return (
            m.event == "job"
            and m.data["id"] == job_id
            and all(m.data.get(k) == v for k, v in want.items())
        )

    return check


def test_snapshot_then_changes_from_another_process(server: LiveServer, store: SqlJobStore) -> None:
    waiting = h.new(store, "reprocess_connections", input_data={"title": "Waiting"})
    done = h.finished(store)
    with SSEClient(server.url + "/api/events") as sse:
        first = sse.next()
        assert first is not None and first.event == "snapshot"
        snap_ids = [j["id"] for j in first.data["jobs"]]
        assert waiting.id in snap_ids and done.id not in snap_ids  # unfinished only
        assert first.data["server_time"]

        [job] = store.claim(h.WORKER, 1, 60, None)
        assert job.id == waiting.id
        m = sse.wait_for(job_msg(job.id, status="processing"))
        assert m.data["title"] == "Waiting" and m.data["type_label"] == "Connections"

        sent = time.time()
        store.update_progress(
            job.id, h.WORKER, {"percent": 42, "stage": "apply", "details": "Book 2 of 5"}
        )
        m = sse.wait_for(job_msg(job.id, percent=42))
        assert m.data["details"] == "Book 2 of 5" and m.data["stage"] == "apply"
        assert m.received - sent < 5  # bench/web measures it; here: it is live, not polled

        store.record_checkpoint(
            job.id,
            h.WORKER,
            path=f"jobs/{job.id}/stage-apply.json",
            stage="apply",
            sha256="ab" * 32,
            progress={"percent": 50, "stage": "apply", "checkpoint": {"stage": "apply"}},
        )
        m = sse.wait_for(lambda m: m.event == "job" and bool(m.data.get("checkpoint")))
        assert m.data["checkpoint"]["resumable"] and m.data["checkpoint"]["sha256"] == "ab" * 32

        store.request_pause(job.id)
        m = sse.wait_for(job_msg(job.id, status_label="pausing"))
        sse.wait_for(lambda m: m.event == "event" and m.data["message"] == "pause requested")
        store.stop(job.id, h.WORKER, "pause", "paused at a safe point")
        sse.wait_for(job_msg(job.id, status="paused"))
        ev = sse.wait_for(lambda m: m.event == "event" and m.data["to_status"] == "paused")
        assert ev.data["job_id"] == job.id

        store.delete(job.id)
        m = sse.wait_for(lambda m: m.event == "deleted")
        assert m.data == {"job_id": job.id}


def test_users_only_see_their_own_changes(server: LiveServer, store: SqlJobStore) -> None:
    with (
        SSEClient(server.url + "/api/events", {"X-Rhizome-User": "alice"}) as alice,
        SSEClient(server.url + "/api/events", {"X-Rhizome-User": "bob"}) as bob,
    ):
        assert alice.next().event == "snapshot"  # type: ignore[union-attr]
        assert bob.next().event == "snapshot"  # type: ignore[union-attr]
        job = h.new(store, user="alice")
        alice.wait_for(job_msg(job.id))
        store.request_cancel(job.id)
        alice.wait_for(job_msg(job.id, status="cancelled"))
        store.delete(job.id)
        alice.wait_for(lambda m: m.event == "deleted")
        leaked = [m for m in bob.drain(1.0) if job.id in str(m.data)]
        assert leaked == []
    with SSEClient(server.url + "/api/events", {"X-Rhizome-User": "bad user"}) as bad:
        assert bad.status == 422


def test_reconnect_resumes_from_a_snapshot(server: LiveServer, store: SqlJobStore) -> None:
    job = h.running(store, percent=10)
    with SSEClient(server.url + "/api/events") as sse:
        snap = sse.next()
        assert snap is not None and snap.event == "snapshot"
        [seen] = [j for j in snap.data["jobs"] if j["id"] == job.id]
        assert seen["percent"] == 10
    store.update_progress(job.id, h.WORKER, {"percent": 77, "details": "while away"})
    paused = h.paused(store)
    with SSEClient(server.url + "/api/events") as sse:
        snap = sse.next()
        assert snap is not None and snap.event == "snapshot"
        jobs = {j["id"]: j for j in snap.data["jobs"]}
        assert jobs[job.id]["percent"] == 77 and jobs[job.id]["details"] == "while away"
        assert jobs[paused.id]["status"] == "paused"


def test_sigterm_closes_streams_and_stops_the_server(tmp_path: Path, db_url: str) -> None:
    server = start_server(tmp_path, db_url)  # with its embedded worker
    sse = SSEClient(server.url + "/api/events")
    try:
        assert sse.next() is not None
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0, server.output()
        assert time.monotonic() - started < 10
        sse.drain(5)
        assert sse.messages.empty() or sse.next(0) is None
        output = server.output()
        assert "worker stopped" in output
        assert "without completing response" not in output
    finally:
        sse.close()
        server.stop()
