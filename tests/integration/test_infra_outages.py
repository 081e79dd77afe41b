"""Chaos: the database goes away under real ``rhizome worker`` processes. An outage of the
infrastructure is not the job's fault: it never fails a job, leaves none stuck in
``processing``, and every job still completes exactly once from verified checkpoints.

- PostgreSQL: a private cluster (tests/pgcluster.py: ``initdb`` + ``pg_ctl`` on a free
  port, as a non-root user) restarted with ``pg_ctl restart -m fast`` and ``-m immediate``
  in the middle of a drain of jobs that checkpoint;
- SQLite: another process holds the database locked (``BEGIN EXCLUSIVE``) for 40 s, longer
  than the busy timeout, in the middle of a drain;
- a worker started while PostgreSQL is down waits, says so in its log ("database
  unavailable"), and works once the database is up; with ``--exit-if-unavailable`` it
  exits at once with code 2 and a message.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rhizome.errors import DatabaseUnavailableError
from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from tests.conftest import IN_CI, cli_env, open_product_store, run_cli, start_worker
from tests.helpers import noop_digest, stop_processes, wait_for, wait_status
from tests.pgcluster import PgCluster, available, pg_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STAGES, UNITS, SLEEP_MS = 2, 2, 5
LEASE = 5.0
WORKERS, CONCURRENCY = 3, 4
LOCK_SECONDS = 40  # the number: longer than SQLite's busy timeout (30 s)
DRAIN_SECONDS = 100  # after the outage ended: every job settled by then
STALLED_SECONDS = 30  # no job changed status for this long (6 leases): the rest is stuck


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster for this module (the tests stop and restart it)."""
    why = available()
    if why is not None:
        if IN_CI:
            pytest.fail(f"a private PostgreSQL cluster is required in CI: {why}")
        pytest.skip(why)
    with pg_cluster() as pg:
        yield pg


@pytest.fixture
def cluster_url(cluster: PgCluster) -> str:
    """A fresh, migrated database on the private cluster (started, should a test before
    have left it stopped)."""
    if not cluster.running():
        cluster.start()
    url = cluster.create_database(f"rhizome_{secrets.token_hex(4)}")
    open_product_store(url).close()  # migrate
    return url


# --- a drain with an outage in the middle ---------------------------------------------------


def _worker_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        db_url,
        tmp_path / "storage",
        RHIZOME_HEARTBEAT_SECONDS="0.5",
        RHIZOME_LEASE_SECONDS=str(LEASE),
        RHIZOME_POLL_SECONDS="0.2",
        RHIZOME_LOG_LEVEL="INFO",
    )


