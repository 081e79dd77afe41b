"""Queue benchmark: rhizome on PostgreSQL, rhizome on SQLite and Procrastinate, side by side.

Run it through ``bench/queue/run.sh`` (it prepares ``bench/.venv``). What it measures, for
every system, on the same PostgreSQL server and in one run:

* **enqueue bulk** - ``--jobs`` no-op jobs enqueued in batches of ``--batch`` (rhizome:
  ``store.enqueue([NewJob, ...])`` like ``rhizome jobs enqueue --count``; Procrastinate:
  ``task.batch_defer(...)``), jobs/s;
* **enqueue single** - ``--single`` jobs enqueued one call (one transaction) each, jobs/s;
* **drain** - ``--jobs`` jobs enqueued first, then N real worker processes started at once
  in burst / one-shot mode; jobs/s = jobs / (last completion - worker spawn). Also reported:
  the steady rate (first start → last completion, i.e. without process start-up) and the
  time until the worker processes exited;
* **latency** - one idle (non-burst) worker; ``--latency-jobs`` jobs enqueued one at a time
  every ``--latency-gap-ms``; latency = start - creation from database timestamps of each
  row (rhizome: ``started_at - created_at``; Procrastinate: the ``started`` event's ``at``
  minus the ``deferred`` event's ``at``), p50/p95/p99 in ms.

Databases ``rhizome_bench_<hex>`` and ``procrastinate_bench_<hex>`` are created and dropped;
the SQLite file lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(sys.executable).parent

# --------------------------------------------------------------------------------------
# helpers


def compile_rhizome() -> None:
    """Write the bytecode of the rhizome sources under test, as installing a package does.

    The other queues come from wheels (bytecode written by pip); rhizome is an editable
    install or a ``git archive`` of ``src/``, and where ``PYTHONDONTWRITEBYTECODE`` is set
    (as in this project's sessions) every worker process would compile all of rhizome's
    modules again at start-up (0.2-0.3 s of CPU of its start in 2026-12-07 runs)."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("rhizome")
    assert spec is not None and spec.submodule_search_locations
    for folder in spec.submodule_search_locations:
        compileall.compile_dir(folder, quiet=1)
    log(f"compiled rhizome's bytecode in {', '.join(spec.submodule_search_locations)}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def cpu_times() -> tuple[int, int]:
    """(total, idle+iowait) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[0] - before[0]
    idle = after[1] - before[1]
    return round(100 * (total - idle) / total, 1) if total > 0 else 0.0


QUIET = {"pct": 15.0, "wait": 60.0}
OPTS = {"vacuum": True}


def wait_quiet() -> float:
    """Wait (up to QUIET['wait'] s) until the machine is idle: other processes on this
    machine (test suites, builds) would otherwise skew the numbers. Returns the busy % of
    the last 0.5 s sample: the background load the next phase starts with."""
    deadline = time.monotonic() + QUIET["wait"]
    while True:
        a = cpu_times()
        time.sleep(0.5)
        pct = busy_pct(a, cpu_times())
        if pct <= QUIET["pct"] or time.monotonic() > deadline:
            if pct > QUIET["pct"]:
                log(f"  (machine still {pct}% busy with other work; measuring anyway)")
            return pct
        time.sleep(1.0)


def parse_ts(value: str | None) -> float | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).timestamp()


def machine_info(admin_url: str) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(Exception):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    mem_gib = None
    with contextlib.suppress(Exception), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
        }
    git: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        git["head"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        git["src_dirty"] = bool(
            subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in ("procrastinate", "pgqueuer", "asyncpg", "rhizome-jobs", "psycopg", "psycopg-pool"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "ram_gib": mem_gib,
        "postgresql": pg_version,
        "postgresql_settings": settings,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "versions": versions,
        "git": git,
    }


# --------------------------------------------------------------------------------------
# the systems


class System:
    name = ""
    key = ""

    def setup(self) -> None: ...
    def reset(self) -> None: ...
    def teardown(self) -> None: ...
    def enqueue_batch(self, n: int) -> list[Any]:
        raise NotImplementedError

    def enqueue_one(self) -> Any:
        raise NotImplementedError

    def worker(self, concurrency: int, burst: bool) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def workers_registered(self) -> int:
        raise NotImplementedError

    def drain_stats(self) -> dict[str, Any]:
        raise NotImplementedError

    def done_count(self, ids: list[Any]) -> int:
        raise NotImplementedError

    def latencies_ms(self, ids: list[Any]) -> list[float]:
        raise NotImplementedError

    def before_drain(self) -> None: ...
    def notes(self) -> dict[str, Any]:
        return {}


class RhizomePostgres(System):
    name = "rhizome (PostgreSQL)"
    key = "rhizome-pg"

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp

    def setup(self) -> None:
        from rhizome.jobs.store import open_store

        self.store = open_store(self.url)
        self.conn = psycopg.connect(self.url, autocommit=True)

    def reset(self) -> None:
        self.conn.execute("TRUNCATE background_jobs, job_events, workers")

    def before_drain(self) -> None:
        if OPTS["vacuum"]:
            self.conn.execute("VACUUM ANALYZE background_jobs")
        self.conn.execute("CHECKPOINT")

    def teardown(self) -> None:
        self.store.close()
        self.conn.close()

    def enqueue_batch(self, n: int) -> list[Any]:
        from rhizome.jobs.model import NewJob

        return [j.id for j in self.store.enqueue([NewJob("noop", {}) for _ in range(n)])]

    def enqueue_one(self) -> Any:
        from rhizome.jobs.model import NewJob

        return self.store.enqueue([NewJob("noop", {})])[0].id

    def env(self) -> dict[str, str]:
        return {
            "RHIZOME_DATABASE_URL": self.url,
            "RHIZOME_STORAGE_URL": str(self.tmp / "storage"),
            "RHIZOME_LOG_LEVEL": "WARNING",
            "RHIZOME_SHUTDOWN_GRACE_SECONDS": "5",
        }

    def worker(self, concurrency: int, burst: bool) -> tuple[list[str], dict[str, str]]:
        """``concurrency`` 0: rhizome's defaults (no option, no variable)."""
        argv = [str(BIN / "rhizome"), "worker"]
        env = self.env()
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
            env["RHIZOME_CONCURRENCY"] = str(concurrency)
        if burst:
            argv.append("--burst")
        return argv, env

    def workers_registered(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM workers WHERE stopped_at IS NULL").fetchone()
        return int(row[0])  # type: ignore[index]

    def drain_stats(self) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), count(*),"
            " extract(epoch FROM min(started_at))::float8,"
            " extract(epoch FROM max(completed_at))::float8 FROM background_jobs"
        ).fetchone()
        assert row is not None
        return {"completed": row[0], "total": row[1], "first_start": row[2], "last_done": row[3]}

    def done_count(self, ids: list[Any]) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM background_jobs WHERE id = ANY(%s::uuid[])"
            " AND status = 'completed'",
            (ids,),
        ).fetchone()
        return int(row[0])  # type: ignore[index]

    def latencies_ms(self, ids: list[Any]) -> list[float]:
        rows = self.conn.execute(
            "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000"
            " FROM background_jobs WHERE id = ANY(%s::uuid[]) AND started_at IS NOT NULL",
            (ids,),
        ).fetchall()
        return [float(r[0]) for r in rows]


