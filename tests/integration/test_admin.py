"""Job control and every admin action (DESIGN §9) on both stores."""

from __future__ import annotations

import time

import pytest

from rhizome.errors import IllegalTransitionError, InvalidInputError, JobNotFoundError
from rhizome.jobs.admin import Admin, Selection
from rhizome.jobs.model import ErrorType, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from tests.helpers import Background, make_worker, wait_for, wait_status


@pytest.fixture
def admin(store: SqlJobStore, storage: LocalStorage) -> Admin:
    return Admin(store, storage)


def _statuses(store: SqlJobStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for (status, _), n in store.count_jobs().items():
        out[status] = out.get(status, 0) + n
    return out


def _paused_with_checkpoint(store: SqlJobStore, storage: LocalStorage) -> str:
    [job] = store.enqueue([NewJob("noop", {"stages": 2, "units": 30, "sleep_ms": 20})])
    with Background(make_worker(store, storage)):
        wait_for(lambda: store.get(job.id).last_checkpoint_path is not None, what="checkpoint")
        store.request_pause(job.id)
        wait_status(store, job.id, JobStatus.PAUSED)
    return job.id


# --- cancel in each state -------------------------------------------------------------------


def test_cancel_pending_paused_and_failed_at_once(admin: Admin, store: SqlJobStore) -> None:
    pending, paused, failed = store.enqueue([NewJob("noop", {}) for _ in range(3)])
    admin.pause(paused.id)
    [claimed] = store.claim("w", 1, 30, None)
    assert claimed.id == pending.id  # oldest first
    store.fail(
        claimed.id,
        "w",
        error_type=ErrorType.PERMANENT,
        last_error="x",
        error_message="x",
        retry_delay=None,
    )
    for job_id in (paused.id, pending.id):
        assert admin.cancel(job_id).status is JobStatus.CANCELLED
    fresh = store.enqueue([NewJob("noop", {})])[0]
    assert admin.cancel(fresh.id).status is JobStatus.CANCELLED
    assert failed.id  # the third job stays pending
    assert store.get(failed.id).status is JobStatus.PENDING


def test_cancel_completed_is_refused(
    admin: Admin, store: SqlJobStore, storage: LocalStorage
) -> None:
    [job] = store.enqueue([NewJob("noop", {})])
    make_worker(store, storage, burst=True).run()
    with pytest.raises(IllegalTransitionError):
        admin.cancel(job.id)
    assert store.get(job.id).status is JobStatus.COMPLETED


def test_cancel_and_delete(admin: Admin, store: SqlJobStore, storage: LocalStorage) -> None:
    job_id = _paused_with_checkpoint(store, storage)
    assert storage.list(f"jobs/{job_id}")
    admin.cancel_and_delete(job_id)
    with pytest.raises(JobNotFoundError):
        store.get(job_id)
    assert storage.list(f"jobs/{job_id}") == []
    events = store.events(job_id)
    assert len(events) == 1 and events[0].message == "cancelled and deleted"


def test_manual_retry_of_cancelled_job_resumes_from_checkpoint(
    admin: Admin, store: SqlJobStore, storage: LocalStorage
) -> None:
    job_id = _paused_with_checkpoint(store, storage)
    admin.cancel(job_id)
    retried = admin.retry(job_id)
    assert retried.status is JobStatus.PENDING and retried.last_checkpoint_path
    make_worker(store, storage, burst=True).run()
    done = store.get(job_id)
    assert done.status is JobStatus.COMPLETED
    assert done.output_data and done.output_data["resumed_from"] is not None


# --- bulk -----------------------------------------------------------------------------------


def test_bulk_by_ids_and_by_filter(admin: Admin, store: SqlJobStore) -> None:
    jobs = store.enqueue([NewJob("noop", {}) for _ in range(6)])
    result = admin.bulk("pause", Selection(ids=[j.id for j in jobs[:2]]))
    assert sorted(result.done) == sorted(j.id for j in jobs[:2]) and not result.skipped
    # by filter: only pending ones are selected
    result = admin.bulk("cancel", Selection(statuses=["pending"]))
    assert len(result.done) == 4
    assert _statuses(store) == {"paused": 2, "cancelled": 4}
    # an action that does not apply is skipped with a reason, the rest goes through
    result = admin.bulk("resume", Selection(everything=True))
    assert len(result.done) == 2 and len(result.skipped) == 4
    assert all("Cannot resume" in why for why in result.skipped.values())
    result = admin.bulk("retry", Selection(job_types=["noop"], statuses=["cancelled"]))
    assert len(result.done) == 4
    result = admin.bulk("delete", Selection(everything=True))
    assert len(result.done) == 6 and store.count_jobs() == {}


def test_bulk_needs_a_selection(admin: Admin) -> None:
    with pytest.raises(InvalidInputError):
        admin.bulk("pause", Selection())
    with pytest.raises(InvalidInputError):
        admin.bulk("explode", Selection(everything=True))


def test_bulk_by_stage(admin: Admin, store: SqlJobStore, storage: LocalStorage) -> None:
    job_id = _paused_with_checkpoint(store, storage)
    store.enqueue([NewJob("noop", {})])
    stage = store.get(job_id).stage
    assert stage is not None
    result = admin.bulk("cancel", Selection(stage=stage))
    assert result.done == [job_id]


# --- queue controls -------------------------------------------------------------------------


def test_paused_queue_is_not_claimed(
    admin: Admin, store: SqlJobStore, storage: LocalStorage
) -> None:
    store.enqueue([NewJob("noop", {}) for _ in range(3)])
    admin.pause_queue("noop", reason="maintenance")
    assert admin.queue_state()["noop"]["paused"] is True
    make_worker(store, storage, burst=True).run()
    assert _statuses(store) == {"pending": 3}
    admin.resume_queue("noop")
    admin.pause_queue()  # the whole queue
    make_worker(store, storage, burst=True).run()
    assert _statuses(store) == {"pending": 3}
    admin.resume_queue()
    make_worker(store, storage, burst=True).run()
    assert _statuses(store) == {"completed": 3}


def test_pause_queue_with_running_jobs(
    admin: Admin, store: SqlJobStore, storage: LocalStorage
) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 1, "units": 100, "sleep_ms": 20})])
    with Background(make_worker(store, storage)):
        wait_status(store, job.id, JobStatus.PROCESSING)
        result = admin.pause_queue("noop", pause_running=True)
        assert result.done == [job.id]
        wait_status(store, job.id, JobStatus.PAUSED)
    admin.resume_queue()


