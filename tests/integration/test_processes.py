"""Real worker processes on both stores: exactly-once claiming, kill -9 recovery, lease
renewal and graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from tests.conftest import cli_env, start_worker
from tests.helpers import noop_digest, wait_for, wait_status

pytestmark = pytest.mark.slow

FAST = {
    "RHIZOME_HEARTBEAT_SECONDS": "0.3",
    "RHIZOME_LEASE_SECONDS": "2",
    "RHIZOME_POLL_SECONDS": "0.1",
    "RHIZOME_SHUTDOWN_GRACE_SECONDS": "10",
}


def _env(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return cli_env(db_url, tmp_path / "storage", **{**FAST, **extra})


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    return int(proc.wait(timeout=timeout))


def test_exactly_once_with_several_worker_processes(
    store: SqlJobStore, db_url: str, tmp_path: Path
) -> None:
    total = 3000
    store.enqueue([NewJob("noop", {}) for _ in range(total)])
    env = _env(db_url, tmp_path)
    procs = [
        start_worker(env, "--burst", "--concurrency", "4", log=tmp_path / f"w{i}.log")
        for i in range(3)
    ]
    for i, proc in enumerate(procs):
        rc = _wait_exit(proc, 240)
        assert rc == 0, (tmp_path / f"w{i}.log").read_text(errors="replace")[-4000:]

    assert store.count_jobs() == {("completed", "noop"): total}
    jobs = store.list_jobs(limit=total)
    assert len(jobs) == total
    assert all(j.attempt == 1 for j in jobs), "a job was claimed more than once"
    workers = Counter(j.worker_id for j in jobs)
    assert len(workers) >= 2, f"work was not shared: {workers}"
    for job in jobs[:: total // 50]:
        changes = [(e.from_status, e.to_status) for e in store.events(job.id) if e.to_status]
        assert changes == [
            (None, "pending"),
            ("pending", "processing"),
            ("processing", "completed"),
        ]


def test_kill_9_job_is_taken_over_and_resumes_from_checkpoint(
    store: SqlJobStore, db_url: str, tmp_path: Path
) -> None:
    stages, units = 4, 3
    [job] = store.enqueue([NewJob("noop", {"stages": stages, "units": units, "sleep_ms": 150})])
    env = _env(db_url, tmp_path)
    victim = start_worker(env, log=tmp_path / "victim.log")
    try:
        wait_for(
            lambda: store.get(job.id).last_checkpoint_stage == "step-2",
            timeout=60,
            what="the job to reach stage 2",
        )
        victim_id = store.get(job.id).worker_id
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
    crashed = store.get(job.id)
    assert crashed.status is JobStatus.PROCESSING  # nobody released it: the worker died
    checkpoint = crashed.last_checkpoint_stage

    rescuer = start_worker(env, log=tmp_path / "rescuer.log")
    try:
        done = wait_status(store, job.id, JobStatus.COMPLETED, timeout=60)
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.wait(timeout=30)
    assert done.attempt == 2
    assert done.worker_id != victim_id
    assert done.output_data is not None
    assert done.output_data["digest"] == noop_digest(stages, units)
    assert done.output_data["resumed_from"] is not None
    assert checkpoint is not None and done.output_data["resumed_from"].startswith("step-")
    # the second run did not redo the first two stages
    assert not any(u.startswith("step-1#") for u in done.output_data["executed"])
    messages = [e.message or "" for e in store.events(job.id)]
    assert any("lease expired" in m for m in messages), messages


def test_lease_renewal_keeps_a_long_job_with_its_worker(
    store: SqlJobStore, db_url: str, tmp_path: Path
) -> None:
    # one unit of 5 s > the 2 s lease: only heartbeats keep the job owned
    [job] = store.enqueue([NewJob("noop", {"stages": 1, "units": 1, "sleep_ms": 5000})])
    env = _env(db_url, tmp_path)
    owner = start_worker(env, log=tmp_path / "owner.log")
    try:
        wait_status(store, job.id, JobStatus.PROCESSING, timeout=30)
        first = store.get(job.id)
        rival = start_worker(env, log=tmp_path / "rival.log")
        try:
            done = wait_status(store, job.id, JobStatus.COMPLETED, timeout=60)
        finally:
            rival.send_signal(signal.SIGTERM)
            rival.wait(timeout=30)
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait(timeout=30)
    assert done.attempt == 1
    assert done.worker_id == first.worker_id
    # heartbeats went on after the first lease would have run out
    assert first.lease_expires_at is not None and done.heartbeat_at is not None
    assert done.heartbeat_at > first.lease_expires_at
    messages = [e.message or "" for e in store.events(job.id)]
    assert not any("lease expired" in m for m in messages)
    assert sum(1 for e in store.events(job.id) if e.to_status == "processing") == 1


def test_sigterm_releases_running_jobs_at_a_safe_point(
    store: SqlJobStore, db_url: str, tmp_path: Path
) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 2, "units": 10, "sleep_ms": 200})])
    env = _env(db_url, tmp_path)
    worker = start_worker(env, log=tmp_path / "worker.log")
    try:
        wait_for(
            lambda: store.get(job.id).last_checkpoint_path is not None,
            timeout=60,
            what="a checkpoint",
        )
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
        assert time.monotonic() - started < 10  # bounded: next safe point is 200 ms away
    finally:
        if worker.poll() is None:
            worker.kill()
    released = store.get(job.id)
    assert released.status is JobStatus.PENDING
    assert released.last_checkpoint_path is not None
    assert any("shutting down" in (e.message or "") for e in store.events(job.id))
    assert all(w.stopped_at is not None for w in store.list_workers())

    finisher = start_worker(env, "--burst", log=tmp_path / "finisher.log")
    assert finisher.wait(timeout=60) == 0
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.output_data and done.output_data["digest"] == noop_digest(2, 10)
    assert done.output_data["resumed_from"] is not None