class RhizomeSqlite(RhizomePostgres):
    name = "rhizome (SQLite)"
    key = "rhizome-sqlite"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.phase = 0
        self.store: Any = None
        self.conn: Any = None

    def _open(self) -> None:
        from rhizome.jobs.store import open_store

        self.phase += 1
        self.path = self.tmp / f"rhizome-{self.phase}.db"
        self.url = f"sqlite:///{self.path}"  # path is absolute: sqlite:////tmp/...
        self.store = open_store(self.url)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)

    def setup(self) -> None:
        self._open()

    def reset(self) -> None:
        """A fresh database file for every phase."""
        self.teardown()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(self.path) + suffix).unlink()
        self._open()

    def before_drain(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.conn is not None:
            self.conn.close()

    def workers_registered(self) -> int:
        return int(
            self.conn.execute("SELECT count(*) FROM workers WHERE stopped_at IS NULL").fetchone()[0]
        )

    def drain_stats(self) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT sum(status = 'completed'), count(*), min(started_at), max(completed_at)"
            " FROM background_jobs"
        ).fetchone()
        return {
            "completed": row[0] or 0,
            "total": row[1],
            "first_start": parse_ts(row[2]),
            "last_done": parse_ts(row[3]),
        }

    def _rows(self, sql: str, ids: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.extend(self.conn.execute(sql.format(marks=marks), chunk).fetchall())
        return out

    def done_count(self, ids: list[Any]) -> int:
        rows = self._rows(
            "SELECT 1 FROM background_jobs WHERE id IN ({marks}) AND status = 'completed'", ids
        )
        return len(rows)

    def latencies_ms(self, ids: list[Any]) -> list[float]:
        rows = self._rows(
            "SELECT created_at, started_at FROM background_jobs"
            " WHERE id IN ({marks}) AND started_at IS NOT NULL",
            ids,
        )
        return [(parse_ts(s) - parse_ts(c)) * 1000 for c, s in rows]  # type: ignore[operator]

    def notes(self) -> dict[str, Any]:
        return {"timestamp_resolution_ms": 1}


class Procrastinate(System):
    name = "Procrastinate"
    key = "procrastinate"

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool_max = 12

    def setup(self) -> None:
        os.environ["PQ_DSN"] = self.url
        sys.path.insert(0, str(HERE))
        import pq_app

        self.app = pq_app.app
        self.task = pq_app.noop
        self.app.open()
        self.app.schema_manager.apply_schema()
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.has_batch_defer = hasattr(self.task, "batch_defer")

    def reset(self) -> None:
        self.conn.execute(
            "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,"
            " procrastinate_workers RESTART IDENTITY"
        )

    def before_drain(self) -> None:
        if OPTS["vacuum"]:
            self.conn.execute("VACUUM ANALYZE procrastinate_jobs")
            self.conn.execute("VACUUM ANALYZE procrastinate_events")
        self.conn.execute("CHECKPOINT")

    def teardown(self) -> None:
        self.app.close()
        self.conn.close()

    def enqueue_batch(self, n: int) -> list[Any]:
        if self.has_batch_defer:
            return list(self.task.batch_defer(*({} for _ in range(n))))
        return [self.task.defer() for _ in range(n)]

    def enqueue_one(self) -> Any:
        return self.task.defer()

    def worker(self, concurrency: int, burst: bool) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, str(HERE / "pq_worker.py"), "--concurrency", str(concurrency)]
        if burst:
            argv.append("--one-shot")
        # one connection per concurrent job, one for LISTEN, one spare
        return argv, {"PQ_DSN": self.url, "PQ_POOL_MAX": str(concurrency + 2)}

    def workers_registered(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
        return int(row[0])  # type: ignore[index]

    def drain_stats(self) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*),"
            " (SELECT extract(epoch FROM min(at))::float8 FROM procrastinate_events"
            "  WHERE type = 'started'),"
            " (SELECT extract(epoch FROM max(at))::float8 FROM procrastinate_events"
            "  WHERE type = 'succeeded')"
            " FROM procrastinate_jobs"
        ).fetchone()
        assert row is not None
        return {"completed": row[0], "total": row[1], "first_start": row[2], "last_done": row[3]}

    def done_count(self, ids: list[Any]) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s::bigint[])"
            " AND status = 'succeeded'",
            (ids,),
        ).fetchone()
        return int(row[0])  # type: ignore[index]

    def latencies_ms(self, ids: list[Any]) -> list[float]:
        rows = self.conn.execute(
            "SELECT extract(epoch FROM s.at - d.at)::float8 * 1000"
            " FROM procrastinate_events d JOIN procrastinate_events s"
            "   ON s.job_id = d.job_id AND s.type = 'started'"
            " WHERE d.type = 'deferred' AND d.job_id = ANY(%s::bigint[])",
            (ids,),
        ).fetchall()
        return [float(r[0]) for r in rows]

    def notes(self) -> dict[str, Any]:
        return {
            "batch_defer": self.has_batch_defer,
            "task": "async def noop() -> None",
            "pool": "PsycopgConnector, psycopg_pool max_size = concurrency + 2",
        }