# --- admin actions (DESIGN §9) ----------------------------------------------------------------


def test_clear_completed_and_failed(
    admin: Admin, store: SqlJobStore, storage: LocalStorage
) -> None:
    store.enqueue([NewJob("noop", {}) for _ in range(3)])
    store.enqueue([NewJob("noop", {"fail_times": 1, "error": "invalid"}) for _ in range(2)])
    make_worker(store, storage, burst=True).run()
    store.enqueue([NewJob("noop", {})])
    assert admin.clear_completed() == 3
    assert admin.clear_failed() == 2
    assert _statuses(store) == {"pending": 1}


def test_stop_all_force_fails_active_jobs(
    admin: Admin, store: SqlJobStore, storage: LocalStorage
) -> None:
    running, waiting = store.enqueue(
        [NewJob("noop", {"stages": 1, "units": 200, "sleep_ms": 20}), NewJob("noop", {})]
    )
    with Background(make_worker(store, storage, concurrency=1)) as worker:
        wait_status(store, running.id, JobStatus.PROCESSING)
        admin.pause_queue()  # keep the waiting one from starting meanwhile
        assert admin.stop_all() == 2
        # the worker notices it lost the job at its next write and lets it go
        wait_for(lambda: worker.running_job_ids == [], what="worker to drop the job")
    admin.resume_queue()
    for job_id in (running.id, waiting.id):
        job = store.get(job_id)
        assert job.status is JobStatus.FAILED
        assert "administrator" in (job.error_message or "")


def test_force_fail_and_delete_one(admin: Admin, store: SqlJobStore) -> None:
    a, b = store.enqueue([NewJob("noop", {}), NewJob("noop", {})])
    assert admin.force_fail(a.id).status is JobStatus.FAILED
    admin.delete(b.id)
    with pytest.raises(JobNotFoundError):
        store.get(b.id)
    assert [e.message for e in store.events(b.id)] == ["deleted"]


def test_clear_all_and_nuclear_reset(
    admin: Admin, store: SqlJobStore, storage: LocalStorage
) -> None:
    _paused_with_checkpoint(store, storage)
    store.enqueue([NewJob("noop", {}) for _ in range(3)])
    result = admin.clear_all()
    assert result["deleted"] == 4 and store.count_jobs() == {}
    assert storage.list("jobs") == []

    _paused_with_checkpoint(store, storage)
    storage.put("jobs/00000000-0000-0000-0000-000000000001/stage-x.json", b"{}")
    out = admin.nuclear_reset()
    assert out["deleted_jobs"] == 1
    assert storage.list("jobs") == [] and store.count_jobs() == {}


def test_fix_orphans(admin: Admin, store: SqlJobStore, storage: LocalStorage) -> None:
    keep = _paused_with_checkpoint(store, storage)
    orphan = "jobs/11111111-1111-1111-1111-111111111111/stage-step-1.json"
    storage.put(orphan, b"{}")
    [stuck] = store.enqueue([NewJob("noop", {})])
    store.claim("dead-worker", 1, 0.01, None)
    time.sleep(0.05)
    result = admin.fix_orphans()
    assert result["removed_checkpoint_files"] == 1
    assert result["released_jobs"] == 1
    assert not storage.exists(orphan)
    assert storage.list(f"jobs/{keep}")  # a paused job keeps its checkpoint
    assert store.get(stuck.id).status is JobStatus.PENDING


def test_user_scoping(store: SqlJobStore, storage: LocalStorage) -> None:
    [mine] = store.enqueue([NewJob("noop", {}, user_id="alice")])
    [theirs] = store.enqueue([NewJob("noop", {}, user_id="bob")])
    alice = Admin(store, storage, user_id="alice")
    with pytest.raises(JobNotFoundError):
        alice.pause(theirs.id)
    result = alice.bulk("cancel", Selection(everything=True))
    assert result.done == [mine.id]
    assert store.get(theirs.id).status is JobStatus.PENDING
    assert alice.clear_all()["deleted"] == 1
    assert store.get(theirs.id).status is JobStatus.PENDING
