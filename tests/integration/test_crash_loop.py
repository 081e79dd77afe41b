"""Chaos: a job that kills its worker every time it runs (as an OOM killer would) is not
retried forever. Real ``rhizome worker`` processes run a job type from a plugin module
(``--app``) whose handler SIGKILLs its own process in a named stage; the test restarts each
dead worker. Every takeover of the expired lease counts: after ``max_takeovers`` of them
(default 3, so 1 + 3 runs) the reaper fails the job as ``permanent`` instead of handing it
to a new worker, with no automatic retry and a message that names the stage where its
workers died. A normal job enqueued beside it completes, once. Run with the default and
with ``RHIZOME_MAX_TAKEOVERS=1``."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rhizome.jobs.model import ErrorType, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from tests.conftest import cli_env
from tests.helpers import noop_digest, stop_processes

pytestmark = pytest.mark.slow

DEFAULT_MAX_TAKEOVERS = 3  # the default of the max_takeovers setting
LEASE = 2.0
WORKERS = 2
STAGES, UNITS = 2, 3

PLUGIN = '''
"""A job type that kills its own worker (SIGKILL) in its stage "detonate"."""

import os
import signal

from pydantic import BaseModel

from rhizome.jobs import JobContext, Stage, registry


class Input(BaseModel):
    runs_file: str


@registry.job_type(
    "crash_loop",
    label="Crash loop",
    icon="zap",
    input_model=Input,
    stages=[Stage("prepare", "Preparing", 0, 50), Stage("detonate", "Detonating", 50, 100)],
)
def crash_loop(ctx: JobContext, data: Input) -> dict[str, int]:
    ctx.run_stage("prepare", lambda: 1)

    def detonate() -> int:
        with open(data.runs_file, "a") as out:  # one line per run that got here
            out.write(f"{os.getpid()}\\n")
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    ctx.run_stage("detonate", detonate)
    return {"survived": 1}
'''


def _timeline(store: SqlJobStore, job_id: str) -> str:
    return "\n".join(
        f"  {e.from_status} -> {e.to_status} [{e.stage}] {e.message} ({e.worker_id})"
        for e in store.events(job_id)
    )


@pytest.mark.parametrize("max_takeovers", [None, 1], ids=["default", "env-1"])
def test_a_job_that_kills_its_worker_fails_after_max_takeovers(
    store: SqlJobStore, db_url: str, tmp_path: Path, max_takeovers: int | None
) -> None:
    runs_expected = 1 + (max_takeovers or DEFAULT_MAX_TAKEOVERS)  # first run + takeovers
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "crash_loop_app.py").write_text(textwrap.dedent(PLUGIN))
    runs_file = tmp_path / "runs.txt"
    runs_file.touch()

    bomb = store.enqueue([NewJob("crash_loop", {"runs_file": str(runs_file)})])[0]
    normal = store.enqueue([NewJob("noop", {"stages": STAGES, "units": UNITS, "sleep_ms": 100})])[0]
    env = cli_env(
        db_url,
        tmp_path / "storage",
        RHIZOME_HEARTBEAT_SECONDS="0.4",
        RHIZOME_LEASE_SECONDS=str(LEASE),
        RHIZOME_POLL_SECONDS="0.2",
    )
    env.pop("RHIZOME_MAX_TAKEOVERS", None)  # the default
    if max_takeovers is not None:
        env["RHIZOME_MAX_TAKEOVERS"] = str(max_takeovers)

    logs: list[Path] = []

    def spawn() -> subprocess.Popen[bytes]:
        log = tmp_path / f"w{len(logs)}.log"
        logs.append(log)
        with open(log, "wb") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rhizome.cli",
                    "worker",
                    "-c",
                    "1",
                    "--app",
                    "crash_loop_app",
                ],
                env=env,
                cwd=app_dir,  # `-m` puts the folder with the plugin on sys.path
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def runs() -> int:
        return len(runs_file.read_text().split())

    def evidence() -> str:
        job = store.get(bomb.id)
        tails = "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-8:])
            for p in logs
        )
        return (
            f"crash_loop job {bomb.id}: {job.status.value}, error_type={job.error_type}, "
            f"attempt={job.attempt}, retry_count={job.retry_count}, "
            f"error_message={job.error_message!r}, next_retry_at={job.next_retry_at}\n"
            f"runs: {runs()}, deaths: {deaths}\ntimeline:\n{_timeline(store, bomb.id)}\n"
            f"worker logs (tails):\n{tails}"
        )

    procs = [spawn() for _ in range(WORKERS)]
    deaths: list[int] = []  # return codes of workers that died
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for i, proc in enumerate(procs):
                code = proc.poll()
                if code is not None:  # the job killed it: start a fresh one, as systemd would
                    deaths.append(code)
                    procs[i] = spawn()
            if runs() > runs_expected:
                pytest.fail(
                    f"the job ran a {runs()}th time: takeovers are not limited\n{evidence()}"
                )
            job = store.get(bomb.id)
            if job.status is JobStatus.FAILED and store.get(normal.id).status in (
                JobStatus.COMPLETED,
                JobStatus.FAILED,
            ):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the crash loop did not end within 120 s\n{evidence()}")
        # Not retried automatically: the job stays failed while workers keep running.
        time.sleep(3 * LEASE)
        assert all(p.poll() is None for p in procs), f"a worker died after the end\n{evidence()}"
    finally:
        stop_processes(procs)

    job = store.get(bomb.id)
    assert runs() == runs_expected, evidence()
    assert job.status is JobStatus.FAILED, evidence()
    assert job.error_type is ErrorType.PERMANENT, evidence()
    assert job.next_retry_at is None, evidence()  # no automatic retry
    message = job.error_message or ""
    assert "detonate" in message or "Detonating" in message, evidence()
    assert all(code == -signal.SIGKILL for code in deaths), evidence()
    assert len(deaths) == runs_expected, evidence()  # each run took its worker with it

    done = store.get(normal.id)
    assert done.status is JobStatus.COMPLETED, _timeline(store, normal.id)
    assert done.output_data is not None
    assert done.output_data["digest"] == noop_digest(STAGES, UNITS)
    completions = [e for e in store.events(normal.id) if e.to_status == "completed"]
    assert len(completions) == 1, _timeline(store, normal.id)