class PgQueuerSystem(System):
    """pgqueuer 1.x with every default: ``pgqueuer.run(factory)`` over one asyncpg
    connection (batch size 10, no concurrency cap), async no-op entrypoint."""

    name = "pgqueuer"
    key = "pgqueuer"

    def __init__(self, url: str) -> None:
        self.url = url

    def setup(self) -> None:
        import asyncio

        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        self.loop = asyncio.new_event_loop()
        self.aconn = self.loop.run_until_complete(asyncpg.connect(self.url))
        self.queries = Queries(AsyncpgDriver(self.aconn))
        self.loop.run_until_complete(self.queries.install())
        self.conn = psycopg.connect(self.url, autocommit=True)
        own = self.loop.run_until_complete(self.aconn.fetchval("SELECT pg_backend_pid()"))
        self.own_pids = [own, self.conn.info.backend_pid]

    def reset(self) -> None:
        self.conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics RESTART IDENTITY")

    def before_drain(self) -> None:
        if OPTS["vacuum"]:
            self.conn.execute("VACUUM ANALYZE pgqueuer")
            self.conn.execute("VACUUM ANALYZE pgqueuer_log")
        self.conn.execute("CHECKPOINT")

    def teardown(self) -> None:
        self.loop.run_until_complete(self.aconn.close())
        self.loop.close()
        self.conn.close()

    def enqueue_batch(self, n: int) -> list[Any]:
        ids = self.loop.run_until_complete(self.queries.enqueue(["noop"] * n, [None] * n, [0] * n))
        return [int(i) for i in ids]

    def enqueue_one(self) -> Any:
        [job_id] = self.loop.run_until_complete(self.queries.enqueue("noop", None))
        return int(job_id)

    def worker(self, concurrency: int, burst: bool) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, str(HERE / "pgq_worker.py")]
        if burst:
            argv.append("--drain")
        return argv, {"PGQ_DSN": self.url}

    def workers_registered(self) -> int:
        """pgqueuer has no worker table: count the other sessions on this database."""
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> ALL(%s)",
            (self.own_pids,),
        ).fetchone()
        return int(row[0])  # type: ignore[index]

    def drain_stats(self) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'successful'),"
            " (SELECT count(*) FROM pgqueuer_log WHERE status = 'queued'),"
            " extract(epoch FROM min(created) FILTER (WHERE status = 'picked'))::float8,"
            " extract(epoch FROM max(created) FILTER (WHERE status = 'successful'))::float8"
            " FROM pgqueuer_log"
        ).fetchone()
        assert row is not None
        return {"completed": row[0], "total": row[1], "first_start": row[2], "last_done": row[3]}

    def done_count(self, ids: list[Any]) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM pgqueuer_log WHERE job_id = ANY(%s::bigint[])"
            " AND status = 'successful'",
            (ids,),
        ).fetchone()
        return int(row[0])  # type: ignore[index]

    def latencies_ms(self, ids: list[Any]) -> list[float]:
        rows = self.conn.execute(
            "SELECT extract(epoch FROM p.created - q.created)::float8 * 1000"
            " FROM pgqueuer_log q JOIN pgqueuer_log p"
            "   ON p.job_id = q.job_id AND p.status = 'picked'"
            " WHERE q.status = 'queued' AND q.job_id = ANY(%s::bigint[])",
            (ids,),
        ).fetchall()
        return [float(r[0]) for r in rows]

    def notes(self) -> dict[str, Any]:
        return {
            "worker": 'asyncio.run(pgqueuer.run("pgq_app:create")), defaults: batch_size 10,'
            " max_concurrent_tasks None, durability durable; burst = mode=drain",
            "task": "async def noop(job) -> None",
            "enqueue": "Queries.enqueue with list arguments",
            "latency": "pgqueuer_log 'picked' minus 'queued' (both now() of their transaction)",
        }


