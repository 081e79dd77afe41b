"""Helpers shared by the integration tests."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from rhizome.jobs.model import Job, JobStatus
from rhizome.jobs.registry import registry
from rhizome.jobs.retry import RetryPolicy
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.worker import Worker, WorkerConfig
from rhizome.storage import Storage

FAST = {
    "heartbeat_seconds": 0.2,
    "lease_seconds": 3.0,
    "poll_seconds": 0.05,
    "progress_interval": 0.0,
    "shutdown_grace_seconds": 10.0,
}


def make_worker(store: SqlJobStore, storage: Storage, **overrides: Any) -> Worker:
    cfg: dict[str, Any] = {**FAST, "retry": RetryPolicy(base_seconds=0.05, jitter=0.0)}
    cfg.update(overrides)
    return Worker(store, storage, registry, WorkerConfig(**cfg))


class Background:
    """A worker running in a thread of the test process."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, daemon=True)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "worker did not stop"


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM the processes still alive, wait for each to exit, kill those that do not."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_for(
    predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def wait_status(
    store: SqlJobStore, job_id: str, *statuses: JobStatus | str, timeout: float = 30.0
) -> Job:
    wanted = {JobStatus(s) for s in statuses}
    result: list[Job] = []

    def check() -> bool:
        job = store.get(job_id)
        result[:] = [job]
        return job.status in wanted

    wait_for(check, timeout, what=f"job {job_id} to become {sorted(wanted)}")
    return result[0]


def noop_digest(stages: int, units: int) -> str:
    """The digest an uninterrupted noop run produces."""
    digest = ""
    for stage in range(1, stages + 1):
        for unit in range(1, units + 1):
            digest = hashlib.sha256((digest + f"step-{stage}#{unit}").encode()).hexdigest()
    return digest


def noop_units(stages: int, units: int) -> list[str]:
    return [f"step-{s}#{u}" for s in range(1, stages + 1) for u in range(1, units + 1)]


class PauseAfterPuts:
    """Wraps a storage; asks for a pause right after the k-th checkpoint is written, so the
    job stops exactly at that safe point."""

    def __init__(
        self, inner: Storage, store: SqlJobStore, k: int, job_id: str | None = None
    ) -> None:
        self.inner, self.store, self.k, self.puts = inner, store, k, 0
        self.job_id = job_id
        self.url = inner.url

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)
        if "/stage-" not in key:
            return  # not a checkpoint
        self.puts += 1
        if self.puts == self.k:
            job_id = self.job_id or key.split("/")[1]  # jobs/{job_id}/stage-*.json
            self.store.request_pause(job_id, reason=f"pause at safe point {self.k}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
