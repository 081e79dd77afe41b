"""Cost of history: drain and the Jobs panel's queries with 1,000,000 finished jobs in the
tables, against the same database empty (issue 18, item 5).

    .venv/bin/python bench/queue/history.py [--rows 1000000] [--jobs 10000] \
        [--stores sqlite postgres] [--repeat 20] [--json FILE]

Per store, two fresh databases: **full** gets ``--rows`` finished jobs written in bulk
(SQL: a mix of visible job types, 96 % completed, 2 % failed, 2 % cancelled, spread over
the last 25 days, 3 timeline events each) and is analysed; **empty** stays empty. Then,
``--rounds`` times in turn, empty then full: enqueue ``--jobs`` no-op jobs (input ``{}``)
and one ``rhizome worker --burst`` process with default settings drains them (jobs/s from
its spawn to the last completion, database timestamps; and the worker's CPU per job,
which a shared machine disturbs less); the ratio full ÷ empty is taken per round. Last,
on each database, the panel's queries ``--repeat`` times each (p50/p95): the first page of
the default view (newest first, hidden types left out), its facet counts (the filter
badges), the status, type and stage filters, and the counts under a type filter.
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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from rhizome.app import BUILTIN_MIGRATIONS
from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.model import JobFilter, NewJob
from rhizome.jobs.registry import registry
from rhizome.jobs.store import SqlJobStore, open_store
from rhizome.web.display import hidden_types

ADMIN = os.environ.get("RHIZOME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TYPES = ["process_document", "detect_connections", "export_documents", "reprocess_connections"]

FILL_PG = """
INSERT INTO background_jobs (id, job_type, status, input_data, progress, created_at, run_at,
    started_at, completed_at, updated_at, attempt, output_data, error_type, error_message)
SELECT gen_random_uuid(),
       (ARRAY['process_document','detect_connections','export_documents',
              'reprocess_connections'])[1 + (i %% 4)],
       CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 50 = 1 THEN 'cancelled' ELSE 'completed' END,
       '{"document_id": "00000000-0000-0000-0000-000000000000"}'::jsonb,
       '{"percent": 100, "stage": "finalize", "details": "done"}'::jsonb,
       t, t, t, t + interval '3 seconds', t + interval '3 seconds', 1,
       CASE WHEN i %% 50 > 1 THEN '{"ok": true}'::jsonb END,
       CASE WHEN i %% 50 = 0 THEN 'permanent' END,
       CASE WHEN i %% 50 = 0 THEN 'it broke' END
FROM (SELECT i, now() - interval '25 days' * (i::float8 / %(n)s) AS t
      FROM generate_series(%(start)s, %(stop)s - 1) AS i) AS g;
"""
EVENTS_PG = """
INSERT INTO job_events (job_id, at, from_status, to_status, message)
SELECT id, created_at, s.f, s.t, s.m FROM background_jobs
CROSS JOIN (VALUES (NULL, 'pending', 'created'), ('pending', 'processing', 'claimed'),
                   ('processing', 'completed', 'completed')) AS s(f, t, m)
WHERE status <> 'pending';
"""
FILL_SQLITE = """
WITH RECURSIVE g(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM g WHERE i + 1 < :stop)
INSERT INTO background_jobs (id, job_type, status, input_data, progress, created_at, run_at,
    started_at, completed_at, updated_at, attempt, output_data, error_type, error_message)
SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
             substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' ||
             hex(randomblob(6))),
       CASE i % 4 WHEN 0 THEN 'process_document' WHEN 1 THEN 'detect_connections'
                  WHEN 2 THEN 'export_documents' ELSE 'reprocess_connections' END,
       CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 50 = 1 THEN 'cancelled' ELSE 'completed' END,
       '{"document_id": "00000000-0000-0000-0000-000000000000"}',
       '{"percent": 100, "stage": "finalize", "details": "done"}',
       t, t, t, t, t, 1,
       CASE WHEN i % 50 > 1 THEN '{"ok": true}' END,
       CASE WHEN i % 50 = 0 THEN 'permanent' END,
       CASE WHEN i % 50 = 0 THEN 'it broke' END
FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%fZ', 'now',
                         '-' || CAST(25 * 86400 * i / :n AS INTEGER) || ' seconds') AS t
      FROM g);
"""
EVENTS_SQLITE = """
INSERT INTO job_events (job_id, at, from_status, to_status, message)
SELECT id, created_at, s.f, s.t, s.m FROM background_jobs
CROSS JOIN (SELECT NULL AS f, 'pending' AS t, 'created' AS m
            UNION ALL SELECT 'pending', 'processing', 'claimed'
            UNION ALL SELECT 'processing', 'completed', 'completed') AS s
WHERE status <> 'pending';
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def drain(url: str, store: SqlJobStore, storage: Path, jobs: int) -> dict[str, Any]:
    for start in range(0, jobs, 5000):
        store.enqueue([NewJob("noop", {})] * min(5000, jobs - start))
    env = dict(
        os.environ,
        RHIZOME_DATABASE_URL=url,
        RHIZOME_STORAGE_URL=str(storage),
        RHIZOME_LOG_LEVEL="WARNING",
    )
    spawned = datetime.now(UTC)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rhizome.cli", "worker", "--burst", "--types", "noop"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the worker exited with {proc.returncode}")
    exit_s = time.monotonic() - t0
    worker_cpu = usage.ru_utime + usage.ru_stime
    with store.session() as s:
        row = store._raw(
            s,
            "SELECT count(*) AS n, max(completed_at) AS last FROM background_jobs "
            "WHERE job_type = 'noop' AND status = 'completed'",
        )[0]
    last = row["last"]
    if isinstance(last, str):
        last = datetime.fromisoformat(last.replace("Z", "+00:00"))
    seconds = (last - spawned).total_seconds()
    with store.transaction() as tx:  # the drained jobs go, so the next drain starts alike
        tx.conn.execute(  # type: ignore[attr-defined]
            "DELETE FROM job_events WHERE job_id IN "
            "(SELECT id FROM background_jobs WHERE job_type = 'noop')"
        )
        tx.conn.execute("DELETE FROM background_jobs WHERE job_type = 'noop'")  # type: ignore[attr-defined]
    return {
        "jobs": int(row["n"]),
        "jobs_per_s": round(int(row["n"]) / seconds, 1),
        "seconds": round(seconds, 2),
        "worker_exit_s": round(exit_s, 2),
        # the worker process's CPU per job (user + system): what history costs it, less
        # disturbed by other work on a shared machine than the wall-clock rate
        "worker_cpu_us_per_job": round(worker_cpu / max(int(row["n"]), 1) * 1e6, 1),
    }


def panel(store: SqlJobStore, repeat: int) -> dict[str, Any]:
    hidden = tuple(hidden_types(registry))
    base = JobFilter(user_id="local", exclude_types=hidden)
    cases = {
        "first_page": lambda: store.search_jobs(base, limit=50),
        "facet_counts": lambda: store.facet_counts(base),
        "filter_status_failed": lambda: store.search_jobs(
            JobFilter(user_id="local", statuses=("failed",), exclude_types=hidden), limit=50
        ),
        "filter_status_completed": lambda: store.search_jobs(
            JobFilter(user_id="local", statuses=("completed",), exclude_types=hidden), limit=50
        ),
        "filter_type": lambda: store.search_jobs(
            JobFilter(user_id="local", types=("detect_connections",), exclude_types=hidden),
            limit=50,
        ),
        "filter_stage": lambda: store.search_jobs(
            JobFilter(user_id="local", stage="embed", exclude_types=hidden), limit=50
        ),
        "filter_type_counts": lambda: store.facet_counts(
            JobFilter(user_id="local", types=("detect_connections",), exclude_types=hidden)
        ),
    }
    out: dict[str, Any] = {}
    for name, call in cases.items():
        call()  # warm the caches, as a panel that is open
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(pct(times, 95), 1),
        }
    return out


