"""The job store against a real SQLite file and a real PostgreSQL database (DESIGN §3 to §7).

Every test runs once per store kind through the ``store`` fixture.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from rhizome.errors import IllegalTransitionError, JobLostError, JobNotFoundError
from rhizome.jobs.model import Control, ErrorType, Job, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore

P, R, Z = JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.PAUSED
C, F, X = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED
W1, W2 = "worker-1", "worker-2"
LEASE = 30.0


def add(store: SqlJobStore, job_type: str = "noop", **kw: Any) -> Job:
    return store.enqueue([NewJob(job_type, **kw)])[0]


def add_spaced(store: SqlJobStore, n: int, **kw: Any) -> list[Job]:
    """``n`` jobs with distinct ``created_at`` (a few ms apart), oldest first."""
    jobs = []
    for _ in range(n):
        jobs.append(add(store, **kw))
        time.sleep(0.005)
    return jobs


def claim_one(store: SqlJobStore, worker: str = W1, lease: float = LEASE) -> Job:
    jobs = store.claim(worker, 1, lease, None)
    assert len(jobs) == 1, jobs
    return jobs[0]


def transitions(store: SqlJobStore, job_id: str) -> list[tuple[str | None, str | None]]:
    """The job's status-changing events, oldest first."""
    return [
        (e.from_status, e.to_status)
        for e in store.events(job_id)
        if e.from_status is not None or e.to_status is not None
    ]


def fail(
    store: SqlJobStore, job_id: str, worker: str = W1, retry_delay: float | None = None
) -> Job:
    return store.fail(
        job_id,
        worker,
        error_type=ErrorType.TRANSIENT if retry_delay is not None else ErrorType.PERMANENT,
        last_error="Traceback: boom",
        error_message="It broke. Retry later.",
        retry_delay=retry_delay,
    )


def now() -> datetime:
    return datetime.now(UTC)


# --- schema --------------------------------------------------------------------------------


def test_migrations_are_applied_once(store: SqlJobStore) -> None:
    assert store.migrate() == []
    store.check()


# --- enqueue, get, list --------------------------------------------------------------------


def test_enqueue_and_get(store: SqlJobStore) -> None:
    job = add(
        store,
        input_data={"path": "a.pdf", "n": [1, 2]},
        user_id="alice",
        priority=5,
        entity_type="document",
        entity_id="doc-1",
        max_retries=7,
    )
    assert uuid.UUID(job.id)
    assert job.status is P
    got = store.get(job.id)
    assert got.id == job.id
    assert got.job_type == "noop"
    assert got.user_id == "alice"
    assert got.priority == 5
    assert got.entity_type == "document"
    assert got.entity_id == "doc-1"
    assert got.input_data == {"path": "a.pdf", "n": [1, 2]}
    assert got.progress == {"percent": 0}
    assert got.max_retries == 7
    assert got.attempt == 0
    assert got.retry_count == 0
    assert got.worker_id is None
    assert got.output_data is None
    assert got.pause_requested is False and got.cancel_requested is False
    assert got.created_at is not None and got.run_at is not None
    assert abs((got.created_at - now()).total_seconds()) < 5
    assert store.get(job.id, user_id="alice").id == job.id
    assert transitions(store, job.id) == [(None, "pending")]
    assert store.events(job.id)[0].message == "created"


def test_enqueue_batch_and_empty(store: SqlJobStore) -> None:
    assert store.enqueue([]) == []
    jobs = store.enqueue([NewJob("noop", input_data={"i": i}) for i in range(50)])
    assert [j.input_data["i"] for j in jobs] == list(range(50))  # same order as given
    assert len({j.id for j in jobs}) == 50
    assert len(store.list_jobs(limit=1000)) == 50
    for j in jobs[:3]:
        assert transitions(store, j.id) == [(None, "pending")]


def test_get_wrong_user_or_bad_id(store: SqlJobStore) -> None:
    job = add(store, user_id="alice")
    with pytest.raises(JobNotFoundError):
        store.get(job.id, user_id="bob")
    with pytest.raises(JobNotFoundError):
        store.get(str(uuid.uuid4()))
    for bad in ("not-a-uuid", "", "1; DROP TABLE background_jobs", job.id + "0"):
        with pytest.raises(JobNotFoundError) as info:
            store.get(bad)
        assert "UUID" in info.value.hint
    # actions are scoped by user too
    for action in (
        lambda: store.request_pause(job.id, user_id="bob"),
        lambda: store.request_cancel(job.id, user_id="bob"),
        lambda: store.resume(job.id, user_id="bob"),
        lambda: store.retry(job.id, user_id="bob"),
        lambda: store.delete(job.id, user_id="bob"),
    ):
        with pytest.raises(JobNotFoundError):
            action()
    assert store.get(job.id).status is P
    assert transitions(store, job.id) == [(None, "pending")]


def test_uppercase_id_is_accepted(store: SqlJobStore) -> None:
    job = add(store)
    assert store.get(job.id.upper()).id == job.id


def test_list_newest_first_with_limit_and_offset(store: SqlJobStore) -> None:
    jobs = add_spaced(store, 5)
    newest_first = [j.id for j in reversed(jobs)]
    assert [j.id for j in store.list_jobs()] == newest_first
    assert [j.id for j in store.list_jobs(limit=2)] == newest_first[:2]
    assert [j.id for j in store.list_jobs(limit=2, offset=2)] == newest_first[2:4]
    assert [j.id for j in store.list_jobs(limit=10, offset=4)] == newest_first[4:]
    assert store.list_jobs(offset=5) == []


