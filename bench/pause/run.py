"""Pause latency and redone work, on PostgreSQL and SQLite, with a real worker process.

A `noop` job with one stage of 400 units of 100 ms (a safe point every 100 ms) runs in a
worker process. At a random moment we request a pause and measure request → `paused`
from the job's own timeline (both are database timestamps). Then we resume it in a *new*
worker process and count the units executed twice (redone work). Finally the same job is
interrupted by kill -9 instead, to show what a crash costs.

    .venv/bin/python bench/pause/run.py [--trials 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.store import open_store

ADMIN = os.environ.get("RHIZOME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
UNITS, SLEEP_MS = 400, 100


def worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rhizome.cli", "worker", "--concurrency", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait(pred, timeout: float = 60.0, every: float = 0.005):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError


def read_unit(storage: Path, key: str | None) -> int:
    assert key is not None
    return int(json.loads((storage / key).read_text())["data"]["unit"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_store(url: str, storage: Path, trials: int) -> dict[str, object]:
    store = open_store(url)
    env = dict(
        os.environ,
        RHIZOME_DATABASE_URL=url,
        RHIZOME_STORAGE_URL=str(storage),
        RHIZOME_LOG_LEVEL="WARNING",
    )
    latencies: list[float] = []
    redone: list[int] = []
    proc = worker(env)
    try:
        for _ in range(trials):
            [job] = store.enqueue(
                [NewJob("noop", {"stages": 1, "units": UNITS, "sleep_ms": SLEEP_MS})]
            )
            wait(lambda j=job: store.get(j.id).last_checkpoint_path)
            time.sleep(random.uniform(0, SLEEP_MS / 1000))
            store.request_pause(job.id)
            wait(lambda j=job: store.get(j.id).status is JobStatus.PAUSED)
            events = store.events(job.id)
            asked = next(e.at for e in events if e.message == "pause requested")
            paused = next(e.at for e in events if e.to_status == "paused")
            assert asked and paused
            latencies.append((paused - asked).total_seconds() * 1000)
            # resume in another worker process; count units executed twice: the first new
            # checkpoint must hold exactly one unit more than the one we paused at
            paused_job = store.get(job.id)
            done_before = read_unit(storage, paused_job.last_checkpoint_path)
            store.resume(job.id)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            proc = worker(env)
            wait(
                lambda j=job, h=paused_job.checkpoint_hash: (
                    store.get(j.id).checkpoint_hash not in (None, h)
                )
            )
            after = read_unit(storage, store.get(job.id).last_checkpoint_path)
            redone.append(done_before + 1 - after)
            store.request_cancel(job.id)
            wait(lambda j=job: store.get(j.id).status is JobStatus.CANCELLED)
        # crash: kill -9 between safe points, take-over from the last checkpoint
        crash_lost: list[float] = []
        for _ in range(max(3, trials // 10)):
            [job] = store.enqueue(
                [NewJob("noop", {"stages": 1, "units": UNITS, "sleep_ms": SLEEP_MS})]
            )
            wait(lambda j=job: store.get(j.id).last_checkpoint_path)
            time.sleep(0.3 + random.uniform(0, SLEEP_MS / 1000))
            cp = json.loads((storage / store.get(job.id).last_checkpoint_path).read_text())
            killed_at = datetime.now(UTC)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            crash_lost.append(
                (killed_at - datetime.fromisoformat(cp["saved_at"])).total_seconds() * 1000
            )
            store.force_fail(job.id, "benchmark: done with this job")
            proc = worker(env)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        store.close()
    return {
        "trials": trials,
        "pause_latency_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(pct(latencies, 95), 1),
            "max": round(max(latencies), 1),
        },
        "redone_units_after_pause": {"max": max(redone), "mean": statistics.mean(redone)},
        "work_lost_on_kill9_ms": {
            "max": round(max(crash_lost), 1),
            "mean": round(statistics.mean(crash_lost), 1),
            "unit_ms": SLEEP_MS,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    load_builtin_handlers()
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run_store(f"sqlite:///{tmp}/bench.db", Path(tmp) / "s1", args.trials)
        name = f"rhizome_pause_{secrets.token_hex(3)}"
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = ADMIN.rsplit("/", 1)[0] + "/" + name
            results["postgres"] = run_store(url, Path(tmp) / "s2", args.trials)
        finally:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