# --------------------------------------------------------------------------------------
# the measurements


@contextlib.contextmanager
def workers(
    system: System, procs: int, concurrency: int, burst: bool, logdir: Path, tag: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    argv, extra_env = system.worker(concurrency, burst)
    env = {**os.environ, **extra_env}
    started: list[subprocess.Popen[bytes]] = []
    files = []
    try:
        for i in range(procs):
            out = open(logdir / f"{system.key}-{tag}-{i}.log", "wb")  # noqa: SIM115
            files.append(out)
            started.append(
                subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=logdir)
            )
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in started:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in files:
            f.close()


def show_log(logdir: Path, system: System, tag: str) -> str:
    text = ""
    for path in sorted(logdir.glob(f"{system.key}-{tag}-*.log")):
        content = path.read_text(errors="replace").strip()
        if content:
            text += f"--- {path.name}\n{content[-3000:]}\n"
    return text


def measure_enqueue_bulk(system: System, n: int, batch: int) -> float:
    system.reset()
    wait_quiet()
    t0 = time.perf_counter()
    done = 0
    while done < n:
        k = min(batch, n - done)
        system.enqueue_batch(k)
        done += k
    return n / (time.perf_counter() - t0)


def measure_enqueue_single(system: System, n: int) -> float:
    system.reset()
    system.enqueue_one()  # warm the connection
    wait_quiet()
    t0 = time.perf_counter()
    for _ in range(n):
        system.enqueue_one()
    return n / (time.perf_counter() - t0)