def test_list_filters(store: SqlJobStore) -> None:
    a1 = add(store, "type_a", user_id="alice")
    a2 = add(store, "type_a", user_id="bob")
    b1 = add(store, "type_b", user_id="alice")
    c1 = add(store, "type_c", user_id="alice")
    # a1 running in stage "extract", b1 failed, c1 paused
    running = store.claim(W1, 1, LEASE, ["type_a"])[0]
    assert running.id in (a1.id, a2.id)
    store.update_progress(running.id, W1, {"percent": 10, "stage": "extract"})
    store.claim(W1, 1, LEASE, ["type_b"])
    fail(store, b1.id)
    store.request_pause(c1.id)

    def ids(**kw: Any) -> set[str]:
        return {j.id for j in store.list_jobs(**kw)}

    everything = {a1.id, a2.id, b1.id, c1.id}
    assert ids() == everything
    assert ids(statuses=["processing"]) == {running.id}
    assert ids(statuses=["failed", "paused"]) == {b1.id, c1.id}
    assert ids(statuses=[JobStatus.PENDING]) == everything - {running.id, b1.id, c1.id}
    assert ids(statuses=["completed"]) == set()
    assert ids(job_types=["type_a"]) == {a1.id, a2.id}
    assert ids(job_types=["type_b", "type_c"]) == {b1.id, c1.id}
    assert ids(job_types=["nope"]) == set()
    assert ids(stage="extract") == {running.id}
    assert ids(stage="embed") == set()
    assert ids(ids=[a1.id, c1.id]) == {a1.id, c1.id}
    assert ids(ids=[a1.id.upper()]) == {a1.id}
    assert ids(ids=[]) == set()
    assert ids(ids=[str(uuid.uuid4())]) == set()
    assert ids(user_id="alice") == {a1.id, b1.id, c1.id}
    assert ids(user_id="bob") == {a2.id}
    assert ids(user_id="carol") == set()
    assert ids(user_id="alice", job_types=["type_a", "type_b"], statuses=["failed"]) == {b1.id}
    with pytest.raises(ValueError):
        store.list_jobs(statuses=["running"])
    with pytest.raises(JobNotFoundError):
        store.list_jobs(ids=["nope"])


def test_count_jobs(store: SqlJobStore) -> None:
    add(store, "a", user_id="u1")
    add(store, "a", user_id="u1")
    add(store, "b", user_id="u2")
    store.claim(W1, 1, LEASE, ["b"])
    assert store.count_jobs() == {("pending", "a"): 2, ("processing", "b"): 1}
    assert store.count_jobs(user_id="u2") == {("processing", "b"): 1}
    assert store.count_jobs(user_id="nobody") == {}


# --- claim ---------------------------------------------------------------------------------


def test_claim_order_priority_then_oldest(store: SqlJobStore) -> None:
    low_old, high_old, mid, high_new, low_new = (
        add(store, priority=0),
        add_spaced(store, 1, priority=10)[0],
        add_spaced(store, 1, priority=5)[0],
        add_spaced(store, 1, priority=10)[0],
        add_spaced(store, 1, priority=0)[0],
    )
    first = store.claim(W1, 2, LEASE, None)
    assert [j.id for j in first] == [high_old.id, high_new.id]
    assert all(j.status is R and j.worker_id == W1 and j.attempt == 1 for j in first)
    rest = store.claim(W2, 10, LEASE, None)
    assert [j.id for j in rest] == [mid.id, low_old.id, low_new.id]
    assert store.claim(W2, 10, LEASE, None) == []


def test_claim_sets_ownership_and_lease(store: SqlJobStore) -> None:
    job = add(store)
    before = now()
    claimed = claim_one(store, W1, lease=60)
    assert claimed.id == job.id
    got = store.get(job.id)
    assert got.status is R
    assert got.worker_id == W1
    assert got.attempt == 1
    assert got.started_at is not None and got.heartbeat_at is not None
    assert got.lease_expires_at is not None
    remaining = (got.lease_expires_at - before).total_seconds()
    assert 55 < remaining < 65
    assert transitions(store, job.id) == [(None, "pending"), ("pending", "processing")]
    last = store.events(job.id)[-1]
    assert last.worker_id == W1
    assert last.message is not None and "attempt 1" in last.message


def test_claim_limit(store: SqlJobStore) -> None:
    store.enqueue([NewJob("noop") for _ in range(7)])
    assert store.claim(W1, 0, LEASE, None) == []
    assert len(store.claim(W1, 3, LEASE, None)) == 3
    assert len(store.claim(W2, 3, LEASE, None)) == 3
    assert len(store.claim(W2, 3, LEASE, None)) == 1
    owners = [j.worker_id for j in store.list_jobs(statuses=["processing"])]
    assert sorted(owners) == [W1] * 3 + [W2] * 4


def test_claim_job_types_filter(store: SqlJobStore) -> None:
    a = add(store, "obsidian_sync")
    b = add(store, "process_document")
    assert store.claim(W1, 10, LEASE, ["nothing_here"]) == []
    got = store.claim(W1, 10, LEASE, ["obsidian_sync", "obsidian_export"])
    assert [j.id for j in got] == [a.id]
    got = store.claim(W2, 10, LEASE, [])  # empty means every type
    assert [j.id for j in got] == [b.id]


def test_claim_honours_run_at(store: SqlJobStore) -> None:
    later = add(store, run_at=now() + timedelta(hours=1))
    due = add(store, run_at=now() - timedelta(seconds=5))
    soon = add(store, run_at=now() + timedelta(seconds=0.3))
    assert [j.id for j in store.claim(W1, 10, LEASE, None)] == [due.id]
    time.sleep(0.4)
    assert [j.id for j in store.claim(W1, 10, LEASE, None)] == [soon.id]
    assert store.claim(W1, 10, LEASE, None) == []
    assert store.get(later.id).status is P


