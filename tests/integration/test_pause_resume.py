"""Pause at every safe point, resume in a different worker process, same result; broken
checkpoints start fresh; retry backoff with an injected clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rhizome.jobs.admin import Admin
from rhizome.jobs.model import ErrorType, JobStatus, NewJob
from rhizome.jobs.retry import RetryPolicy
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from tests.conftest import cli_env, run_cli
from tests.helpers import PauseAfterPuts, make_worker, noop_digest, noop_units

STAGES, UNITS = 3, 2
SAFE_POINTS = STAGES * (UNITS + 1)
"""A checkpoint after each unit (the stage's cursor) and one when each stage is done."""


def units_done_at(k: int) -> tuple[int, int]:
    """(stage, units of the whole job done) at the k-th safe point."""
    stage, position = divmod(k - 1, UNITS + 1)
    return stage + 1, stage * UNITS + min(position + 1, UNITS)


@pytest.mark.parametrize("k", range(1, SAFE_POINTS + 1))
def test_pause_at_each_safe_point_and_resume_in_another_process(
    store: SqlJobStore, db_url: str, tmp_path: Path, k: int
) -> None:
    root = tmp_path / "storage"
    [job] = store.enqueue([NewJob("noop", {"stages": STAGES, "units": UNITS})])
    make_worker(store, PauseAfterPuts(LocalStorage(root), store, k), burst=True).run()

    paused = store.get(job.id)
    assert paused.status is JobStatus.PAUSED
    stage_of_k, done_units = units_done_at(k)
    assert paused.last_checkpoint_stage == f"step-{stage_of_k}"
    assert paused.pause_reason == f"pause at safe point {k}"

    Admin(store, LocalStorage(root)).resume(job.id)
    result = run_cli(["worker", "--burst"], cli_env(db_url, root))
    assert result.returncode == 0, result.stderr

    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.worker_id != paused.worker_id
    assert done.resume_count == 1
    assert done.output_data is not None
    assert done.output_data["digest"] == noop_digest(STAGES, UNITS)
    assert done.output_data["executed"] == noop_units(STAGES, UNITS)[done_units:]
    messages = [e.message or "" for e in store.events(job.id)]
    assert sum(m.startswith("resumed from checkpoint") for m in messages) == 1
    assert LocalStorage(root).list("jobs/") == []  # checkpoints removed on completion


def test_restart_from_the_beginning(store: SqlJobStore, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    [job] = store.enqueue([NewJob("noop", {"stages": STAGES, "units": UNITS})])
    make_worker(store, PauseAfterPuts(LocalStorage(root), store, 3), burst=True).run()
    paused = store.get(job.id)
    assert paused.last_checkpoint_path and LocalStorage(root).exists(paused.last_checkpoint_path)

    resumed = Admin(store, LocalStorage(root)).resume(job.id, restart=True)
    assert resumed.last_checkpoint_path is None
    assert LocalStorage(root).list("jobs/") == []
    make_worker(store, LocalStorage(root), burst=True).run()
    done = store.get(job.id)
    assert done.output_data is not None
    assert done.output_data["executed"] == noop_units(STAGES, UNITS)  # everything again
    assert done.output_data["resumed_from"] is None


@pytest.mark.parametrize("damage", ["mismatch", "truncated", "missing"])
def test_broken_checkpoint_starts_fresh(store: SqlJobStore, tmp_path: Path, damage: str) -> None:
    root = tmp_path / "storage"
    storage = LocalStorage(root)
    [job] = store.enqueue([NewJob("noop", {"stages": STAGES, "units": UNITS})])
    make_worker(store, PauseAfterPuts(LocalStorage(root), store, 4), burst=True).run()
    path = store.get(job.id).last_checkpoint_path
    assert path is not None
    original = storage.get(path)
    if damage == "mismatch":
        storage.put(path, original.replace(b'"unit":', b'"unit" :'))
    elif damage == "truncated":
        storage.put(path, original[: len(original) // 2])
    else:
        storage.delete(path)

    Admin(store, storage).resume(job.id)
    make_worker(store, storage, burst=True).run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.output_data is not None
    assert done.output_data["resumed_from"] is None
    assert done.output_data["executed"] == noop_units(STAGES, UNITS)
    assert done.output_data["digest"] == noop_digest(STAGES, UNITS)
    messages = " | ".join(e.message or "" for e in store.events(job.id))
    expected = "missing" if damage == "missing" else "hash does not match"
    assert expected in messages and "starting fresh" in messages


def test_transient_backoff_with_an_injected_clock(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    """Default policy (1 min doubling): each failure schedules the next retry further out;
    moving the clock (promote_retries(as_of=...)) instead of sleeping makes it due."""
    policy = RetryPolicy(base_seconds=60, factor=2, cap_seconds=1800, jitter=0.0)
    [job] = store.enqueue([NewJob("noop", {"fail_times": 3})])
    worker = make_worker(store, storage, burst=True, retry=policy)
    expected = [60, 120, 240]
    for n, delay in enumerate(expected, start=1):
        worker.run()
        failed = store.get(job.id)
        assert failed.status is JobStatus.FAILED
        assert failed.error_type is ErrorType.TRANSIENT
        assert failed.retry_count == n
        assert failed.next_retry_at is not None and failed.updated_at is not None
        waited = (failed.next_retry_at - failed.updated_at).total_seconds()
        assert waited == pytest.approx(delay, abs=1.0)
        # not due a second early; due just after
        assert store.promote_retries(as_of=failed.next_retry_at - timedelta(seconds=1)) == []
        assert store.promote_retries(as_of=failed.next_retry_at + timedelta(seconds=1)) == [job.id]
        assert store.get(job.id).status is JobStatus.PENDING
        worker = make_worker(store, storage, burst=True, retry=policy)
    worker.run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.attempt == 4 and done.retry_count == 3


def test_transient_failure_mid_job_retries_from_the_checkpoint(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    [job] = store.enqueue(
        [NewJob("noop", {"stages": 2, "units": 3, "fail_times": 1, "fail_after_units": 4})]
    )
    # a retry an hour away: only the test's clock (as_of) makes it due, never the
    # worker's own reaper while it winds down on a slow machine
    worker = make_worker(store, storage, burst=True, retry=RetryPolicy(base_seconds=3600))
    worker.run()
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.next_retry_at is not None
    assert failed.last_checkpoint_stage == "step-2"
    assert store.promote_retries(as_of=failed.next_retry_at) == [job.id]
    make_worker(store, storage, burst=True).run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.output_data is not None
    assert done.output_data["executed"] == noop_units(2, 3)[4:]
    assert done.output_data["digest"] == noop_digest(2, 3)
