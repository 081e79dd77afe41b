"""The worker in-process, on both stores: running, failing, retrying, pausing, cancelling."""

from __future__ import annotations

import pytest

from rhizome.jobs.model import ErrorType, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from tests.helpers import (
    Background,
    make_worker,
    noop_digest,
    noop_units,
    wait_for,
    wait_status,
)


def test_noop_runs_through_its_stages(store: SqlJobStore, storage: LocalStorage) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 2, "units": 2})])
    make_worker(store, storage, burst=True).run()

    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.output_data is not None
    assert done.output_data["units_total"] == 4
    assert done.output_data["executed"] == noop_units(2, 2)
    assert done.output_data["digest"] == noop_digest(2, 2)
    assert done.progress["percent"] == 100
    assert done.attempt == 1
    # checkpoints are removed once the job completed
    assert done.last_checkpoint_path is None
    assert storage.list("jobs/") == []
    messages = [e.message for e in store.events(job.id)]
    assert "stage step-1 started" in messages
    assert "stage step-2 started" in messages
    assert [e.to_status for e in store.events(job.id) if e.to_status] == [
        "pending",
        "processing",
        "completed",
    ]


def test_many_jobs_complete_once(store: SqlJobStore, storage: LocalStorage) -> None:
    jobs = store.enqueue([NewJob("noop", {}) for _ in range(300)])
    worker = make_worker(store, storage, burst=True, concurrency=8)
    worker.run()
    assert worker.completed == 300
    counts = store.count_jobs()
    assert counts == {("completed", "noop"): 300}
    for job in jobs[:20]:
        assert store.get(job.id).attempt == 1


def test_transient_failure_retries_with_backoff(store: SqlJobStore, storage: LocalStorage) -> None:
    [job] = store.enqueue([NewJob("noop", {"fail_times": 2, "error": "transient"})])
    with Background(make_worker(store, storage)):
        done = wait_status(store, job.id, JobStatus.COMPLETED, timeout=30)
    assert done.retry_count == 2
    assert done.attempt == 3
    assert done.error_type is None or done.error_type is ErrorType.TRANSIENT
    messages = [e.message or "" for e in store.events(job.id)]
    assert any("automatic retry 1 of 3 is due" in m for m in messages)
    assert any("automatic retry 2 of 3 is due" in m for m in messages)
    assert sum(1 for m in messages if m.startswith("failed (transient)")) == 2


def test_transient_failure_gives_up_after_max_retries(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    [job] = store.enqueue([NewJob("noop", {"fail_times": 10}, max_retries=2)])
    with Background(make_worker(store, storage)):
        wait_for(
            lambda: (j := store.get(job.id)).status is JobStatus.FAILED and j.next_retry_at is None,
            what="retries exhausted",
        )
    failed = store.get(job.id)
    assert failed.attempt == 3
    assert failed.retry_count == 2
    assert failed.error_type is ErrorType.TRANSIENT
    # the retries are used up: the message says so instead of promising another one
    assert "retries are used up" in (failed.error_message or "")
    assert "retries automatically" not in (failed.error_message or "")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("invalid", ErrorType.INVALID),
        ("permanent", ErrorType.PERMANENT),
        ("paywall", ErrorType.PAYWALL),
        ("crash", ErrorType.PERMANENT),
    ],
)
def test_non_transient_errors_fail_at_once(
    store: SqlJobStore, storage: LocalStorage, error: str, expected: ErrorType
) -> None:
    [job] = store.enqueue([NewJob("noop", {"fail_times": 1, "error": error})])
    make_worker(store, storage, burst=True).run()
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error_type is expected
    assert failed.next_retry_at is None
    assert failed.attempt == 1
    assert failed.error_message
    assert failed.last_error and "noop failing on purpose" in failed.last_error