def test_claim_does_not_take_other_statuses(store: SqlJobStore) -> None:
    paused = add(store)
    store.request_pause(paused.id)
    failed = add(store)
    claim_one(store)
    fail(store, failed.id, retry_delay=3600)
    cancelled = add(store)
    store.request_cancel(cancelled.id)
    running = add(store)
    claim_one(store)
    done = add(store)
    claim_one(store, W2)
    store.complete(W2, [(done.id, {})])
    assert store.claim(W2, 10, LEASE, None) == []
    assert store.get(running.id).worker_id == W1


# --- dedupe --------------------------------------------------------------------------------


def test_dedupe_key_returns_the_unfinished_job(store: SqlJobStore) -> None:
    first = add(store, dedupe_key="doc-1", input_data={"v": 1})
    again = add(store, dedupe_key="doc-1", input_data={"v": 2})
    assert again.id == first.id
    assert again.input_data == {"v": 1}
    other = add(store, dedupe_key="doc-2")
    assert other.id != first.id
    plain = [add(store), add(store)]  # no key: never deduplicated
    assert plain[0].id != plain[1].id
    # within one batch as well
    batch = store.enqueue([NewJob("noop", dedupe_key="doc-3"), NewJob("noop", dedupe_key="doc-3")])
    assert batch[0].id == batch[1].id
    # still deduplicated while processing or paused
    claim_one(store)
    assert add(store, dedupe_key="doc-1").id == first.id
    assert len(store.list_jobs(limit=100)) == 5
    assert transitions(store, first.id)[0] == (None, "pending")
    assert len([e for e in store.events(first.id) if e.message == "created"]) == 1


@pytest.mark.parametrize("finish", ["complete", "cancel", "force_fail"])
def test_dedupe_key_is_free_once_finished(store: SqlJobStore, finish: str) -> None:
    first = add(store, dedupe_key="k")
    if finish == "complete":
        claim_one(store)
        assert store.complete(W1, [(first.id, {"ok": True})]) == [first.id]
    elif finish == "cancel":
        store.request_cancel(first.id)
    else:
        store.force_fail(first.id)
    second = add(store, dedupe_key="k")
    assert second.id != first.id
    assert second.status is P


def test_dedupe_while_an_automatic_retry_is_pending(store: SqlJobStore) -> None:
    """A failed job that will retry by itself is unfinished: enqueueing its key again must
    not create a second job, and the retry must still be promoted."""
    first = add(store, dedupe_key="k")
    claim_one(store)
    fail(store, first.id, retry_delay=0.2)
    again = add(store, dedupe_key="k")
    time.sleep(0.3)
    promoted = store.promote_retries()
    assert first.id in promoted
    assert store.get(first.id).status is P
    pending = store.list_jobs(statuses=["pending", "processing", "paused"])
    assert [j.id for j in pending] == [first.id]
    assert again.id == first.id


def test_manual_retry_refused_while_the_key_is_taken(store: SqlJobStore) -> None:
    first = add(store, dedupe_key="k")
    store.request_cancel(first.id)
    second = add(store, dedupe_key="k")
    assert second.id != first.id
    with pytest.raises(IllegalTransitionError) as info:
        store.retry(first.id)
    assert second.id in info.value.message
    assert store.get(first.id).status is X
    assert store.get(second.id).status is P
    store.request_cancel(second.id)
    assert store.retry(first.id).status is P


# --- complete ------------------------------------------------------------------------------


def test_complete(store: SqlJobStore) -> None:
    a, b = add(store), add(store)
    store.claim(W1, 2, LEASE, None)
    store.update_progress(a.id, W1, {"percent": 50, "stage": "save", "checkpoint": {"x": 1}})
    store.record_checkpoint(
        a.id, W1, path="jobs/a/stage-save.json", stage="save", sha256="ab" * 32,
        progress={"percent": 60, "stage": "save", "checkpoint": {"x": 2}},
    )  # fmt: skip
    assert sorted(store.complete(W1, [(a.id, {"n": 1}), (b.id, {"n": 2})])) == sorted([a.id, b.id])
    got = store.get(a.id)
    assert got.status is C
    assert got.output_data == {"n": 1}
    assert got.completed_at is not None
    assert got.progress == {"percent": 100, "stage": "save"}
    assert got.last_checkpoint_path is None and got.checkpoint_hash is None
    assert got.lease_expires_at is None
    assert transitions(store, a.id)[-1] == ("processing", "completed")
    last = store.events(a.id)[-1]
    assert last.worker_id == W1 and last.stage == "save"
    assert store.complete(W1, []) == []


def test_complete_by_a_non_owner_does_nothing(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store, W1)
    assert store.complete(W2, [(job.id, {"stolen": True})]) == []
    got = store.get(job.id)
    assert got.status is R and got.worker_id == W1 and got.output_data is None
    assert transitions(store, job.id) == [(None, "pending"), ("pending", "processing")]
    # not processing any more: completing again does nothing either
    assert store.complete(W1, [(job.id, {})]) == [job.id]
    assert store.complete(W1, [(job.id, {"twice": True})]) == []
    assert store.get(job.id).output_data == {}
    pending = add(store)
    assert store.complete(W1, [(pending.id, {})]) == []
    assert store.get(pending.id).status is P


def test_owner_only_writes_refuse_other_workers(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store, W1)
    with pytest.raises(JobLostError):
        store.update_progress(job.id, W2, {"percent": 5})
    with pytest.raises(JobLostError):
        store.record_checkpoint(job.id, W2, path="p", stage="s", sha256="0", progress={})
    with pytest.raises(JobLostError):
        fail(store, job.id, worker=W2)
    with pytest.raises(JobLostError):
        store.stop(job.id, W2, "pause", "nope")
    got = store.get(job.id)
    assert got.status is R and got.progress == {"percent": 0}
    assert got.last_checkpoint_path is None
    assert transitions(store, job.id) == [(None, "pending"), ("pending", "processing")]