class Drain:
    """``jobs`` noop jobs that checkpoint after every unit, drained by real worker
    processes; :meth:`run` brings an outage in once a quarter of them completed."""

    def __init__(self, store: SqlJobStore, db_url: str, tmp_path: Path, jobs: int) -> None:
        self.store, self.tmp_path, self.jobs = store, tmp_path, jobs
        self.env = _worker_env(db_url, tmp_path)
        self.logs = [tmp_path / f"w{i}.log" for i in range(WORKERS)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.exit_codes: list[int | None] = []
        self.at_outage: dict[tuple[str, str], int] = {}

    def counts(self) -> dict[tuple[str, str], int]:
        """The store's counts; the test's own connections see the outage too (a pooled
        connection the restart closed fails once): retried."""
        for _ in range(100):
            try:
                return self.store.count_jobs()
            except DatabaseUnavailableError:
                time.sleep(0.5)
        return self.store.count_jobs()

    def done(self) -> int:
        return self.counts().get(("completed", "noop"), 0)

    def run(self, outage: Callable[[], None]) -> None:
        self.store.enqueue(
            [
                NewJob("noop", {"stages": STAGES, "units": UNITS, "sleep_ms": SLEEP_MS})
                for _ in range(self.jobs)
            ]
        )
        self.procs = [
            start_worker(self.env, "--concurrency", str(CONCURRENCY), log=log) for log in self.logs
        ]
        try:
            try:
                wait_for(lambda: self.done() >= self.jobs // 4, timeout=120, interval=0.05)
            except AssertionError:
                raise AssertionError(
                    f"a quarter of the jobs did not complete: {self.counts()}\n{self.logs_tail()}"
                ) from None
            self.at_outage = self.counts()
            outage()
            deadline = time.monotonic() + DRAIN_SECONDS
            last, moved = self.counts(), time.monotonic()
            while time.monotonic() < deadline:
                counts = self.counts()
                if not any(s in ("pending", "processing") for s, _ in counts):
                    break  # settled (some may have failed)
                if counts != last:
                    last, moved = counts, time.monotonic()
                elif time.monotonic() - moved > STALLED_SECONDS:
                    break  # nothing moves any more: what is left is stuck
                time.sleep(0.2)
            self.exit_codes = [p.poll() for p in self.procs]  # None: still alive
        finally:
            stop_processes(self.procs)

    def logs_tail(self, lines: int = 10) -> str:
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            picked = [ln for ln in text.splitlines() if " INFO " not in ln] or text.splitlines()
            out.append(f"--- {log.name}\n" + "\n".join(picked[-lines:]))
        return "\n".join(out)

    def check(self) -> None:
        """0 failed, 0 stuck, 0 lost, each completed exactly once, 0 torn checkpoints, and
        every worker lived through the outage. Fails with the evidence."""
        store, problems = self.store, []
        done_before = self.at_outage.get(("completed", "noop"), 0)
        if done_before >= self.jobs:
            problems.append(f"the outage came after the drain ({done_before} done): not mid-run")
        dead = [(i, code) for i, code in enumerate(self.exit_codes) if code is not None]
        if dead:
            problems.append(f"worker(s) exited during the run (index, code): {dead}")
        counts = self.counts()
        if counts != {("completed", "noop"): self.jobs}:
            problems.append(f"counts {counts} (before the outage: {self.at_outage})")
        jobs = store.list_jobs(limit=self.jobs + 10)
        assert len(jobs) == self.jobs
        digest = noop_digest(STAGES, UNITS)
        torn: list[str] = []
        taken_over = 0
        for job in jobs:
            events = store.events(job.id)
            taken_over += any("lease expired" in (e.message or "") for e in events)
            completions = sum(e.to_status == "completed" for e in events)
            torn += [
                f"{job.id}: {e.message}"
                for e in events
                if "hash does not match" in (e.message or "") or "is missing" in (e.message or "")
            ]
            if job.status is JobStatus.FAILED:
                error = (job.last_error or "").strip().splitlines()[-1:] or [""]
                problems.append(
                    f"FAILED {job.id} ({job.error_type}, retry_count {job.retry_count}, "
                    f"next retry {job.next_retry_at}, stage {job.stage}): {job.error_message!r}"
                    f" / {error[0]!r}"
                )
            elif job.status is JobStatus.PROCESSING:
                problems.append(
                    f"STUCK {job.id} processing by {job.worker_id}, lease until "
                    f"{job.lease_expires_at}, heartbeat {job.heartbeat_at}, stage {job.stage}; "
                    f"last events: {[e.message for e in events[-3:]]}"
                )
            elif job.status is not JobStatus.COMPLETED:
                problems.append(f"{job.status.value.upper()} {job.id}: {job.error_message!r}")
            elif completions != 1:
                problems.append(f"{job.id} completed {completions} times")
            elif job.output_data is None or job.output_data.get("digest") != digest:
                problems.append(f"{job.id} completed with a wrong digest: {job.output_data}")
        if torn:
            problems.append(f"{len(torn)} checkpoint(s) did not verify: {torn[:10]}")
        felt = [
            line
            for log in self.logs
            for line in log.read_text(errors="replace").splitlines()
            if any(k in line for k in ("unavailable", "Lost the connection", "database is locked"))
        ]
        if not felt:  # the outage must have hit the workers, or this test proved nothing
            problems.append("no worker noticed the outage (no 'unavailable' line in any log)")
        print(  # shown with -s / -rP: what the outage did
            f"outage: {self.at_outage} at its start; {len(felt)} worker log line(s) about it; "
            f"{sum('set aside' in ln for ln in felt)} job(s) set aside; {taken_over} job(s) "
            f"taken over after their lease ran out; "
            f"{sum('refused' in ln for log in self.logs for ln in log.read_text().splitlines())}"
            " late result(s) refused"
        )
        assert not problems, "\n".join(problems[:40]) + "\nworker logs:\n" + self.logs_tail()


# --- PostgreSQL restarted mid-run -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate", "down-longer-than-the-lease"])
def test_postgres_restart_mid_drain(
    cluster: PgCluster, cluster_url: str, tmp_path: Path, mode: str
) -> None:
    """``fast`` and ``immediate``: ``pg_ctl restart -m``; the third case stops the server
    (immediate) for three leases, so every lease runs out while the workers hold results
    they could not record: those are refused and the jobs' new owners finish them."""
    store = open_product_store(cluster_url)
    try:
        drain = Drain(store, cluster_url, tmp_path, jobs=600)

        def outage() -> None:
            if mode in ("fast", "immediate"):
                cluster.restart(mode)  # type: ignore[arg-type]
            else:
                cluster.stop("immediate")
                time.sleep(3 * LEASE)
                cluster.start()

        drain.run(outage)
        drain.check()
    finally:
        store.close()


# --- SQLite locked by another process -------------------------------------------------------

LOCKER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("ROLLBACK")
    print("released", flush=True)
    """
)


def test_sqlite_locked_by_another_process_mid_drain(tmp_path: Path) -> None:
    path = tmp_path / "rhizome.db"
    url = f"sqlite:///{path}"
    store = open_product_store(url)
    try:
        drain = Drain(store, url, tmp_path, jobs=600)
        held: list[str] = []
        done_when_locked: list[int] = []

        def lock() -> None:
            locker = subprocess.Popen(
                [sys.executable, "-c", LOCKER, str(path), str(LOCK_SECONDS)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert locker.stdout is not None
            held.append(locker.stdout.readline().strip())  # the lock is taken
            done_when_locked.append(drain.done())
            try:
                locker.wait(timeout=LOCK_SECONDS + 60)
            finally:
                if locker.poll() is None:
                    locker.kill()
            held.append(locker.stdout.read().strip())

        drain.run(lock)
        assert held == ["locked", "released"], held
        assert done_when_locked[0] < drain.jobs, "the lock came after the drain: not mid-run"
        drain.check()
    finally:
        store.close()


# --- a worker started while PostgreSQL is down ----------------------------------------------


def test_worker_started_while_postgres_is_down_waits_then_works(
    cluster: PgCluster, cluster_url: str, tmp_path: Path
) -> None:
    store = open_product_store(cluster_url)
    job = store.enqueue([NewJob("noop", {"stages": STAGES, "units": UNITS})])[0]
    store.close()
    cluster.stop("fast")
    log = tmp_path / "worker.log"
    worker = start_worker(_worker_env(cluster_url, tmp_path), "--concurrency", "1", log=log)

    def text() -> str:
        return log.read_text(errors="replace")

    try:
        wait_for(
            lambda: "database unavailable" in text().lower() or worker.poll() is not None,
            timeout=60,
            what="the worker to say the database is unavailable",
        )
        assert worker.poll() is None, f"the worker exited ({worker.returncode}):\n{text()}"
        time.sleep(3)  # it keeps waiting and retrying
        assert worker.poll() is None, f"the worker gave up ({worker.returncode}):\n{text()}"
        cluster.start()
        store = open_product_store(cluster_url)
        try:
            done = wait_status(store, job.id, "completed", "failed", timeout=60)
            assert done.status is JobStatus.COMPLETED, (done.error_message, text())
            assert done.output_data is not None
            assert done.output_data["digest"] == noop_digest(STAGES, UNITS)
        finally:
            store.close()
        assert worker.poll() is None, text()
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        if not cluster.running():
            cluster.start()
    assert worker.returncode == 0, text()


def test_exit_if_unavailable(cluster: PgCluster, cluster_url: str, tmp_path: Path) -> None:
    cluster.stop("fast")
    try:
        result = run_cli(
            ["worker", "--exit-if-unavailable"], _worker_env(cluster_url, tmp_path), timeout=60
        )
    finally:
        cluster.start()
    output = result.stdout + result.stderr
    assert "no such option" not in output.lower(), output
    assert result.returncode == 2, output
    assert "unavailable" in output.lower() or "cannot connect" in output.lower(), output