def measure_drain(
    system: System, n: int, batch: int, procs: int, concurrency: int, logdir: Path, timeout: float
) -> dict[str, Any]:
    tag = f"drain-p{procs}-c{concurrency}"
    system.reset()
    done = 0
    while done < n:
        k = min(batch, n - done)
        system.enqueue_batch(k)
        done += k
    system.before_drain()
    background = wait_quiet()
    c0 = cpu_times()
    t0 = time.time()
    with workers(system, procs, concurrency, True, logdir, tag) as ps:
        deadline = time.monotonic() + timeout
        for p in ps:
            remaining = deadline - time.monotonic()
            try:
                p.wait(timeout=max(remaining, 0.1))
            except subprocess.TimeoutExpired:
                break
        t_exit = time.time()
        c1 = cpu_times()
        codes = [p.poll() for p in ps]
    stats = system.drain_stats()
    result: dict[str, Any] = {
        "procs": procs,
        "concurrency": concurrency,
        "jobs": n,
        "completed": stats["completed"],
        "exit_codes": codes,
        "background_cpu_pct": background,
        "cpu_busy_pct": busy_pct(c0, c1),
    }
    if stats["completed"] != n or any(c != 0 for c in codes):
        result["error"] = f"completed {stats['completed']} of {n}, exit codes {codes}"
        result["log"] = show_log(logdir, system, tag)
        log(f"  !! {system.key} {tag}: {result['error']}\n{result['log']}")
    if stats["last_done"] is not None:
        total = stats["last_done"] - t0
        steady = stats["last_done"] - stats["first_start"]
        result.update(
            seconds=round(total, 3),
            jobs_per_s=round(stats["completed"] / total, 1),
            startup_s=round(stats["first_start"] - t0, 3),
            steady_jobs_per_s=round(stats["completed"] / steady, 1) if steady > 0 else None,
            exit_s=round(t_exit - t0, 3),
        )
    return result


