"""Infrastructure failures are not job failures (issue 17), in-process on both stores.

The database "goes away" through a wrapper that makes every store call raise
:class:`DatabaseUnavailableError` while it is down (the same error the stores raise for
a lost PostgreSQL connection or an SQLite lock held past the busy timeout); the storage
fails through a wrapper that refuses writes. Real outages (a PostgreSQL restart, an SQLite
lock held by another process) are in ``test_infra_outages.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from rhizome.errors import DatabaseUnavailableError, StorageError
from rhizome.jobs.model import ErrorType, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from tests.helpers import Background, make_worker, noop_digest, wait_for, wait_status


class FlakyStore:
    """A job store whose every call fails while ``down`` is set."""

    def __init__(self, store: SqlJobStore) -> None:
        self._store = store
        self.down = threading.Event()
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down.is_set():
                self.refused += 1
                raise DatabaseUnavailableError("Lost the connection to the database (test).")
            return attr(*args, **kwargs)

        return call


class FlakyStorage:
    """Local storage whose writes under ``jobs/`` fail ``failures`` times."""

    def __init__(self, storage: LocalStorage, failures: int) -> None:
        self._storage = storage
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("jobs/") and self.failures > 0:
            self.failures -= 1
            raise StorageError(f"Could not write {key}: connection reset by peer (test).")
        self._storage.put(key, data)


def completions(store: SqlJobStore, job_id: str) -> list[str | None]:
    return [e.worker_id for e in store.events(job_id) if e.to_status == "completed"]


def test_an_outage_fails_no_job_and_loses_no_result(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    jobs = store.enqueue(
        [NewJob("noop", {"stages": 1, "units": 4, "sleep_ms": 100}) for _ in range(12)]
    )
    flaky = FlakyStore(store)
    worker = make_worker(flaky, storage, concurrency=4, lease_seconds=30.0)  # type: ignore[arg-type]
    with Background(worker):
        wait_for(lambda: len(worker.running_job_ids) == 4, what="four jobs running")
        flaky.down.set()
        time.sleep(1.5)  # jobs finish, checkpoint, complete meanwhile: nothing reaches the db
        assert flaky.refused > 0
        assert all(store.get(j.id).status is not JobStatus.FAILED for j in jobs)
        flaky.down.clear()
        for job in jobs:
            wait_status(store, job.id, JobStatus.COMPLETED, timeout=60)
    for job in jobs:
        done = store.get(job.id)
        assert done.attempt == 1, "an outage is not an attempt"
        assert done.retry_count == 0 and done.error_type is None
        assert done.output_data is not None and done.output_data["digest"] == noop_digest(1, 4)
        assert completions(store, job.id) == [worker.id]
    assert worker.failed == 0
    assert storage.list("jobs/") == []  # no checkpoint left behind


def test_late_results_are_refused_once_another_worker_took_over(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 1, "units": 3, "sleep_ms": 400})])
    flaky = FlakyStore(store)
    cut_off = make_worker(flaky, storage, lease_seconds=1.0)  # type: ignore[arg-type]
    with Background(cut_off):
        wait_for(lambda: cut_off.running_job_ids == [job.id], what="the job to start")
        flaky.down.set()  # its heartbeats fail: the lease runs out
        with Background(make_worker(store, storage, lease_seconds=30.0)) as other:
            done = wait_status(store, job.id, JobStatus.COMPLETED, timeout=60)
            assert completions(store, job.id) == [other.id]
            wait_for(lambda: not cut_off.running_job_ids, what="the cut-off run to end")
            flaky.down.clear()  # the link is back: its result is refused
            wait_for(lambda: not cut_off._unrecorded, what="the late result to be dropped")
    again = store.get(job.id)
    assert again.status is JobStatus.COMPLETED
    assert again.output_data == done.output_data
    assert completions(store, job.id) == [other.id]  # once, by the new owner
    assert again.takeovers == 1


def test_a_storage_failure_sets_the_job_aside_without_a_retry(
    store: SqlJobStore, storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rhizome.jobs.worker")
    [job] = store.enqueue([NewJob("noop", {"stages": 1, "units": 3})])
    flaky = FlakyStorage(storage, failures=2)
    worker = make_worker(store, flaky, storage_backoff_base=0.2, storage_backoff_cap=1.0)  # type: ignore[arg-type]
    with Background(worker):
        done = wait_status(store, job.id, JobStatus.COMPLETED, timeout=60)
    assert done.retry_count == 0 and done.attempt == 1
    assert done.infra_retries == 2
    messages = [e.message or "" for e in store.events(job.id)]
    aside = [m for m in messages if m.startswith("set aside: the storage failed")]
    assert len(aside) == 2
    assert "not counted as a retry" in aside[0]
    assert not any(m.startswith("failed") for m in messages)
    assert done.output_data is not None and done.output_data["digest"] == noop_digest(1, 3)
    # the log lines carry the job's fields beside the worker's
    [line, *_] = [r for r in caplog.records if r.getMessage().startswith("set aside")]
    assert (line.job_id, line.job_type, line.worker_id) == (job.id, "noop", worker.id)  # type: ignore[attr-defined]
    assert line.stage == "step-1"  # type: ignore[attr-defined]


def test_a_run_past_its_time_limit_fails_at_a_safe_point(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 2, "units": 50, "sleep_ms": 20})])
    worker = make_worker(store, storage, time_limits={"noop": 0.3})
    with Background(worker):
        failed = wait_status(store, job.id, JobStatus.FAILED, timeout=60)
    assert failed.error_type is ErrorType.PERMANENT
    assert failed.next_retry_at is None
    assert failed.error_message is not None
    assert "time limit of 0.3 s for noop jobs" in failed.error_message
    assert "RHIZOME_JOB_TIME_LIMITS" in failed.error_message
    # it stopped after a checkpoint: a retry by hand continues from there
    assert failed.last_checkpoint_path is not None
