"""Pause latency and redone work, on PostgreSQL and SQLite, with a real worker process.

A `noop` job with one stage of 400 units of 100 ms (a safe point every 100 ms) runs in a
worker process. At a random moment we request a pause and measure request → `paused`
from the job's own timeline (both are database timestamps). Then we resume it in a *new*
worker process and count the units executed twice (redone work). Finally the same job is
interrupted by kill -9 instead, to show what a crash costs.

    .venv/bin/python bench/pause/run.py [--trials 30]

``--document FILE`` pauses a real ``process_document`` job instead, in the middle of
embedding (Moby-Dick: 1,778 chunks, batches of 16 with a checkpoint and a safe point
after each): each trial adds the file, waits until the worker has embedded its first batch
(the model is loaded), waits a random 0-3 s more, asks for a pause and measures request →
`paused`; then resumes it in the same worker and checks that the first new checkpoint is
exactly one batch further (nothing redone), and cancels it. ``--load-trials N`` adds N
trials that pause a job while a fresh worker is still loading the model (``--load-precision``,
default ``torch``: the slowest load, ~5-10 s).

    .venv/bin/python bench/pause/run.py --document ../shared/corpus/epub/moby-dick.epub \
        --trials 20 --load-trials 5 [--stores sqlite postgres] [--precision int8]
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

from rhizome.app import BUILTIN_MIGRATIONS
from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore, open_store
from rhizome.library.ingest import add_bytes
from rhizome.storage import LocalStorage

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


# --- a real document ----------------------------------------------------------------------

EMBED_BATCH = 16


def embedded_at(storage: Path, key: str | None) -> int:
    """The embed stage's cursor in a checkpoint file (-1: the checkpoint is elsewhere)."""
    assert key is not None
    data = json.loads((storage / key).read_text())["data"]
    if data.get("stage") != "embed":
        return -1
    return int(dict(data["cursors"]).get("embedded", -1))


def progress_of(store: SqlJobStore, job_id: str) -> dict[str, object]:
    return dict(store.get(job_id).progress or {})


def pause_latency_ms(store: SqlJobStore, job_id: str) -> float:
    events = store.events(job_id)
    asked = next(e.at for e in events if e.message == "pause requested")
    paused = next(e.at for e in events if e.to_status == "paused")
    return (paused - asked).total_seconds() * 1000


def run_document(
    url: str,
    root: Path,
    path: Path,
    trials: int,
    load_trials: int,
    precision: str,
    load_precision: str,
    cache: Path,
) -> dict[str, object]:
    store = open_store(url, migrations=BUILTIN_MIGRATIONS)
    storage = LocalStorage(root)
    data = path.read_bytes()

    def env_for(p: str) -> dict[str, str]:
        return dict(
            os.environ,
            RHIZOME_DATABASE_URL=url,
            RHIZOME_STORAGE_URL=str(root),
            RHIZOME_LOG_LEVEL="WARNING",
            RHIZOME_EMBEDDER="minilm",
            RHIZOME_EMBEDDING_PRECISION=p,
            RHIZOME_MODEL_CACHE_DIR=str(cache),
        )

    def finish(job_id: str) -> None:
        store.request_cancel(job_id)
        wait(lambda: store.get(job_id).status is JobStatus.CANCELLED, timeout=120)

    latencies: list[float] = []
    redone: list[int] = []
    loads: list[float] = []
    at_chunk: list[int] = []
    kept: list[str] = []  # paused jobs (chunked, mid-embedding) for the model-load trials
    proc = worker(env_for(precision))
    try:
        for trial in range(trials):
            job = add_bytes(store, storage, data, filename=path.name).job

            def embedding(j: str = job.id) -> bool:
                p = progress_of(store, j)
                embedded = dict(p.get("stage_data") or {}).get("embedded", 0)  # type: ignore[call-overload]
                return p.get("stage") == "embed" and int(embedded) >= EMBED_BATCH

            wait(embedding, timeout=600, every=0.02)
            time.sleep(random.uniform(0, 3.0))
            store.request_pause(job.id)
            wait(lambda j=job.id: store.get(j).status is JobStatus.PAUSED, timeout=120)
            latencies.append(pause_latency_ms(store, job.id))
            paused = store.get(job.id)
            before = embedded_at(root, paused.last_checkpoint_path)
            at_chunk.append(before)
            store.resume(job.id)
            wait(
                lambda j=job.id, h=paused.checkpoint_hash: (
                    store.get(j).checkpoint_hash not in (None, h)
                ),
                timeout=300,
            )
            after = embedded_at(root, store.get(job.id).last_checkpoint_path)
            redone.append(before + EMBED_BATCH - after)  # 0: the next batch, nothing redone
            if trial >= trials - load_trials:
                store.request_pause(job.id)
                wait(lambda j=job.id: store.get(j).status is JobStatus.PAUSED, timeout=120)
                kept.append(job.id)
            else:
                finish(job.id)
        # a pause while a fresh worker is still loading the model: a paused job (already
        # chunked) resumed in a new worker process goes straight to the embed stage
        for job_id in kept:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            proc = worker(env_for(load_precision))
            before_events = len(store.events(job_id))
            store.resume(job_id)
            wait(
                lambda j=job_id: progress_of(store, j).get("substage") == "load_model",
                timeout=300,
                every=0.005,
            )
            time.sleep(random.uniform(0, 1.0))
            store.request_pause(job_id)
            wait(lambda j=job_id: store.get(j).status is JobStatus.PAUSED, timeout=120)
            events = store.events(job_id)[before_events:]
            asked = next(e.at for e in events if e.message == "pause requested")
            stopped = next(e.at for e in events if e.to_status == "paused")
            loads.append((stopped - asked).total_seconds() * 1000)
            finish(job_id)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        store.close()
        print(
            json.dumps({"latencies": latencies, "redone": redone, "loads": loads}), file=sys.stderr
        )
    out: dict[str, object] = {
        "document": path.name,
        "precision": precision,
        "trials": trials,
        "pause_latency_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(pct(latencies, 95), 1),
            "max": round(max(latencies), 1),
            "all": [round(x) for x in latencies],
        },
        "paused_at_chunk": at_chunk,
        "redone_chunks_after_resume": {"max": max(redone), "min": min(redone)},
    }
    if loads:
        out["pause_during_model_load_ms"] = {
            "precision": load_precision,
            "trials": len(loads),
            "p50": round(statistics.median(loads), 1),
            "max": round(max(loads), 1),
            "all": [round(x) for x in loads],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--document", type=Path, help="pause a real process_document job")
    parser.add_argument("--precision", default="int8", choices=["int8", "fp32", "torch"])
    parser.add_argument("--load-trials", type=int, default=0)
    parser.add_argument("--load-precision", default="torch", choices=["int8", "fp32", "torch"])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--cache", type=Path, default=Path(".rhizome/models").resolve(), help="model cache"
    )
    args = parser.parse_args()
    load_builtin_handlers()
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }

    def run(url: str, root: Path) -> dict[str, object]:
        if args.document:
            return run_document(
                url,
                root,
                args.document,
                args.trials,
                args.load_trials,
                args.precision,
                args.load_precision,
                args.cache,
            )
        return run_store(url, root, args.trials)

    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in args.stores:
            results["sqlite"] = run(f"sqlite:///{tmp}/bench.db", Path(tmp) / "s1")
        if "postgres" in args.stores:
            name = f"rhizome_pause_{secrets.token_hex(3)}"
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = ADMIN.rsplit("/", 1)[0] + "/" + name
                results["postgres"] = run(url, Path(tmp) / "s2")
            finally:
                with psycopg.connect(ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
