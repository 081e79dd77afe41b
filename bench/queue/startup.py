"""Worker start-up: from spawning ``rhizome worker --burst`` to its first claim, per source
tree, interleaved (issue 18: the drain benchmark counts process start-up).

    .venv/bin/python bench/queue/startup.py --src before=/tmp/a/src --src after=src \
        [--rounds 10] [--store sqlite|postgres] [--json FILE]

Each ``--src NAME=DIR`` is a ``src/`` folder (e.g. ``git archive REV src | tar -x -C
/tmp/x``) put first on ``PYTHONPATH``; everything else (Python, the installed packages,
the database) is shared. Per round and source, in turn: one no-op job is enqueued on an
empty database, then ``python -m rhizome.cli worker --burst`` is spawned; measured are
**first claim** = the job's ``started_at`` (database clock) - spawn (same machine's
clock), **exit** = spawn → the process exited, and the process's **CPU** (user + system,
from ``wait4``). Also, once per source in a fresh interpreter: the modules a starting
worker has imported (what ``rhizome worker`` does up to its first claim: the CLI module,
the command tree, ``App``, the worker) and which heavy ones among them.

Other sessions share this machine: compare sources within one run (they are interleaved
round by round) and record the load average printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ADMIN = os.environ.get("RHIZOME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
HEAVY = (
    "numpy",
    "torch",
    "onnxruntime",
    "sentence_transformers",
    "rich",
    "httpx",
    "rapidfuzz",
    "pygments",
    "fastapi",
    "rhizome.web",
    "rhizome.pipeline.extract",
    "rhizome.pipeline.embed",
    "rhizome.pipeline.connect.index",
    "rhizome.library.embedding_index",
)
MODULES = """
import json, sys, time
t0 = time.perf_counter()
import typer
from rhizome import cli
command = typer.main.get_command(cli.app)
t1 = time.perf_counter()
a = cli._app()
w = a.worker(burst=True)
t2 = time.perf_counter()
print(json.dumps({
    "modules": len(sys.modules),
    "heavy": sorted(h for h in %r if h in sys.modules),
    "import_cli_s": round(t1 - t0, 3),
    "app_and_worker_s": round(t2 - t1, 3),
}))
"""


def _env(src: Path, url: str, storage: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RHIZOME_")}
    env.update(
        PYTHONPATH=str(src),
        RHIZOME_DATABASE_URL=url,
        RHIZOME_STORAGE_URL=str(storage),
        RHIZOME_LOG_LEVEL="WARNING",
    )
    return env


def _enqueue_one(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "rhizome.cli", "jobs", "enqueue", "noop"],
        env=env,
        check=True,
        capture_output=True,
    )


def _started_at(url: str) -> datetime:
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            (value,) = conn.execute(
                "SELECT max(started_at) FROM background_jobs WHERE job_type = 'noop'"
            ).fetchone()
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT max(started_at) FROM background_jobs WHERE job_type = 'noop'"
        ).fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, datetime)
    return value


def _clear(url: str) -> None:
    sql = ["DELETE FROM job_events", "DELETE FROM background_jobs", "DELETE FROM workers"]
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for s in sql:
                conn.execute(s)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        for s in sql:
            conn.execute(s)


def one_start(src: Path, url: str, storage: Path) -> dict[str, float]:
    env = _env(src, url, storage)
    _clear(url)
    _enqueue_one(env)
    spawned = datetime.now(UTC)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rhizome.cli", "worker", "--burst"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    exit_s = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"worker exited {proc.returncode}"
    first = (_started_at(url) - spawned).total_seconds()
    return {
        "first_claim_s": round(first, 3),
        "exit_s": round(exit_s, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    }


def modules(src: Path, url: str, storage: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", MODULES % (HEAVY,)],
        env=_env(src, url, storage),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json")
    args = parser.parse_args()
    sources = {s.split("=", 1)[0]: Path(s.split("=", 1)[1]).resolve() for s in args.src}
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "store": args.store,
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    with tempfile.TemporaryDirectory() as tmp:
        name_db = None
        if args.store == "sqlite":
            url = f"sqlite:///{tmp}/startup.db"
        else:
            name_db = f"rhizome_startup_{secrets.token_hex(3)}"
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name_db}"')
            url = ADMIN.rsplit("/", 1)[0] + "/" + name_db
        try:
            storage = Path(tmp) / "storage"
            first = next(iter(sources.values()))
            _enqueue_one(_env(first, url, storage))  # migrates the database once
            results["modules"] = {n: modules(s, url, storage) for n, s in sources.items()}
            for r in range(args.rounds):
                for name, src in sources.items():
                    runs[name].append(one_start(src, url, storage))
                print(f"round {r + 1}: " + json.dumps({n: v[-1] for n, v in runs.items()}))
        finally:
            if name_db:
                with psycopg.connect(ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name_db}" WITH (FORCE)')
    summary: dict[str, Any] = {}
    for name, values in runs.items():
        summary[name] = {
            key: {
                "median": round(statistics.median(v[key] for v in values), 3),
                "min": min(v[key] for v in values),
                "max": max(v[key] for v in values),
            }
            for key in ("first_claim_s", "exit_s", "cpu_s")
        }
    results["summary"] = summary
    results["runs"] = runs
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