def measure_latency(
    system: System, n: int, gap_ms: float, concurrency: int, warmup: int, logdir: Path
) -> dict[str, Any]:
    tag = "latency"
    system.reset()
    with workers(system, 1, concurrency, False, logdir, tag) as ps:
        deadline = time.monotonic() + 30
        while system.workers_registered() < 1:
            if time.monotonic() > deadline or ps[0].poll() is not None:
                raise RuntimeError(f"worker did not start:\n{show_log(logdir, system, tag)}")
            time.sleep(0.05)
        time.sleep(1.5)  # let it reach its idle wait (LISTEN / data_version watch)

        def burst_of(count: int) -> tuple[list[Any], list[float]]:
            ids: list[Any] = []
            call_ms: list[float] = []
            start = time.perf_counter()
            for i in range(count):
                target = start + i * gap_ms / 1000
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                c0 = time.perf_counter()
                ids.append(system.enqueue_one())
                call_ms.append((time.perf_counter() - c0) * 1000)
            wait_until = time.monotonic() + 30
            while system.done_count(ids) < count and time.monotonic() < wait_until:
                time.sleep(0.05)
            return ids, call_ms

        burst_of(warmup)
        background = wait_quiet()
        ids, call_ms = burst_of(n)
    lat = system.latencies_ms(ids)
    result = {
        "jobs": n,
        "started": len(lat),
        "gap_ms": gap_ms,
        "concurrency": concurrency,
        "method": "database timestamps: start - creation of each job",
        "p50_ms": round(percentile(lat, 50), 2),
        "p95_ms": round(percentile(lat, 95), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(max(lat), 2) if lat else None,
        "mean_ms": round(sum(lat) / len(lat), 2) if lat else None,
        "enqueue_call_p50_ms": round(percentile(call_ms, 50), 2),
        "background_cpu_pct": background,
    }
    if len(lat) != n:
        result["error"] = f"only {len(lat)} of {n} jobs started"
        result["log"] = show_log(logdir, system, tag)
    return result


def drain_configs(system: System, args: argparse.Namespace) -> list[int]:
    """The concurrencies to drain with; the first is the headline. 0 = the system's
    default (rhizome: no --concurrency; pgqueuer: always its defaults)."""
    if system.key == "pgqueuer":
        return [0]
    conc = args.pq_concurrency if system.key == "procrastinate" else args.concurrency
    sweep = args.pq_sweep if system.key == "procrastinate" else args.sweep
    return [conc, *[c for c in sweep if c != conc]]


def run_enqueue(system: System, args: argparse.Namespace, res: dict[str, Any]) -> None:
    bulk = [measure_enqueue_bulk(system, args.jobs, args.batch) for _ in range(args.repeat)]
    res["enqueue_bulk_jobs_per_s"] = round(max(bulk), 1)
    res["enqueue_bulk_samples"] = [round(b, 1) for b in bulk]
    log(
        f"  {system.key} enqueue bulk ({args.jobs} in batches of {args.batch}):"
        f" {res['enqueue_bulk_samples']} jobs/s"
    )
    single = measure_enqueue_single(system, args.single)
    res["enqueue_single_jobs_per_s"] = round(single, 1)
    log(f"  {system.key} enqueue single ({args.single} calls): {single:.0f} jobs/s")


def run_latency(
    system: System, args: argparse.Namespace, res: dict[str, Any], logdir: Path
) -> None:
    conc = args.latency_concurrency
    if not conc and system.key == "procrastinate":
        conc = args.pq_concurrency
    lat = measure_latency(
        system,
        args.latency_jobs,
        args.latency_gap_ms,
        conc,
        args.warmup,
        logdir,
    )
    res["latency"] = lat
    log(
        f"  {system.key} latency ({lat['started']}/{lat['jobs']} jobs every {lat['gap_ms']} ms):"
        f" p50 {lat['p50_ms']} p95 {lat['p95_ms']} p99 {lat['p99_ms']} ms"
    )


def summarize_drains(system: System, args: argparse.Namespace, res: dict[str, Any]) -> None:
    """Per (procs, concurrency): the samples of all rounds, their median, min and max;
    ``drain_{1,2}p_jobs_per_s`` is the median of the headline configuration."""
    drains = res.get("drains", [])
    configs = drain_configs(system, args)
    summary: list[dict[str, Any]] = []
    for procs in (1, 2):
        for c in configs:
            ok = [
                d["jobs_per_s"]
                for d in drains
                if d["procs"] == procs
                and d["concurrency"] == c
                and "error" not in d
                and d.get("jobs_per_s")
            ]
            if not ok:
                continue
            ok.sort()
            row = {
                "procs": procs,
                "concurrency": c,
                "samples": ok,
                "median": ok[len(ok) // 2]
                if len(ok) % 2
                else (ok[len(ok) // 2 - 1] + ok[len(ok) // 2]) / 2,
                "min": ok[0],
                "max": ok[-1],
            }
            summary.append(row)
            if c == configs[0]:
                res[f"drain_{procs}p_jobs_per_s"] = row["median"]
                res[f"drain_{procs}p_range"] = [row["min"], row["max"]]
        best = max(
            (r for r in summary if r["procs"] == procs), key=lambda r: r["median"], default=None
        )
        if best:
            res[f"drain_{procs}p_best"] = {
                "concurrency": best["concurrency"],
                "jobs_per_s": best["median"],
            }
    res["drain_summary"] = summary


def run_all(
    systems: list[System], args: argparse.Namespace, logdir: Path
) -> dict[str, dict[str, Any]]:
    """Every phase for every system; drains are interleaved (round by round, system by
    system), so that a change in the machine's load hits all systems alike."""
    results: dict[str, dict[str, Any]] = {}
    for system in systems:
        system.setup()
        results[system.key] = {"name": system.name, "notes": system.notes(), "drains": []}
    try:
        if "enqueue" in args.phases:
            for system in systems:
                run_enqueue(system, args, results[system.key])
        if "drain" in args.phases:
            for rnd in range(args.rounds):
                for procs in (1, 2):
                    for system in systems:
                        for c in drain_configs(system, args):
                            d = measure_drain(
                                system, args.jobs, args.batch, procs, c, logdir, args.timeout
                            )
                            d["round"] = rnd + 1
                            results[system.key]["drains"].append(d)
                            log(
                                f"  [{rnd + 1}] {system.key} drain {procs} proc x"
                                f" {c or 'default'}: {d.get('jobs_per_s')} jobs/s"
                                f" (steady {d.get('steady_jobs_per_s')},"
                                f" start-up {d.get('startup_s')} s, exit {d.get('exit_s')} s,"
                                f" cpu {d.get('cpu_busy_pct')} %)"
                            )
            for system in systems:
                summarize_drains(system, args, results[system.key])
        if "latency" in args.phases:
            for system in systems:
                run_latency(system, args, results[system.key], logdir)
    finally:
        for system in systems:
            with contextlib.suppress(Exception):
                system.teardown()
    return results


def _headline(res: dict[str, Any], procs: int, rnd: int, conc: int) -> float | None:
    for d in res.get("drains", []):
        if d["procs"] == procs and d.get("round") == rnd and d["concurrency"] == conc:
            return d.get("jobs_per_s") if "error" not in d else None
    return None


def targets(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """rhizome-PG drain with its defaults >= 1.0x pgqueuer with its defaults (1 and 2
    worker processes; medians, and each round's ratio); rhizome-PG drain >= 2x
    Procrastinate's; rhizome-PG p50 enqueue->start latency < 20 ms."""
    pg = results.get("rhizome-pg")
    out: dict[str, Any] = {}
    for other, goal in (("pgqueuer", 1.0), ("procrastinate", 2.0)):
        them = results.get(other)
        if not (pg and them):
            continue
        for procs in (1, 2):
            a, b = pg.get(f"drain_{procs}p_jobs_per_s"), them.get(f"drain_{procs}p_jobs_per_s")
            if a and b:
                out[f"vs_{other}_{procs}p_ratio"] = round(a / b, 2)
                out[f"vs_{other}_{procs}p_met"] = a / b >= goal
            per_round = []
            pq_conc = 0 if other == "pgqueuer" else args.pq_concurrency
            for rnd in range(1, args.rounds + 1):
                x = _headline(pg, procs, rnd, args.concurrency)
                y = _headline(them, procs, rnd, pq_conc)
                if x and y:
                    per_round.append(round(x / y, 2))
            if per_round:
                out[f"vs_{other}_{procs}p_ratio_per_round"] = per_round
            a = pg.get(f"drain_{procs}p_best", {}).get("jobs_per_s")
            b = them.get(f"drain_{procs}p_best", {}).get("jobs_per_s")
            if a and b:
                out[f"vs_{other}_{procs}p_best_vs_best_ratio"] = round(a / b, 2)
    if pg and "latency" in pg:
        p50 = pg["latency"]["p50_ms"]
        out["latency_p50_ms"] = p50
        out["latency_p50_met"] = p50 < 20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--systems", default="rhizome-pg,rhizome-sqlite,pgqueuer,procrastinate")
    ap.add_argument(
        "--phases", default="enqueue,drain,latency", help="any of enqueue,drain,latency"
    )
    ap.add_argument(
        "--rounds", type=int, default=3, help="drain rounds (interleaved across systems)"
    )
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=5000, help="bulk enqueue batch size (CLI: 5000)")
    ap.add_argument("--single", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2, help="bulk enqueue samples (best is kept)")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="rhizome concurrency per process for the headline (0: its default)",
    )
    ap.add_argument("--sweep", default="10,32", help="other rhizome concurrencies to try")
    ap.add_argument("--pq-concurrency", type=int, default=10, help="Procrastinate concurrency")
    ap.add_argument("--pq-sweep", default="1,20", help="other Procrastinate concurrencies to try")
    ap.add_argument("--latency-jobs", type=int, default=400)
    ap.add_argument("--latency-gap-ms", type=float, default=15)
    ap.add_argument(
        "--latency-concurrency",
        type=int,
        default=0,
        help="0: rhizome's default, Procrastinate's --pq-concurrency",
    )
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=240, help="per drain, seconds")
    ap.add_argument("--out", default=None, help="JSON file (default results-<date>.json here)")
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument(
        "--no-vacuum",
        action="store_true",
        help="skip VACUUM ANALYZE after the enqueue (the planner then has no statistics)",
    )
    ap.add_argument(
        "--quiet-pct",
        type=float,
        default=15.0,
        help="before each phase wait until the machine is at most this busy",
    )
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="... for at most this long")
    ap.add_argument(
        "--rhizome-src",
        default=None,
        help="a rhizome src/ folder to benchmark instead of the installed (editable) one",
    )
    ap.add_argument("--rhizome-rev", default=None, help="label: the git revision of --rhizome-src")
    args = ap.parse_args()
    if args.rhizome_src:
        src = str(Path(args.rhizome_src).resolve())
        sys.path.insert(0, src)
        os.environ["PYTHONPATH"] = src + os.pathsep + os.environ.get("PYTHONPATH", "")
    args.sweep = [int(s) for s in args.sweep.split(",") if s.strip()]
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    args.pq_sweep = [int(s) for s in args.pq_sweep.split(",") if s.strip()]
    QUIET.update(pct=args.quiet_pct, wait=args.quiet_wait)
    OPTS["vacuum"] = not args.no_vacuum
    compile_rhizome()

    # SIGTERM (e.g. a timeout) still drops the databases and stops the workers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    tag = secrets.token_hex(4)
    base = args.admin_url.rsplit("/", 1)[0]
    dbs = {
        key: f"{key.replace('-', '_')}_bench_{tag}"
        for key in ("rhizome-pg", "pgqueuer", "procrastinate")
    }
    tmp = Path(tempfile.mkdtemp(prefix="rhizome-bench-"))
    logdir = tmp / "logs"
    logdir.mkdir()
    t_start = time.time()
    info = machine_info(args.admin_url)
    import rhizome
    from rhizome.config import Settings
    from rhizome.jobs.worker import WorkerConfig

    defaults = WorkerConfig()
    info["rhizome_code"] = {
        "path": str(Path(rhizome.__file__).parent),
        "default_concurrency": Settings.model_fields["concurrency"].default,
        "default_prefetch": getattr(defaults, "prefetch", None),
        "rev": args.rhizome_rev or ("working tree" if not args.rhizome_src else None),
    }
    log(
        f"machine: {info['cpus']} CPUs, {info['cpu_model']}, {info['ram_gib']} GiB, "
        f"PostgreSQL {info['postgresql']}, Python {info['python']}, {info['versions']}"
    )
    admin = psycopg.connect(args.admin_url, autocommit=True)
    results: dict[str, Any] = {}
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    try:
        systems: list[System] = []
        for key in wanted:
            if key in dbs:
                admin.execute(f"CREATE DATABASE {dbs[key]}")
            if key == "rhizome-pg":
                systems.append(RhizomePostgres(f"{base}/{dbs[key]}", tmp))
            elif key == "rhizome-sqlite":
                systems.append(RhizomeSqlite(tmp))
            elif key == "pgqueuer":
                systems.append(PgQueuerSystem(f"{base}/{dbs[key]}"))
            elif key == "procrastinate":
                systems.append(Procrastinate(f"{base}/{dbs[key]}"))
            else:
                raise SystemExit(f"unknown system {key}")
        results = run_all(systems, args, logdir)
    finally:
        for db in dbs.values():
            with contextlib.suppress(psycopg.Error):
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()
        if args.keep_logs:
            log(f"logs kept in {logdir}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    noisy = [
        f"{key} drain {d['procs']}x{d['concurrency']} ({d['background_cpu_pct']}%)"
        for key, res in results.items()
        for d in res.get("drains", [])
        if d.get("background_cpu_pct", 0) > args.quiet_pct
    ] + [
        f"{key} latency ({res['latency']['background_cpu_pct']}%)"
        for key, res in results.items()
        if res.get("latency", {}).get("background_cpu_pct", 0) > args.quiet_pct
    ]
    if noisy:
        log("WARNING: other work was running during: " + ", ".join(noisy))
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "phases_with_background_load": noisy,
        "machine": info,
        "parameters": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "results": results,
        "targets": targets(results, args),
        "duration_s": round(time.time() - t_start, 1),
    }
    out = (
        Path(args.out)
        if args.out
        else HERE / (f"results-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    )
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    log(f"results written to {out} ({report['duration_s']} s)")


def print_table(report: dict[str, Any]) -> None:
    def rate(res: dict[str, Any], procs: int) -> str:
        med = res.get(f"drain_{procs}p_jobs_per_s")
        if not med:
            return ""
        lo, hi = res.get(f"drain_{procs}p_range", [med, med])
        return f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})"

    head = (
        "| system | enqueue bulk jobs/s | enqueue single jobs/s | drain 1 proc jobs/s "
        "| drain 2 procs jobs/s | latency p50 / p95 / p99 ms |"
    )
    print("\n" + head)
    print("|---|---:|---:|---:|---:|---:|")
    for res in report["results"].values():
        lat = res.get("latency", {})
        print(
            f"| {res['name']} | {res.get('enqueue_bulk_jobs_per_s', 0):,.0f} "
            f"| {res.get('enqueue_single_jobs_per_s', 0):,.0f} "
            f"| {rate(res, 1)} | {rate(res, 2)} "
            f"| {lat.get('p50_ms')} / {lat.get('p95_ms')} / {lat.get('p99_ms')} |"
        )
    print("\ndrains (median of the rounds, min-max; concurrency 0 = the system's default):")
    for res in report["results"].values():
        for row in res.get("drain_summary", []):
            print(
                f"  {res['name']:<22} {row['procs']} proc c={row['concurrency'] or 'default':<8}"
                f" {row['median']:>8,.0f}  ({row['min']:,.0f}-{row['max']:,.0f})"
                f"  samples {row['samples']}"
            )
    print("\ntargets:", json.dumps(report["targets"], indent=2))


if __name__ == "__main__":
    main()
