"""The worker: claim loop, a pool of job threads, heartbeats/leases, reaper, shutdown.

One process runs one :class:`Worker` with ``concurrency`` job threads. Three helper
threads: *heartbeat* (extends the lease of all running jobs in one statement, reads back
pause/cancel requests, reaps expired leases and due retries), *completer* (writes buffered
completions in one statement), and the claim loop itself (the caller's thread).
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import signal
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from rhizome.errors import JobError, JobLostError, RhizomeError
from rhizome.jobs.context import JobContext, JobInterrupted, delete_checkpoints
from rhizome.jobs.joblog import KEEP_LINES, JobLogHandler
from rhizome.jobs.metrics import WorkerMetrics
from rhizome.jobs.model import ErrorType, Job
from rhizome.jobs.registry import Registry
from rhizome.jobs.retry import RetryPolicy, classify, user_message
from rhizome.jobs.store.base import SqlJobStore
from rhizome.storage import Storage

log = logging.getLogger("rhizome.jobs.worker")


@dataclass
class WorkerConfig:
    concurrency: int = 4
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 1.0
    """Fallback poll when no wake-up arrives (LISTEN/NOTIFY or data_version)."""
    burst: bool = False
    """Exit when nothing is due and nothing runs."""
    job_types: Sequence[str] | None = None
    """Only claim these job types (None: all registered)."""
    shutdown_grace_seconds: float = 20.0
    progress_interval: float = 0.5
    claim_batch: int = 50
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    log_lines: int = KEEP_LINES
    """Log lines kept per job (its handler's logging while it runs; the newest)."""


def new_worker_id() -> str:
    """Unique per process start: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(
        self,
        store: SqlJobStore,
        storage: Storage,
        registry: Registry,
        config: WorkerConfig | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.registry = registry
        self.config = config or WorkerConfig()
        self.id = new_worker_id()
        self._running: dict[str, JobContext] = {}
        self._running_lock = threading.Lock()
        self._busy = 0  # claimed and not finished (queued or running)
        self._slot_freed = threading.Event()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._done: queue.Queue[tuple[Job, dict[str, Any], JobContext] | None] = queue.Queue()
        self._pending_completions = 0
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.completed = 0
        self.failed = 0
        self.log = logging.LoggerAdapter(log, {"worker_id": self.id})
        self.job_logs = JobLogHandler(store, keep=self.config.log_lines)
        self.metrics = WorkerMetrics()

    # --- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs are asked to stop at their next safe point."""
        if not self._stop.is_set():
            self.log.info("shutdown requested: no new claims; releasing running jobs")
        self._stop.set()
        with self._running_lock:
            for ctx in self._running.values():
                ctx.request_shutdown()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    @property
    def running_job_ids(self) -> list[str]:
        with self._running_lock:
            return list(self._running)

    def run(self) -> None:
        """Run until :meth:`stop` (or, in burst mode, until nothing is due)."""
        cfg = self.config
        types = list(cfg.job_types) if cfg.job_types else self.registry.names()
        self.store.register_worker(
            self.id, socket.gethostname(), os.getpid(), cfg.concurrency, cfg.job_types
        )
        self.log.info(
            "worker started (concurrency %d, types %s)",
            cfg.concurrency,
            ",".join(types),
        )
        self.job_logs.install()
        self._start_thread("heartbeat", self._heartbeat_loop)
        self._start_thread("completer", self._completer_loop)
        for i in range(cfg.concurrency):
            self._start_thread(f"job-{i}", self._job_loop)
        try:
            self._claim_loop(types)
        finally:
            self._shutdown()

    def _start_thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"rhizome-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _claim_loop(self, types: list[str]) -> None:
        cfg = self.config
        while not self._stop.is_set():
            free = self._free_slots()
            claimed: list[Job] = []
            if free > 0:
                try:
                    claimed = self.store.claim(
                        self.id, min(free, cfg.claim_batch), cfg.lease_seconds, types
                    )
                except RhizomeError as exc:
                    self.log.error("claim failed: %s", exc)
                    self._stop.wait(min(cfg.poll_seconds, 5.0))
                    continue
                self.metrics.claimed(claimed)
                with self._running_lock:
                    self._busy += len(claimed)
                for job in claimed:
                    self._jobs.put(job)
                if claimed and len(claimed) == min(free, cfg.claim_batch):
                    continue  # more may be due right now
            if cfg.burst and not claimed and self._idle():
                self.log.info("burst mode: nothing due, exiting")
                return
            if self._free_slots() == 0 or (cfg.burst and not claimed):
                self._slot_freed.wait(cfg.poll_seconds)
                self._slot_freed.clear()
            elif not claimed:
                self.store.wait_for_jobs(cfg.poll_seconds)

    def _free_slots(self) -> int:
        with self._running_lock:
            return self.config.concurrency - self._busy

    def _idle(self) -> bool:
        with self._running_lock:
            return self._busy == 0 and self._pending_completions == 0

    def _shutdown(self) -> None:
        cfg = self.config
        self.stop()
        deadline = time.monotonic() + cfg.shutdown_grace_seconds
        while time.monotonic() < deadline:
            with self._running_lock:
                if self._busy == 0 and self._pending_completions == 0:
                    break
            time.sleep(0.02)
        # Jobs still running past the grace period are released to run again elsewhere.
        with self._running_lock:
            leftovers = list(self._running.items())
        for job_id, ctx in leftovers:
            ctx.mark_lost()
            try:
                self.store.stop(job_id, self.id, "release", "worker shut down before a safe point")
                self.log.warning(
                    "released job %s without a safe point", job_id, extra={"job_id": job_id}
                )
            except RhizomeError as exc:
                self.log.error("could not release job %s: %s", job_id, exc)
        while True:  # claimed but never started: hand back at once
            try:
                queued = self._jobs.get_nowait()
            except queue.Empty:
                break
            if queued is not None:
                self._execute(queued)
        for _ in range(cfg.concurrency):
            self._jobs.put(None)
        self._done.put(None)
        for thread in self._threads:
            if thread.name == "rhizome-completer":
                thread.join(timeout=5)
        self.job_logs.uninstall()
        try:
            self._store_metrics()
            self.store.retire_metrics(self.id)
        except RhizomeError as exc:
            self.log.error("could not store metrics: %s", exc)
        try:
            self.store.unregister_worker(self.id)
        except RhizomeError as exc:
            self.log.error("could not unregister worker: %s", exc)
        self._stopped.set()
        self.log.info("worker stopped (%d completed, %d failed)", self.completed, self.failed)

    # --- one job --------------------------------------------------------------------------

    def _job_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._execute(job)
            finally:
                with self._running_lock:
                    self._busy -= 1
                self._slot_freed.set()

    def _execute(self, job: Job) -> None:
        extra = {"job_id": job.id, "job_type": job.job_type, "worker_id": self.id}
        if self._stop.is_set():  # claimed, but the worker is stopping: hand it back untouched
            try:
                self.store.stop(job.id, self.id, "release", "worker shutting down before start")
            except RhizomeError as exc:
                self.log.error("could not release job: %s", exc, extra=extra)
            return
        try:
            job_type = self.registry.get(job.job_type)
            data = job_type.validate_input(job.input_data)
            stages = job_type.stages_for(data)
        except RhizomeError as exc:
            self._fail(job, exc, extra)
            return
        ctx = JobContext(
            job,
            stages,
            self.store,
            self.storage,
            self.id,
            progress_interval=self.config.progress_interval,
        )
        with self._running_lock:
            self._running[job.id] = ctx
            if self._stop.is_set():
                ctx.request_shutdown()
        began = time.monotonic()
        token = self.job_logs.enter(job, self.id, ctx.current_stage_name)
        outcome = "lost"
        try:
            output = job_type.handler(ctx, data) or {}
            with self._running_lock:
                self._pending_completions += 1
            self._done.put((job, output, ctx))
            outcome = "completed"
        except JobInterrupted as stop:
            self._stop_job(job, ctx, stop, extra)
            outcome = {"pause": "paused", "cancel": "cancelled"}.get(stop.action, "released")
        except JobLostError:
            self.log.warning("lost ownership of job; another worker continues it", extra=extra)
        except Exception as exc:
            if ctx.lost:
                self.log.warning("job failed after losing ownership: %s", exc, extra=extra)
            else:
                outcome = self._fail(job, exc, extra)
        finally:
            took = time.monotonic() - began
            self.job_logs.leave(token)
            self.metrics.run(job.job_type, took, outcome)
            with self._running_lock:
                self._running.pop(job.id, None)

    def _stop_job(
        self, job: Job, ctx: JobContext, stop: JobInterrupted, extra: dict[str, Any]
    ) -> None:
        stage = ctx.current_stage.name if ctx.current_stage else None
        try:
            self.store.stop(job.id, self.id, stop.action, stop.reason)
            self.log.info(
                "job stopped at a safe point: %s", stop.reason, extra={**extra, "stage": stage}
            )
        except RhizomeError as exc:
            self.log.error("could not %s job: %s", stop.action, exc, extra=extra)

    def _fail(self, job: Job, exc: BaseException, extra: dict[str, Any]) -> str:
        """Record a failure; returns the run's outcome: failed, retry or lost."""
        error_type = classify(exc)
        policy = self.config.retry
        retry_delay: float | None = None
        if policy.should_retry(error_type, job.retry_count, job.max_retries):
            retry_delay = policy.delay(job.retry_count + 1)
        technical = (
            "".join(traceback.format_exception(exc))
            if not isinstance(exc, JobError)
            else f"{type(exc).__name__}: {exc.message}"
        )
        self.failed += 1
        try:
            self.store.fail(
                job.id,
                self.id,
                error_type=error_type,
                last_error=technical,
                error_message=user_message(exc, error_type, will_retry=retry_delay is not None),
                retry_delay=retry_delay,
            )
        except JobLostError:
            self.log.warning("job failed after losing ownership", extra=extra)
            return "lost"
        except RhizomeError as store_exc:
            self.log.error("could not record failure: %s", store_exc, extra=extra)
            return "failed"
        if retry_delay is not None:
            self.metrics.retry_scheduled(job.job_type)
        level = logging.WARNING if error_type is ErrorType.TRANSIENT else logging.ERROR
        self.log.log(
            level,
            "job failed (%s)%s: %s",
            error_type.value,
            f"; retry in {retry_delay:.1f}s" if retry_delay is not None else "",
            exc,
            extra=extra,
        )
        return "retry" if retry_delay is not None else "failed"

    # --- helper threads ---------------------------------------------------------------------

    def _completer_loop(self) -> None:
        while True:
            item = self._done.get()
            if item is None:
                if self._pending_completions == 0:
                    return
                continue
            batch = [item]
            while len(batch) < 500:
                try:
                    more = self._done.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._done.put(None)
                    break
                batch.append(more)
            self._flush(batch)

    def _flush(self, batch: list[tuple[Job, dict[str, Any], JobContext]]) -> None:
        results = [(job.id, output) for job, output, _ in batch]
        done: set[str] = set()
        for attempt in range(5):
            try:
                done = set(self.store.complete(self.id, results))
                break
            except RhizomeError as exc:
                self.log.error("could not record completions (try %d): %s", attempt + 1, exc)
                time.sleep(min(2**attempt * 0.2, 3))
        for job, _, ctx in batch:
            if job.id in done:
                self.completed += 1
                if ctx.checkpoints_written or job.last_checkpoint_path:
                    try:
                        delete_checkpoints(self.storage, job)
                    except RhizomeError as exc:
                        self.log.warning(
                            "could not delete checkpoints: %s", exc, extra={"job_id": job.id}
                        )
            else:
                self.log.warning(
                    "completion not recorded (ownership lost)",
                    extra={"job_id": job.id, "job_type": job.job_type},
                )
        with self._running_lock:
            self._pending_completions -= len(batch)
        self._slot_freed.set()

    def _heartbeat_loop(self) -> None:
        cfg = self.config
        while not self._stopped.wait(cfg.heartbeat_seconds):
            self.beat()

    def beat(self) -> None:
        """One heartbeat: extend leases, read back control flags, reap."""
        try:
            # Snapshot the running jobs *before* the statement: their claims committed
            # before it started, so a job missing from its answer really was lost. (A job
            # registered after the statement began would look lost by mistake.)
            with self._running_lock:
                running = dict(self._running)
            controls = self.store.heartbeat(self.id, self.config.lease_seconds)
            for job_id, ctx in running.items():
                control = controls.get(job_id)
                if control is None:
                    ctx.mark_lost()
                else:
                    ctx.signal(control)
            self._store_metrics()
            expired = self.store.expire_leases()
            if expired:
                self.log.warning("reclaimed %d job(s) with expired leases", len(expired))
            self.store.promote_retries()
        except RhizomeError as exc:
            self.log.error("heartbeat failed: %s", exc)

    def _store_metrics(self) -> None:
        """Add this worker's metric increments to the database (see rhizome.jobs.metrics)."""
        deltas = self.metrics.take()
        try:
            self.store.add_metrics(self.id, deltas)
        except RhizomeError:
            self.metrics.put_back(deltas)
            raise