def test_unregistered_type_waits_and_bad_stored_input_fails_cleanly(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    ghost, bad, good = store.enqueue(
        [
            NewJob("ghost_type", {}),
            NewJob("noop", {"sleep_ms": "soon"}),
            NewJob("noop", {}),
        ]
    )
    make_worker(store, storage, burst=True).run()
    # a type this worker does not know is left for a worker that does (never claimed)
    g = store.get(ghost.id)
    assert g.status is JobStatus.PENDING
    assert g.attempt == 0
    b = store.get(bad.id)
    assert b.status is JobStatus.FAILED
    assert b.error_type is ErrorType.INVALID
    assert "sleep_ms" in (b.error_message or "")
    assert store.get(good.id).status is JobStatus.COMPLETED


def test_pause_at_safe_point_and_resume_in_another_worker(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    stages, units = 3, 4
    [job] = store.enqueue([NewJob("noop", {"stages": stages, "units": units, "sleep_ms": 40})])
    with Background(make_worker(store, storage)):
        wait_for(lambda: store.get(job.id).last_checkpoint_stage == "step-2", what="step 2")
        store.request_pause(job.id, reason="test pause")
        paused = wait_status(store, job.id, JobStatus.PAUSED)
    assert paused.pause_reason == "test pause"
    assert paused.paused_at is not None
    assert paused.lease_expires_at is None
    assert paused.last_checkpoint_path and storage.exists(paused.last_checkpoint_path)
    assert paused.progress["checkpoint"]["can_resume"] is True

    resumed = store.resume(job.id)
    assert resumed.status is JobStatus.PENDING
    assert resumed.resume_count == 1
    other = make_worker(store, storage, burst=True)
    other.run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.worker_id == other.id
    assert done.output_data is not None
    # identical result to an uninterrupted run, no unit done twice or skipped
    assert done.output_data["digest"] == noop_digest(stages, units)
    executed = done.output_data["executed"]
    everything = noop_units(stages, units)
    assert executed == everything[len(everything) - len(executed) :]
    assert 0 < len(executed) < len(everything)
    assert done.output_data["resumed_from"] is not None


def test_pause_waits_for_a_pause_safe_stage(store: SqlJobStore, storage: LocalStorage) -> None:
    [job] = store.enqueue(
        [NewJob("noop", {"stages": 2, "units": 5, "sleep_ms": 40, "unsafe_stages": [1]})]
    )
    with Background(make_worker(store, storage)):
        wait_for(lambda: store.get(job.id).stage == "step-1", what="stage 1")
        store.request_pause(job.id)
        paused = wait_status(store, job.id, JobStatus.PAUSED)
    # it could not stop inside the unsafe stage 1: it paused in stage 2
    assert paused.last_checkpoint_stage == "step-2"


def test_cancel_running_job(store: SqlJobStore, storage: LocalStorage) -> None:
    [job, after] = store.enqueue(
        [NewJob("noop", {"stages": 1, "units": 50, "sleep_ms": 40}), NewJob("noop", {})]
    )
    with Background(make_worker(store, storage, concurrency=1)):
        wait_for(lambda: store.get(job.id).last_checkpoint_path is not None, what="checkpoint")
        store.request_cancel(job.id)
        cancelled = wait_status(store, job.id, JobStatus.CANCELLED)
        wait_status(store, after.id, JobStatus.COMPLETED)
    assert cancelled.completed_at is not None
    assert any(e.to_status == "cancelled" for e in store.events(job.id))


def test_stop_releases_running_job(store: SqlJobStore, storage: LocalStorage) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 2, "units": 20, "sleep_ms": 30})])
    with Background(make_worker(store, storage)):
        wait_for(lambda: store.get(job.id).last_checkpoint_path is not None, what="checkpoint")
    released = store.get(job.id)
    assert released.status is JobStatus.PENDING
    assert released.last_checkpoint_path is not None
    assert any("released" in (e.message or "") for e in store.events(job.id))
    make_worker(store, storage, burst=True).run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.output_data and done.output_data["digest"] == noop_digest(2, 20)


def test_heartbeat_does_not_drop_a_job_claimed_during_the_beat(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    """Regression: a job claimed and registered while the heartbeat statement runs must
    not be marked lost (its claim was not visible to that statement)."""
    from rhizome.jobs.context import JobContext

    worker = make_worker(store, storage)
    store.register_worker(worker.id, "h", 1, 1, None)
    [job] = store.enqueue([NewJob("noop", {})])
    real_heartbeat = store.heartbeat
    contexts: list[JobContext] = []

    def heartbeat_then_claim(worker_id: str, lease: float, ids: list[str]):  # type: ignore[no-untyped-def]
        controls = real_heartbeat(worker_id, lease, ids)
        [claimed] = store.claim(worker.id, 1, 30, None)  # lands after the statement
        ctx = JobContext(claimed, (), store, storage, worker.id)
        worker._running[claimed.id] = ctx
        contexts.append(ctx)
        return controls

    store.heartbeat = heartbeat_then_claim  # type: ignore[method-assign]
    try:
        worker.beat()
    finally:
        store.heartbeat = real_heartbeat  # type: ignore[method-assign]
    assert contexts and not contexts[0].lost
    worker.beat()  # the next beat sees it and keeps it
    assert not contexts[0].lost
    assert store.get(job.id).worker_id == worker.id
