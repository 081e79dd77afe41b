"""Chaos: worker processes killed with SIGKILL at random moments during a drain of jobs
that checkpoint. Every job completes exactly once, none is left stuck, and no checkpoint
is ever torn: a resumed job never finds a file whose hash does not match its row (each
checkpoint is written under a new key and recorded before the old one is removed)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rhizome.jobs.model import NewJob
from rhizome.jobs.store import SqlJobStore
from tests.conftest import cli_env, start_worker
from tests.helpers import noop_digest, stop_processes

pytestmark = pytest.mark.slow

JOBS, STAGES, UNITS = 2000, 2, 2
KILLS = 12


def test_random_sigkill_during_a_drain(store: SqlJobStore, db_url: str, tmp_path: Path) -> None:
    store.enqueue(
        [NewJob("noop", {"stages": STAGES, "units": UNITS, "sleep_ms": 2}) for _ in range(JOBS)]
    )
    env = cli_env(
        db_url,
        tmp_path / "storage",
        RHIZOME_HEARTBEAT_SECONDS="0.3",
        RHIZOME_LEASE_SECONDS="1",
        RHIZOME_POLL_SECONDS="0.1",
        RHIZOME_LOG_LEVEL="WARNING",
    )
    rnd = random.Random(7)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(i: int) -> subprocess.Popen[bytes]:
        return start_worker(env, "--concurrency", "4", log=tmp_path / f"w{i}.log")

    procs = [spawn(i) for i in range(3)]
    kills = 0
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline:
            done = store.count_jobs().get(("completed", "noop"), 0)
            if done == JOBS:
                break
            if kills < KILLS and done > kills * JOBS // (KILLS + 2):
                victim = rnd.randrange(len(procs))
                time.sleep(rnd.uniform(0, 0.3))  # a random moment inside its work
                os.kill(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait(timeout=10)
                procs[victim] = spawn(len(procs) + kills)
                kills += 1
            time.sleep(0.1)
    finally:
        stop_processes(procs)
    assert kills == KILLS
    counts = store.count_jobs()
    assert counts == {("completed", "noop"): JOBS}, counts  # 0 lost, 0 stuck, 0 failed
    jobs = store.list_jobs(limit=JOBS)
    digest = noop_digest(STAGES, UNITS)
    torn = 0
    taken_over = 0
    for job in jobs:
        assert job.output_data is not None and job.output_data["digest"] == digest, job.id
        events = store.events(job.id)
        completions = [e for e in events if e.to_status == "completed"]
        assert len(completions) == 1, job.id  # exactly once
        messages = [e.message or "" for e in events]
        torn += sum("hash does not match" in m or "is missing" in m for m in messages)
        taken_over += any("lease expired" in m for m in messages)
    assert taken_over >= 1, "no job was taken over: the kills hit nothing"
    assert torn == 0, f"{torn} checkpoint(s) did not verify after a kill"