def test_update_progress_and_checkpoint(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    control = store.update_progress(
        job.id, W1, {"percent": 12.5, "stage": "embed", "details": "chunk 3 of 8"}, event="embed"
    )
    assert control == Control(False, False)
    got = store.get(job.id)
    assert got.progress == {"percent": 12.5, "stage": "embed", "details": "chunk 3 of 8"}
    assert got.stage == "embed"
    info = store.events(job.id)[-1]
    assert (info.from_status, info.to_status, info.message, info.stage) == (
        None,
        None,
        "embed",
        "embed",
    )
    store.record_checkpoint(
        job.id, W1, path="jobs/x/stage-embed.json", stage="embed", sha256="f" * 64,
        progress={"percent": 20, "stage": "embed"},
    )  # fmt: skip
    got = store.get(job.id)
    assert got.last_checkpoint_path == "jobs/x/stage-embed.json"
    assert got.last_checkpoint_stage == "embed"
    assert got.checkpoint_hash == "f" * 64
    assert got.progress == {"percent": 20, "stage": "embed"}


def test_add_event(store: SqlJobStore) -> None:
    job = add(store)
    store.add_event(job.id, "checkpoint hash mismatch; starting fresh", stage="x", worker_id=W1)
    e = store.events(job.id)[-1]
    assert (e.from_status, e.to_status, e.stage, e.worker_id) == (None, None, "x", W1)
    assert e.message == "checkpoint hash mismatch; starting fresh"
    assert e.at is not None


# --- pause, cancel, resume, retry ----------------------------------------------------------


def test_pause_pending_is_immediate(store: SqlJobStore) -> None:
    job = add(store)
    got = store.request_pause(job.id, reason="for later")
    assert got.status is Z
    assert got.paused_at is not None
    assert got.pause_reason == "for later"
    assert got.pause_requested is False
    assert transitions(store, job.id)[-1] == ("pending", "paused")
    assert store.claim(W1, 1, LEASE, None) == []


def test_pause_processing_is_requested(store: SqlJobStore) -> None:
    job = add(store)
    other = add(store)
    store.claim(W1, 2, LEASE, None)
    got = store.request_pause(job.id)
    assert got.status is R
    assert got.pause_requested is True
    assert got.cancel_requested is False
    assert store.get(job.id).status is R
    assert transitions(store, job.id)[-1] == ("pending", "processing")  # no status change
    assert store.events(job.id)[-1].message == "pause requested"
    assert store.heartbeat(W1, LEASE, [job.id, other.id]) == {
        job.id: Control(pause_requested=True, cancel_requested=False),
        other.id: Control(False, False),
    }
    assert store.update_progress(job.id, W1, {"percent": 1}) == Control(True, False)
    # the worker stops at its safe point
    paused = store.stop(job.id, W1, "pause", "paused at a safe point")
    assert paused.status is Z
    assert paused.pause_requested is False
    assert paused.paused_at is not None
    assert paused.lease_expires_at is None
    assert transitions(store, job.id)[-1] == ("processing", "paused")
    assert store.heartbeat(W1, LEASE, [job.id, other.id]) == {other.id: Control(False, False)}


def test_cancel_pending_and_paused_is_immediate(store: SqlJobStore) -> None:
    a, b = add(store), add(store)
    store.request_pause(b.id)
    for job, src in ((a, "pending"), (b, "paused")):
        got = store.request_cancel(job.id)
        assert got.status is X
        assert got.completed_at is not None
        assert transitions(store, job.id)[-1] == (src, "cancelled")


def test_cancel_processing_is_requested(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    got = store.request_cancel(job.id)
    assert got.status is R and got.cancel_requested is True
    assert store.heartbeat(W1, LEASE, [job.id]) == {job.id: Control(False, True)}
    store.request_pause(job.id)  # both flags may be set
    assert store.heartbeat(W1, LEASE, [job.id]) == {job.id: Control(True, True)}
    done = store.stop(job.id, W1, "cancel", "cancelled at a safe point")
    assert done.status is X
    assert done.cancel_requested is False and done.pause_requested is False
    assert transitions(store, job.id)[-1] == ("processing", "cancelled")
    assert store.heartbeat(W1, LEASE, [job.id]) == {}


def test_cancel_a_failed_job_stops_its_automatic_retry(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    fail(store, job.id, retry_delay=0)
    got = store.request_cancel(job.id)
    assert got.status is X and got.next_retry_at is None
    assert store.promote_retries() == []
    assert store.get(job.id).status is X


def test_request_pause_after_the_job_stopped_running(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job left ``processing`` between the read and the write (a race): the plain
    transition applies, not a flag on a job that no longer runs."""
    job = add(store)
    stale = store.get(job.id)
    stale.status = R
    monkeypatch.setattr(store, "get", lambda *a, **kw: stale)
    got = store.request_pause(job.id)
    monkeypatch.undo()
    assert got.status is Z
    assert store.get(job.id).status is Z
    assert store.get(job.id).pause_requested is False
    assert transitions(store, job.id)[-1] == ("pending", "paused")

    other = add(store)
    stale = store.get(other.id)
    stale.status = R
    monkeypatch.setattr(store, "get", lambda *a, **kw: stale)
    got = store.request_cancel(other.id)
    monkeypatch.undo()
    assert store.get(other.id).status is X
    assert store.get(other.id).cancel_requested is False
    assert transitions(store, other.id)[-1] == ("pending", "cancelled")


def test_release(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    got = store.stop(job.id, W1, "release", "worker shutting down")
    assert got.status is P and got.lease_expires_at is None
    assert transitions(store, job.id)[-1] == ("processing", "pending")
    assert store.events(job.id)[-1].message == "worker shutting down"
    again = claim_one(store, W2)
    # a release (shutdown) is no new attempt: the job continues its try
    assert again.id == job.id and again.attempt == 1 and again.claim_reason == "release"


def _paused_with_checkpoint(store: SqlJobStore) -> Job:
    job = add(store)
    claim_one(store)
    store.record_checkpoint(
        job.id, W1, path=f"jobs/{job.id}/stage-a.json", stage="a", sha256="1" * 64,
        progress={"percent": 40, "stage": "a", "checkpoint": {"stage": "a"}},
    )  # fmt: skip
    store.request_pause(job.id)
    return store.stop(job.id, W1, "pause", "paused")


def test_resume_from_checkpoint(store: SqlJobStore) -> None:
    job = _paused_with_checkpoint(store)
    got = store.resume(job.id)
    assert got.status is P
    assert got.resume_count == 1
    assert got.resumed_at is not None
    assert got.pause_requested is False
    assert got.last_checkpoint_path == f"jobs/{job.id}/stage-a.json"
    assert got.checkpoint_hash == "1" * 64
    assert got.progress["checkpoint"] == {"stage": "a"}
    assert transitions(store, job.id)[-1] == ("paused", "pending")
    assert store.events(job.id)[-1].message == "resumed"
    again = claim_one(store, W2)
    # a resume continues the same attempt
    assert again.id == job.id and again.attempt == 1 and again.last_checkpoint_stage == "a"
    assert again.claim_reason == "resume"
    store.request_pause(job.id)
    store.stop(job.id, W2, "pause", "again")
    assert store.resume(job.id).resume_count == 2


def test_resume_restart_clears_the_checkpoint(store: SqlJobStore) -> None:
    job = _paused_with_checkpoint(store)
    got = store.resume(job.id, restart=True)
    assert got.status is P
    assert got.resume_count == 1
    assert got.last_checkpoint_path is None
    assert got.last_checkpoint_stage is None
    assert got.checkpoint_hash is None
    assert "checkpoint" not in got.progress
    assert store.get(job.id).last_checkpoint_path is None
    assert "restarting" in (store.events(job.id)[-1].message or "")


def test_retry_failed_and_cancelled(store: SqlJobStore) -> None:
    a, b = add(store), add(store)
    store.claim(W1, 2, LEASE, None)
    failed = fail(store, a.id)
    assert failed.status is F and failed.error_type is ErrorType.PERMANENT
    assert failed.next_retry_at is None and failed.completed_at is not None
    store.request_cancel(b.id)
    store.stop(b.id, W1, "cancel", "cancelled")
    for job, src in ((a, "failed"), (b, "cancelled")):
        got = store.retry(job.id)
        assert got.status is P
        assert got.retry_count == 0
        assert got.error_type is None and got.error_message is None
        assert got.completed_at is None and got.next_retry_at is None
        assert transitions(store, job.id)[-1] == (src, "pending")
        assert store.events(job.id)[-1].message == "retried by hand"
    assert {j.id for j in store.claim(W2, 5, LEASE, None)} == {a.id, b.id}
    assert store.get(a.id).attempt == 2


def test_retry_resets_the_retry_count_and_can_restart(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    store.record_checkpoint(job.id, W1, path="p", stage="s", sha256="2" * 64, progress={})
    fail(store, job.id, retry_delay=3600)
    assert store.get(job.id).retry_count == 1
    got = store.retry(job.id, restart=True)
    assert got.status is P and got.retry_count == 0 and got.next_retry_at is None
    assert got.last_checkpoint_path is None


# --- illegal transitions -------------------------------------------------------------------


def _job_in(store: SqlJobStore, status: JobStatus) -> Job:
    job = add(store)
    if status is P:
        return job
    if status is Z:
        return store.request_pause(job.id)
    if status is X:
        return store.request_cancel(job.id)
    if status is F:
        return store.force_fail(job.id)
    claimed = store.claim(W1, 1, LEASE, None)
    assert [j.id for j in claimed] == [job.id]
    if status is C:
        store.complete(W1, [(job.id, {})])
    return store.get(job.id)


ILLEGAL = [
    ("resume", P),
    ("resume", R),
    ("resume", C),
    ("resume", F),
    ("resume", X),
    ("retry", P),
    ("retry", R),
    ("retry", Z),
    ("retry", C),
    ("pause", C),
    ("pause", F),
    ("pause", X),
    ("pause", Z),
    ("cancel", C),
    ("cancel", X),
    ("force_fail", C),
    ("force_fail", F),
    ("force_fail", X),
]


@pytest.mark.parametrize(("action", "status"), ILLEGAL, ids=lambda v: str(v))
def test_illegal_transitions_change_nothing(
    store: SqlJobStore, action: str, status: JobStatus
) -> None:
    job = _job_in(store, status)
    assert job.status is status
    before = store.get(job.id)
    events_before = store.events(job.id)
    call = {
        "resume": lambda: store.resume(job.id),
        "retry": lambda: store.retry(job.id),
        "pause": lambda: store.request_pause(job.id),
        "cancel": lambda: store.request_cancel(job.id),
        "force_fail": lambda: store.force_fail(job.id),
    }[action]
    with pytest.raises(IllegalTransitionError) as info:
        call()
    assert status.value in info.value.message
    after = store.get(job.id)
    assert after.to_dict() == before.to_dict()
    assert store.events(job.id) == events_before


def test_illegal_owner_transitions(store: SqlJobStore) -> None:
    job = _job_in(store, Z)  # not processing: the owner check refuses first
    with pytest.raises(JobLostError):
        store.stop(job.id, W1, "release", "x")
    with pytest.raises(JobNotFoundError):
        store.resume(str(uuid.uuid4()))
    with pytest.raises(JobNotFoundError):
        store.force_fail("garbage")


# --- failure, automatic retry, leases ------------------------------------------------------


def test_fail_without_retry(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    got = store.fail(
        job.id,
        W1,
        error_type=ErrorType.INVALID,
        last_error="x" * 30000,
        error_message="Bad file. Fix it and submit it again.",
        retry_delay=None,
    )
    assert got.status is F
    assert got.error_type is ErrorType.INVALID
    assert got.error_message == "Bad file. Fix it and submit it again."
    assert got.last_error is not None and len(got.last_error) == 20000
    assert got.retry_count == 0 and got.next_retry_at is None
    assert got.completed_at is not None and got.lease_expires_at is None
    assert transitions(store, job.id)[-1] == ("processing", "failed")
    e = store.events(job.id)[-1]
    assert e.worker_id == W1 and e.message == "failed (invalid)"
    time.sleep(0.05)
    assert store.promote_retries() == []


def test_fail_with_retry_then_promote(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    got = fail(store, job.id, retry_delay=90)
    assert got.status is F
    assert got.retry_count == 1
    assert got.error_type is ErrorType.TRANSIENT
    assert got.completed_at is None
    assert got.next_retry_at is not None
    wait = (got.next_retry_at - now()).total_seconds()
    assert 80 < wait <= 90
    assert store.promote_retries() == []  # not due yet
    assert store.promote_retries(as_of=now() + timedelta(seconds=60)) == []
    assert store.promote_retries(as_of=now() + timedelta(seconds=91)) == [job.id]
    assert store.promote_retries() == []
    got = store.get(job.id)
    assert got.status is P and got.next_retry_at is None and got.retry_count == 1
    assert transitions(store, job.id)[-2:] == [("processing", "failed"), ("failed", "pending")]
    assert "automatic retry 1 of 3" in (store.events(job.id)[-1].message or "")
    again = claim_one(store, W2)
    assert again.attempt == 2 and again.retry_count == 1
    fail(store, job.id, W2, retry_delay=0)
    assert store.promote_retries() == [job.id]
    assert store.get(job.id).retry_count == 2


def test_expire_leases(store: SqlJobStore) -> None:
    job, healthy = add(store), add(store)
    claim_one(store, W1, lease=0.05)
    claim_one(store, W2, lease=LEASE)
    time.sleep(0.2)
    assert store.heartbeat(W2, LEASE, [job.id, healthy.id]) == {healthy.id: Control()}
    assert store.expire_leases() == [job.id]
    assert store.expire_leases() == []
    got = store.get(job.id)
    assert got.status is P and got.lease_expires_at is None
    assert transitions(store, job.id)[-1] == ("processing", "pending")
    e = store.events(job.id)[-1]
    assert e.message == f"lease expired: worker {W1} stopped heartbeating"
    # the dead worker's writes are refused, its heartbeat finds nothing
    assert store.heartbeat(W1, LEASE, [job.id]) == {}
    with pytest.raises(JobLostError):
        store.update_progress(job.id, W1, {"percent": 9})
    assert store.complete(W1, [(job.id, {})]) == []
    again = claim_one(store, W2)
    assert again.id == job.id and again.attempt == 2 and again.worker_id == W2
    assert store.get(healthy.id).status is R


def test_claim_takes_over_an_expired_lease(store: SqlJobStore) -> None:
    job = add(store)
    first = claim_one(store, W1, lease=0.5)
    assert first.attempt == 1
    assert store.claim(W2, 1, LEASE, None) == []  # lease still valid
    time.sleep(0.6)
    second = claim_one(store, W2)
    assert second.id == job.id
    assert second.attempt == 2
    assert second.worker_id == W2
    assert transitions(store, job.id)[-1] == ("processing", "processing")
    e = store.events(job.id)[-1]
    assert e.worker_id == W2
    assert e.message is not None and "lease" in e.message and "attempt 2" in e.message
    assert store.complete(W1, [(job.id, {})]) == []  # the old owner lost it
    assert store.complete(W2, [(job.id, {"ok": 1})]) == [job.id]


def test_heartbeat_extends_the_lease(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store, W1, lease=0.1)
    first = store.get(job.id)
    assert first.lease_expires_at is not None and first.heartbeat_at is not None
    time.sleep(0.02)
    assert store.heartbeat(W1, 120, [job.id]) == {job.id: Control()}
    second = store.get(job.id)
    assert second.lease_expires_at is not None and second.heartbeat_at is not None
    assert second.lease_expires_at > first.lease_expires_at
    assert second.heartbeat_at > first.heartbeat_at
    assert 110 < (second.lease_expires_at - now()).total_seconds() <= 120
    time.sleep(0.3)  # past the first lease: nothing expires
    assert store.expire_leases() == []
    assert store.claim(W2, 1, LEASE, None) == []
    assert store.heartbeat(W2, 120, [job.id]) == {}


def test_heartbeat_extends_only_the_jobs_it_names(store: SqlJobStore) -> None:
    """A job the worker no longer runs (it could not record its end, say) keeps no live
    lease just because the worker lives on: the reaper takes it back."""
    running, given_up = add(store), add(store)
    store.claim(W1, 2, 0.3, None)
    assert store.heartbeat(W1, 120, [running.id]) == {running.id: Control()}
    time.sleep(0.4)
    assert store.expire_leases() == [given_up.id]
    assert store.get(running.id).status is R
    assert store.get(given_up.id).status is P


def test_a_crash_loop_fails_after_max_takeovers(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store, W1, lease=0.05)
    store.update_progress(job.id, W1, {"stage": "embed", "percent": 40}, event="embed")
    for deaths in (1, 2):  # the reaper hands it on twice ...
        time.sleep(0.1)
        assert store.fail_crash_loops(3) == []
        assert store.expire_leases(3) == [job.id]
        assert store.get(job.id).takeovers == deaths
        claim_one(store, W1, lease=0.05)
    time.sleep(0.1)  # ... a claim takes it over a third time ...
    [taken] = store.claim(W2, 1, 0.05, ["noop"], max_takeovers=3)
    assert taken.id == job.id and taken.takeovers == 3
    healthy = add(store)
    time.sleep(0.1)  # ... and its fourth death ends it
    # a claim no longer takes it over (only the healthy job) ...
    assert [j.id for j in store.claim(W1, 5, LEASE, ["noop"], max_takeovers=3)] == [healthy.id]
    assert store.expire_leases(3) == []
    assert store.fail_crash_loops(3) == [job.id]
    got = store.get(job.id)
    assert got.status is F and got.error_type is ErrorType.PERMANENT
    assert got.next_retry_at is None  # never retried by itself
    assert got.error_message is not None
    assert "4 times" in got.error_message and "'embed'" in got.error_message
    assert "RHIZOME_MAX_TAKEOVERS" in got.error_message
    assert transitions(store, job.id)[-1] == ("processing", "failed")
    assert store.fail_crash_loops(3) == []
    # a person retries it: the count starts again
    again = store.retry(job.id)
    assert again.status is P and again.takeovers == 0


def test_the_fence_refuses_the_writes_of_a_worker_that_lost_its_job(
    store: SqlJobStore,
) -> None:
    job = add(store, "type_a")
    claim_one(store, W1, lease=0.05)
    with store.fence(job.id, W1):
        store.enqueue([NewJob("type_b", {})])  # still W1's: its writes go through
    time.sleep(0.1)
    assert [j.id for j in store.claim(W2, 1, LEASE, ["type_a"])] == [job.id]
    with store.fence(job.id, W1), pytest.raises(JobLostError):
        store.enqueue([NewJob("type_b", {})])  # W1 was cut off: refused
    with store.fence(job.id, W2):
        store.enqueue([NewJob("type_b", {})])  # the new owner's go through
    assert store.count_jobs()[("pending", "type_b")] == 2
    store.enqueue([NewJob("type_b", {})])  # outside a fence nothing is checked
    assert store.count_jobs()[("pending", "type_b")] == 3


def test_a_release_with_a_delay_is_not_due_before_it(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    got = store.stop(job.id, W1, "release", "set aside: the storage failed", delay=60)
    assert got.status is P and got.infra_retries == 1
    assert got.run_at is not None and (got.run_at - now()).total_seconds() > 50
    assert store.claim(W2, 1, LEASE, None) == []
    assert got.retry_count == 0  # not a retry
    other = add(store)  # a plain release stays due at once
    claim_one(store, W1)
    assert store.stop(other.id, W1, "release", "shutting down").infra_retries == 0
    assert [j.id for j in store.claim(W2, 5, LEASE, None)] == [other.id]


# --- delete, force fail --------------------------------------------------------------------


def test_delete_leaves_a_tombstone(store: SqlJobStore) -> None:
    job, keep = add(store), add(store)
    claim_one(store)
    store.update_progress(job.id, W1, {"percent": 3, "stage": "extract"}, event="extract")
    assert len(store.events(job.id)) == 3
    deleted = store.delete(job.id, reason="deleted by user")
    assert deleted.id == job.id
    with pytest.raises(JobNotFoundError):
        store.get(job.id)
    events = store.events(job.id)
    assert len(events) == 1
    tomb = events[0]
    assert (tomb.from_status, tomb.to_status) == ("processing", None)
    assert tomb.message == "deleted by user"
    assert tomb.stage == "extract"
    assert store.get(keep.id).status is P
    assert len(store.events(keep.id)) == 1
    with pytest.raises(JobNotFoundError):
        store.delete(job.id)
    assert len(store.events(job.id)) == 1


def test_force_fail(store: SqlJobStore) -> None:
    a, b, c = add(store), add(store), add(store)
    claim_one(store)  # a
    store.request_pause(c.id)
    for job, src in ((a, "processing"), (b, "pending"), (c, "paused")):
        got = store.force_fail(job.id, "stopped by admin")
        assert got.status is F
        assert got.error_type is ErrorType.PERMANENT
        assert got.last_error == "stopped by admin"
        assert got.error_message is not None and "Retry the job" in got.error_message
        assert got.next_retry_at is None and got.lease_expires_at is None
        assert transitions(store, job.id)[-1] == (src, "failed")
        assert store.events(job.id)[-1].message == "stopped by admin"
    assert store.heartbeat(W1, LEASE, [job.id]) == {}
    with pytest.raises(JobLostError):
        store.update_progress(a.id, W1, {})
    assert store.promote_retries() == []


# --- workers -------------------------------------------------------------------------------


def test_workers(store: SqlJobStore) -> None:
    assert store.list_workers() == []
    store.register_worker(W1, "host-a", 101, 4, None)
    time.sleep(0.01)
    store.register_worker(W2, "host-b", 202, 8, ["obsidian_sync"])
    workers = store.list_workers()
    assert [w.id for w in workers] == [W2, W1]  # newest first
    w2 = workers[0]
    assert (w2.host, w2.pid, w2.concurrency, w2.stopped_at) == ("host-b", 202, 8, None)
    assert w2.started_at is not None and w2.last_seen_at is not None
    seen = w2.last_seen_at
    time.sleep(0.02)
    store.heartbeat(W2, LEASE, [])
    assert next(w for w in store.list_workers() if w.id == W2).last_seen_at > seen
    store.unregister_worker(W1)
    by_id = {w.id: w for w in store.list_workers()}
    assert by_id[W1].stopped_at is not None  # recently stopped workers stay visible
    assert by_id[W2].stopped_at is None
    store.unregister_worker("never-registered")  # harmless


# --- the event log is complete -------------------------------------------------------------


def test_every_status_change_writes_an_event(store: SqlJobStore) -> None:
    job = add(store)
    claim_one(store)
    store.request_pause(job.id)
    store.stop(job.id, W1, "pause", "p")
    store.resume(job.id)
    claim_one(store)
    fail(store, job.id, retry_delay=0)
    store.promote_retries()
    claim_one(store, W2, lease=0.05)
    time.sleep(0.2)
    store.expire_leases()
    claim_one(store)
    store.stop(job.id, W1, "release", "shutdown")
    store.request_cancel(job.id)
    store.retry(job.id)
    claim_one(store)
    store.complete(W1, [(job.id, {})])
    assert transitions(store, job.id) == [
        (None, "pending"),
        ("pending", "processing"),
        ("processing", "paused"),
        ("paused", "pending"),
        ("pending", "processing"),
        ("processing", "failed"),
        ("failed", "pending"),
        ("pending", "processing"),
        ("processing", "pending"),
        ("pending", "processing"),
        ("processing", "pending"),
        ("pending", "cancelled"),
        ("cancelled", "pending"),
        ("pending", "processing"),
        ("processing", "completed"),
    ]
    events = store.events(job.id)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert all(e.job_id == job.id and e.at is not None for e in events)
    # attempts: the first run, the automatic retry, the takeover, the manual retry (the
    # resume and the release continue the attempt they interrupted)
    assert store.get(job.id).attempt == 4


# --- migration 0003: failed jobs awaiting a retry hold their dedupe key --------------------


def raw(db_url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run SQL directly on the test database; returns the last statement's rows."""
    rows: list[tuple[Any, ...]] = []
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            for sql in statements:
                cur = conn.execute(sql)
                rows = cur.fetchall() if cur.description else []
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(db_url, autocommit=True) as pg:
            for sql in statements:
                cur = pg.execute(sql.encode())
                rows = cur.fetchall() if cur.description else []
    return rows


def test_migration_0003_resolves_existing_duplicates(store: SqlJobStore, db_url: str) -> None:
    """A database written before 0003 may hold a failed-awaiting-retry job and another
    unfinished job with the same key; the migration keeps one retry per key."""
    ids = {name: str(uuid.uuid4()) for name in "abcde"}
    old_index = (
        "CREATE UNIQUE INDEX background_jobs_dedupe_idx ON background_jobs (dedupe_key)"
        " WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'processing', 'paused')"
    )

    def row(name: str, key: str, status: str, retry: bool, created: str) -> str:
        next_retry = "'2030-01-01T00:00:00.000Z'" if retry else "NULL"
        return (
            "INSERT INTO background_jobs (id, job_type, dedupe_key, status, next_retry_at,"
            f" created_at) VALUES ('{ids[name]}', 'noop', '{key}', '{status}', {next_retry},"
            f" '2026-01-01T00:00:0{created}.000Z')"
        )

    raw(
        db_url,
        "DROP INDEX background_jobs_dedupe_idx",
        old_index,
        "DELETE FROM schema_migrations WHERE component = 'jobs' AND version = 3",
        row("a", "k", "failed", True, "1"),  # loses its retry: b is unfinished
        row("b", "k", "pending", False, "2"),
        row("c", "m", "failed", True, "1"),  # loses its retry: d is newer
        row("d", "m", "failed", True, "2"),
        row("e", "n", "failed", True, "1"),  # alone: keeps it
    )
    assert store.migrate() == ["jobs/0003_dedupe_retrying"]
    retrying = {j.id for j in store.list_jobs() if j.next_retry_at is not None}
    assert retrying == {ids["d"], ids["e"]}
    assert store.get(ids["a"]).completed_at is not None
    assert add(store, dedupe_key="k").id == ids["b"]
    assert add(store, dedupe_key="m").id == ids["d"]
    assert add(store, dedupe_key="n").id == ids["e"]


def test_a_vanished_peer_cannot_hold_job_rows_past_its_lease(pg_url: str) -> None:
    """A worker cut off by the network in the middle of a transaction would keep its
    rows locked (SKIP LOCKED claims and the reaper pass them by) until TCP gives up, hours
    later. The server ends a session left idle in a transaction for ``dead_peer_seconds``,
    which releases them. (Cut off for real in tests/integration/test_scaleout_netns.py.)"""
    from rhizome.jobs.store.postgres import PostgresJobStore

    store = PostgresJobStore(pg_url, dead_peer_seconds=5)
    try:
        store.migrate()
        kind = f"vanish_{uuid.uuid4().hex[:8]}"  # the database is shared: claim only ours
        [job] = store.enqueue([NewJob(kind, {})])
        with store.transaction() as tx:
            settings = tx.one("ping")  # any statement: the session's settings are set
            assert settings is not None
        with store.pool.connection() as conn:
            row = conn.execute(
                "SELECT current_setting('idle_in_transaction_session_timeout') AS idle,"
                " current_setting('tcp_user_timeout') AS tcp"
            ).fetchone()
            assert row == {"idle": "5s", "tcp": "5000"}
            # a transaction that stops talking holds the job's row ...
            conn.execute("SELECT id FROM background_jobs WHERE id = %s FOR UPDATE", (job.id,))
            assert store.claim(W2, 1, LEASE, [kind]) == []
            time.sleep(6)  # ... until the server ends the session
            assert [j.id for j in store.claim(W2, 1, LEASE, [kind])] == [job.id]
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                conn.execute("SELECT 1")
    finally:
        store.close()