def fill(store: SqlJobStore, rows: int) -> float:
    t0 = time.monotonic()
    step = 100_000
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        with store.transaction() as tx:
            if store.dialect == "postgres":
                tx.conn.execute(FILL_PG, {"start": start, "stop": stop, "n": rows})  # type: ignore[attr-defined]
            else:
                tx.conn.execute(FILL_SQLITE, {"start": start, "stop": stop, "n": rows})  # type: ignore[attr-defined]
    with store.transaction() as tx:
        if store.dialect == "postgres":
            tx.conn.execute(EVENTS_PG)  # type: ignore[attr-defined]
        else:
            tx.conn.execute(EVENTS_SQLITE)  # type: ignore[attr-defined]
    with store.transaction() as tx:
        tx.conn.execute("ANALYZE")  # type: ignore[attr-defined]
    return round(time.monotonic() - t0, 1)


def run_store(urls: dict[str, str], storage: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``urls``: an ``empty`` and a ``full`` database of one store kind. The full one is
    filled first; then the drains go in turn, empty then full, ``--rounds`` times (so that
    a change in the machine's load hits both alike), then the panel's queries on each."""
    stores = {k: open_store(u, migrations=BUILTIN_MIGRATIONS) for k, u in urls.items()}
    out: dict[str, Any] = {"empty": {"drain": []}, "full": {"drain": []}}
    try:
        out["fill_s"] = fill(stores["full"], args.rows)
        for _ in range(args.rounds):
            for kind in ("empty", "full"):
                out[kind]["drain"].append(drain(urls[kind], stores[kind], storage, args.jobs))
        for kind in ("empty", "full"):
            out[kind]["panel"] = panel(stores[kind], args.repeat)
        dialect = stores["full"].dialect
        print(json.dumps({dialect: out}), flush=True)
        ratios = [
            round(f["jobs_per_s"] / e["jobs_per_s"], 3)
            for e, f in zip(out["empty"]["drain"], out["full"]["drain"], strict=True)
        ]
        out["drain_full_over_empty_per_round"] = ratios
        out["drain_full_over_empty"] = round(statistics.median(ratios), 3)
        cpu = [
            round(e["worker_cpu_us_per_job"] / f["worker_cpu_us_per_job"], 3)
            for e, f in zip(out["empty"]["drain"], out["full"]["drain"], strict=True)
        ]
        out["worker_cpu_empty_over_full_per_round"] = cpu
    finally:
        for store in stores.values():
            store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--json")
    parser.add_argument(
        "--random-ids",
        action="store_true",
        help="enqueue the drained jobs with random ids (uuid4, as before UUIDv7 job ids): "
        "what the drain costs when new jobs' ids (and their events' job_id) land at random "
        "places of the indexes",
    )
    args = parser.parse_args()
    if args.random_ids:
        import rhizome.jobs.store.base as store_base

        # this process enqueues the drained jobs; workers make no ids
        store_base.new_job_id = lambda: str(uuid.uuid4())  # type: ignore[attr-defined]
    load_builtin_handlers()
    # bytecode as an installed package has it (see bench.py: compile_rhizome)
    import compileall

    import rhizome

    for folder in rhizome.__path__:
        compileall.compile_dir(folder, quiet=1)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "rows": args.rows,
        "random_ids": args.random_ids,
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in args.stores:
            urls = {k: f"sqlite:///{tmp}/history-{k}.db" for k in ("empty", "full")}
            results["sqlite"] = run_store(urls, Path(tmp) / "s1", args)
        if "postgres" in args.stores:
            names = {k: f"rhizome_history_{k}_{secrets.token_hex(3)}" for k in ("empty", "full")}
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                for name in names.values():
                    admin.execute(f'CREATE DATABASE "{name}"')
            try:
                base = ADMIN.rsplit("/", 1)[0]
                urls = {k: f"{base}/{name}" for k, name in names.items()}
                results["postgres"] = run_store(urls, Path(tmp) / "s2", args)
            finally:
                with psycopg.connect(ADMIN, autocommit=True) as admin:
                    for name in names.values():
                        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
