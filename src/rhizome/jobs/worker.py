"""The worker: claim loop, a pool of job threads, heartbeats/leases, reaper, shutdown.

One process runs one :class:`Worker` with ``concurrency`` job threads. Three helper
threads: *heartbeat* (extends the lease of every job the worker holds in one statement,
reads back pause/cancel requests, reaps expired leases and due retries), *completer*
(writes buffered completions in one statement), and the claim loop itself (the caller's
thread).

**Prefetch.** A claim is a round trip to the database, so claiming only for the slots
that are free caps a worker at about ``concurrency`` ÷ round trip jobs per second when
jobs are short. While jobs are short (they ran for less than ``prefetch_below_seconds`` on
average, and slots keep freeing up), the claim loop claims up to ``prefetch`` jobs more
than it has slots (no more than the slots start within ``prefetch_below_seconds``) and
holds them, claimed, until a slot frees. A held job is a claimed job in every respect:
the heartbeat renews its lease and reads back its pause/cancel requests (honoured before
it starts), a job missing from the heartbeat's answer is dropped, a paused queue hands
held jobs back, and on shutdown they are released at once. When jobs turn long (no slot
freed for ``prefetch_below_seconds`` while jobs are held), held jobs are handed back so
that other workers can run them, and prefetch stops until jobs are short again.

**Infrastructure failures are not job failures.** When the database cannot be reached,
the worker stops claiming and keeps what it could not record (completions, failures,
pauses) in memory — no more than the jobs it had claimed — and records them, oldest
first, once the database answers again (backoff up to ``unavailable_backoff_max``). A job
whose handler ran into the outage (a progress or checkpoint write) is released to
continue from its last checkpoint, never failed. If a job's lease ran out meanwhile and
another worker took it over, the late result is refused and dropped. A job whose
*storage* failed is set aside for a while (its own backoff, ``storage_backoff_*``; not
counted as a retry) and continues from its last checkpoint. The heartbeat extends only
the leases of the jobs the worker runs, holds or still has to record, by id.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from rhizome.errors import DatabaseUnavailableError, JobError, JobLostError, RhizomeError
from rhizome.jobs.context import JobContext, JobInterrupted, delete_checkpoints
from rhizome.jobs.joblog import KEEP_LINES, JobLogHandler
from rhizome.jobs.metrics import WorkerMetrics
from rhizome.jobs.model import DEFAULT_MAX_TAKEOVERS, Control, ErrorType, Job
from rhizome.jobs.registry import Registry
from rhizome.jobs.retention import prune_due
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
    claim_batch: int = 100
    """The most jobs one claim statement takes."""
    prefetch: int = 64
    """The most jobs claimed ahead of free slots and held until one frees (0: claim only
    for free slots). Used only while jobs are short; see the module's docstring."""
    prefetch_below_seconds: float = 0.1
    """Prefetch while jobs run shorter than this (moving average) and slots free up at
    least this often; hold no more jobs than the slots start in this time at the recent
    run time; hand held jobs back when no slot freed for this long."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_takeovers: int = DEFAULT_MAX_TAKEOVERS
    """Takeovers of an expired lease before the reaper fails a job as a crash loop."""
    time_limits: Mapping[str, float] = field(default_factory=dict)
    """Per job type, seconds one run may take (overrides the type's own limit)."""
    memory_limits: Mapping[str, int] = field(default_factory=dict)
    """Per job type, MB for the child process a run reads untrusted input in (overrides
    the type's own limit)."""
    unavailable_backoff_max: float = 10.0
    """Longest wait between tries while the database cannot be reached."""
    storage_backoff_base: float = 5.0
    storage_backoff_cap: float = 300.0
    """A job whose storage failed waits base * 2**n seconds (n: earlier such failures),
    at most cap, then continues from its last checkpoint."""
    log_lines: int = KEEP_LINES
    """Log lines kept per job (its handler's logging while it runs; the newest)."""


def new_worker_id() -> str:
    """Unique per process start: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class _Held:
    """A claimed job that waits for a free slot. Its lease is renewed by the heartbeat
    like a running job's; the flags are what the heartbeat read back for it."""

    job: Job
    pause: bool = False
    cancel: bool = False
    lost: bool = False


@dataclass
class _Record:
    """An end of a run still to be written: ``complete`` (with ``output``), ``stop``
    (``action`` pause/cancel/release, ``reason``, ``delay``) or ``fail`` (``failure``:
    the arguments of :meth:`SqlJobStore.fail`)."""

    job: Job
    kind: str
    output: dict[str, Any] | None = None
    ctx: JobContext | None = None
    action: str = ""
    reason: str = ""
    delay: float = 0.0
    failure: dict[str, Any] | None = None


def _requested(held: _Held) -> tuple[str, str] | None:
    """The stop a held job's pending request asks for: (action, reason), or None."""
    if held.cancel:
        return "cancel", "cancelled before it started"
    if held.pause:
        return "pause", "paused before it started"
    return None


_AVG_WEIGHT = 0.2
"""Weight of the newest run in the moving average of run times."""


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
        self._held: dict[str, _Held] = {}
        """Claimed, not started, oldest first (prefetched or waiting for a job thread)."""
        self._ready = threading.Condition(self._running_lock)
        self._busy = 0  # claimed and not finished (held or running)
        self._closing = False  # job threads exit once nothing is held
        self._slot_freed = threading.Event()
        self._done: queue.Queue[_Record | None] = queue.Queue()
        self._pending_completions = 0  # records queued for the recorder and not yet written
        self._unrecorded: dict[str, _Record] = {}
        """Ends of runs the recorder still has to write, by job id (heartbeated)."""
        self._db_down = threading.Event()
        """Set while the recorder cannot reach the database: no claims meanwhile."""
        self._abandon = threading.Event()
        """Set at shutdown after the grace period: stop waiting for the database."""
        self._last_start = float("-inf")
        self._avg_run: float | None = None
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.completed = 0
        self.failed = 0
        self.released_prefetched = 0
        self.claims = 0  # claim round trips
        self.claimed = 0  # jobs they brought
        self.log: logging.LoggerAdapter[logging.Logger] = _FieldsAdapter(
            log, {"worker_id": self.id}
        )
        self.job_logs = JobLogHandler(store, keep=self.config.log_lines)
        self.metrics = WorkerMetrics()

    # --- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs are asked to stop at their next safe point."""
        if not self._stop.is_set():
            self.log.info("shutdown requested: no new claims; releasing running jobs")
        self._stop.set()
        self._slot_freed.set()
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

    @property
    def held_job_ids(self) -> list[str]:
        """Jobs claimed by this worker that have not started yet (oldest first)."""
        with self._running_lock:
            return list(self._held)

    def run(self) -> None:
        """Run until :meth:`stop` (or, in burst mode, until nothing is due)."""
        cfg = self.config
        types = list(cfg.job_types) if cfg.job_types else self.registry.names()
        self.store.register_worker(  # the types it runs: `jobs enqueue` checks them
            self.id, socket.gethostname(), os.getpid(), cfg.concurrency, types
        )
        self.log.info(
            "worker started (concurrency %d, prefetch %d, types %s)",
            cfg.concurrency,
            cfg.prefetch,
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

    # --- claiming -------------------------------------------------------------------------

    def _claim_loop(self, types: list[str]) -> None:
        cfg = self.config
        outage = _Outage(self.log, "claims", cfg.unavailable_backoff_max)
        while not self._stop.is_set():
            self._slot_freed.clear()
            self._hand_back_stuck()
            with self._running_lock:
                want = min(self._claim_size(), cfg.claim_batch)
            claimed: list[Job] = []
            if want > 0 and self._db_down.is_set():
                # Results wait to be recorded: claim nothing more until the database is
                # back (this bounds what the worker keeps in memory).
                self._stop.wait(min(cfg.poll_seconds, 1.0))
                continue
            if want > 0:
                try:
                    claimed = self.store.claim(
                        self.id, want, cfg.lease_seconds, types, max_takeovers=cfg.max_takeovers
                    )
                except DatabaseUnavailableError as exc:
                    self._stop.wait(outage.failed(exc))
                    continue
                except RhizomeError as exc:
                    self.log.error("claim failed: %s", exc)
                    self._stop.wait(min(cfg.poll_seconds, 5.0))
                    continue
                outage.ok()
                self.claims += 1
                self.claimed += len(claimed)
                self.metrics.claimed(claimed)
                self._hold(claimed)
                if claimed and len(claimed) == want:
                    continue  # more may be due right now
            if cfg.burst and not claimed and self._idle():
                self.log.info("burst mode: nothing due, exiting")
                return
            if want == 0 or (cfg.burst and not claimed):
                with self._running_lock:
                    holding = bool(self._held)
                timeout = cfg.poll_seconds
                if holding:  # come back in time to hand held jobs back if slots stay busy
                    timeout = min(timeout, max(cfg.prefetch_below_seconds, 0.01))
                self._slot_freed.wait(timeout)
            elif not claimed:
                try:
                    self.store.wait_for_jobs(cfg.poll_seconds)
                except DatabaseUnavailableError as exc:
                    self._stop.wait(outage.failed(exc))

    def _prefetching(self) -> bool:
        """Claim ahead of free slots? Only while jobs are short: their average run time
        is under ``prefetch_below_seconds`` and a job started within that time."""
        cfg = self.config
        return (
            cfg.prefetch > 0
            and self._avg_run is not None
            and self._avg_run < cfg.prefetch_below_seconds
            and time.monotonic() - self._last_start < cfg.prefetch_below_seconds
        )

    def _prefetch_limit(self) -> int:
        """How many jobs to hold now: ``prefetch``, but no more than the slots can start
        within ``prefetch_below_seconds`` at the recent run time (so a held job does not
        wait longer than that for its slot)."""
        cfg = self.config
        avg = max(self._avg_run or 0.0, 1e-6)
        return max(min(cfg.prefetch, int(cfg.concurrency * cfg.prefetch_below_seconds / avg)), 1)

    def _claim_size(self) -> int:
        """How many jobs to claim now (called with the lock held); 0 when a claim is not
        worth a round trip yet."""
        cfg = self.config
        if not self._prefetching():
            return max(cfg.concurrency - self._busy, 0)
        limit = self._prefetch_limit()
        if len(self._held) > limit // 2:
            return 0  # enough ready: wait until a bigger claim is worth it
        return max(cfg.concurrency + limit - self._busy, 0)

    def _hold(self, claimed: list[Job]) -> None:
        if not claimed:
            return
        with self._ready:
            for job in claimed:
                # A job released with a request still pending (e.g. at a shutdown) keeps
                # it: honoured before it starts.
                self._held[job.id] = _Held(job, job.pause_requested, job.cancel_requested)
            self._busy += len(claimed)
            self._ready.notify(len(claimed))

    def _take(self) -> _Held | None:
        """The oldest held job, for a job thread (blocks; None: the worker is closing)."""
        with self._ready:
            while not self._held:
                if self._closing:
                    return None
                self._ready.wait()
            held = self._held.pop(next(iter(self._held)))
            self._last_start = time.monotonic()
            return held

    def _hand_back_stuck(self) -> None:
        """Jobs are held but no slot freed for ``prefetch_below_seconds``: the slots run
        long jobs, so hand the held ones back for other workers to take."""
        cfg = self.config
        with self._running_lock:
            if not self._held or self._busy - len(self._held) < cfg.concurrency:
                return
            if time.monotonic() - self._last_start < cfg.prefetch_below_seconds:
                return
            stuck = list(self._held.values())
            self._held.clear()
            self._busy -= len(stuck)
        self._release_held(stuck, "handed back unstarted: all slots busy with long jobs")

    def _release_held(self, held: list[_Held], reason: str) -> None:
        """Hand held jobs back (pending again), or pause/cancel those with a request."""
        for h in held:
            if h.lost:
                continue
            action, why = _requested(h) or ("release", reason)
            self._record_stop(h.job, action, why)
            self.released_prefetched += 1
        if held:
            self._slot_freed.set()

    def _idle(self) -> bool:
        with self._running_lock:
            return self._busy == 0 and self._pending_completions == 0

    def _shutdown(self) -> None:
        cfg = self.config
        self.stop()
        # Claimed but not started: hand back at once.
        with self._running_lock:
            held = list(self._held.values())
            self._held.clear()
            self._busy -= len(held)
        self._release_held(held, "worker shutting down before start")
        deadline = time.monotonic() + cfg.shutdown_grace_seconds
        while time.monotonic() < deadline:
            with self._running_lock:
                if self._busy == 0 and self._pending_completions == 0:
                    break
            time.sleep(0.02)
        self._abandon.set()  # the recorder stops waiting for an unreachable database
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
            except JobLostError:  # set aside or taken over meanwhile: nothing to hand back
                self.log.info(
                    "job %s was no longer this worker's", job_id, extra={"job_id": job_id}
                )
            except RhizomeError as exc:  # its lease runs out; another worker takes it over
                self.log.warning(
                    "could not release job %s: %s", job_id, exc, extra={"job_id": job_id}
                )
        with self._ready:
            held = list(self._held.values())  # claimed during the grace period (none expected)
            self._held.clear()
            self._closing = True
            self._ready.notify_all()
        self._release_held(held, "worker shutting down before start")
        self._done.put(None)
        for thread in self._threads:
            if thread.name == "rhizome-completer":
                thread.join(timeout=5)
        with self._running_lock:
            lost = len(self._unrecorded)
        if lost:
            self.log.error(
                "stopping with %d job end(s) not recorded (database unavailable); those jobs "
                "run again from their last checkpoint once their leases run out",
                lost,
            )
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
        self._join_threads()
        self.log.info(
            "worker stopped (%d completed, %d failed; %d jobs in %d claims)",
            self.completed,
            self.failed,
            self.claimed,
            self.claims,
        )

    def _join_threads(self) -> None:
        """Wait for the heartbeat (a beat may be under way) and the job threads, so that
        nothing uses the store once the caller closes it. A job thread still inside a
        handler that ignored the grace period is not waited for long: its job was
        released, and the store leaves open the connections of threads still running."""
        me = threading.current_thread()
        deadline = time.monotonic() + max(self.config.lease_seconds, 5.0)
        for thread in self._threads:
            if thread is me:
                continue
            patience = deadline - time.monotonic()
            if thread.name.startswith("rhizome-job-"):
                patience = min(patience, 1.0)
            thread.join(timeout=max(patience, 0.0))

    # --- one job --------------------------------------------------------------------------

    def _job_loop(self) -> None:
        while True:
            held = self._take()
            if held is None:
                return
            try:
                self._start(held)
            finally:
                with self._running_lock:
                    self._busy -= 1
                    wake = self._claim_size() > 0
                if wake:
                    self._slot_freed.set()

    def _start(self, held: _Held) -> None:
        """Start a held job, unless the heartbeat said meanwhile that it was lost, or
        that a pause or cancel was requested: then it stops before it starts."""
        job = held.job
        extra = {"job_id": job.id, "job_type": job.job_type, "worker_id": self.id}
        if held.lost:
            self.log.warning("claimed job was taken away before it started", extra=extra)
            return
        requested = _requested(held)
        if requested is not None:
            action, reason = requested
            self._record_stop(job, action, reason)
            return
        self._execute(job)

    def _execute(self, job: Job) -> None:
        extra = {"job_id": job.id, "job_type": job.job_type, "worker_id": self.id}
        if self._stop.is_set():  # claimed, but the worker is stopping: hand it back untouched
            self._record_stop(job, "release", "worker shutting down before start")
            return
        fresh = self._after_previous_run(job, extra)
        if fresh is None:
            return
        job = fresh
        try:
            job_type = self.registry.get(job.job_type)
            data = job_type.validate_input(job.input_data)
            stages = job_type.stages_for(data)
        except RhizomeError as exc:
            self._fail(job, exc, extra)
            return
        time_limit, memory_limit = job_type.limits(
            self.config.time_limits, self.config.memory_limits
        )
        ctx = JobContext(
            job,
            stages,
            self.store,
            self.storage,
            self.id,
            progress_interval=self.config.progress_interval,
            time_limit=time_limit,
            memory_limit_mb=memory_limit,
        )
        with self._running_lock:
            self._running[job.id] = ctx
            if self._stop.is_set():
                ctx.request_shutdown()
        began = time.monotonic()
        token = self.job_logs.enter(job, self.id, ctx.current_stage_name)
        outcome = "lost"
        try:
            with self.store.fence(job.id, self.id):  # late writes refused after a takeover
                output = job_type.handler(ctx, data) or {}
            self._queue_record(_Record(job, "complete", output=output, ctx=ctx))
            outcome = "completed"
        except JobInterrupted as stop:
            self._stop_job(job, ctx, stop, extra)
            outcome = {"pause": "paused", "cancel": "cancelled"}.get(stop.action, "released")
        except JobLostError:
            self.log.warning("lost ownership of job; another worker continues it", extra=extra)
        except Exception as exc:
            if ctx.lost:
                self.log.warning("job failed after losing ownership: %s", exc, extra=extra)
            elif isinstance(exc, RhizomeError) and exc.infrastructure:
                outcome = self._set_aside(job, ctx, exc, extra)
            else:
                outcome = self._fail(job, exc, extra)
        finally:
            took = time.monotonic() - began
            self.job_logs.leave(token)
            self.metrics.run(job.job_type, took, outcome)
            with self._running_lock:
                if self._running.get(job.id) is ctx:
                    del self._running[job.id]
                avg = self._avg_run
                self._avg_run = took if avg is None else avg + _AVG_WEIGHT * (took - avg)

    def _after_previous_run(self, job: Job, extra: dict[str, Any]) -> Job | None:
        """This worker may claim a job it still runs: the lease ran out while the worker
        was too busy to heartbeat, and its own claim took the job over. Both runs would
        pass the ownership checks (same worker id), and the old one could remove the
        checkpoint the new one resumes from. So the old run is told it lost the job, the
        new one starts only once it stopped, and from the row as it left it (None: the
        old run finished the job meanwhile)."""
        with self._running_lock:
            previous = self._running.get(job.id)
        if previous is None:
            return job
        previous.mark_lost()
        self.log.warning("re-claimed a job this worker still runs; waiting for it", extra=extra)
        deadline = time.monotonic() + 4 * max(self.config.lease_seconds, 5.0)
        while time.monotonic() < deadline:
            with self._running_lock:
                if self._running.get(job.id) is not previous:
                    break
            time.sleep(0.01)
        try:
            fresh = self.store.get(job.id)
        except RhizomeError:
            return job
        if fresh.status.value != "processing" or fresh.worker_id != self.id:
            return None
        return fresh

    def _stop_job(
        self, job: Job, ctx: JobContext, stop: JobInterrupted, extra: dict[str, Any]
    ) -> None:
        stage = ctx.current_stage.name if ctx.current_stage else None
        if self._record_stop(job, stop.action, stop.reason):
            self.log.info(
                "job stopped at a safe point: %s", stop.reason, extra={**extra, "stage": stage}
            )

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
        failure: dict[str, Any] = {
            "error_type": error_type,
            "last_error": technical,
            "error_message": user_message(exc, error_type, will_retry=retry_delay is not None),
            "retry_delay": retry_delay,
        }
        try:
            self.store.fail(job.id, self.id, **failure)
        except JobLostError:
            self.log.warning("job failed after losing ownership", extra=extra)
            return "lost"
        except DatabaseUnavailableError as store_exc:
            self.log.warning("failure recorded later: %s", store_exc, extra=extra)
            self._queue_record(_Record(job, "fail", failure=failure))
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

    # --- recording the ends of runs ----------------------------------------------------

    def _queue_record(self, record: _Record) -> None:
        """Hand an end of a run to the recorder thread (completions always go this way;
        other ends only when the database was unavailable for them)."""
        with self._running_lock:
            self._pending_completions += 1
            self._unrecorded[record.job.id] = record
        self._done.put(record)

    def _record_stop(self, job: Job, action: str, reason: str, *, delay: float = 0.0) -> bool:
        """Pause, cancel or release a job this worker owns; when the database is not
        there, the recorder writes it later. False: the job is no longer ours."""
        extra = {"job_id": job.id, "job_type": job.job_type, "worker_id": self.id}
        try:
            self.store.stop(job.id, self.id, action, reason, delay=delay)
        except JobLostError:
            return False
        except DatabaseUnavailableError as exc:
            self.log.warning("%s recorded later: %s", action, exc, extra=extra)
            self._queue_record(_Record(job, "stop", action=action, reason=reason, delay=delay))
        except RhizomeError as exc:
            self.log.error("could not %s job: %s", action, exc, extra=extra)
            return False
        return True

    def _set_aside(
        self, job: Job, ctx: JobContext, exc: RhizomeError, extra: dict[str, Any]
    ) -> str:
        """The database or the storage failed under a job: not the job's fault. Release it
        to continue from its last checkpoint — at once when the database failed (recorded
        once it is back), after a backoff of its own when the storage failed."""
        stage = ctx.current_stage_name()
        where = f" in stage {stage!r}" if stage else ""
        cfg = self.config
        if isinstance(exc, DatabaseUnavailableError):
            delay = 0.0
            what = "the database was unavailable"
        else:
            n = min(job.infra_retries, 30)
            delay = min(cfg.storage_backoff_base * 2**n, cfg.storage_backoff_cap)
            what = "the storage failed"
        reason = (
            f"set aside: {what}{where} ({exc.message.rstrip('.')}); continues from its last "
            f"checkpoint{f' in {delay:.0f}s' if delay else ''} (not counted as a retry)"
        )
        self.log.warning(reason, extra={**extra, "stage": stage})
        self._record_stop(job, "release", reason, delay=delay)
        return "released"

    def _completer_loop(self) -> None:
        """The recorder: writes completions in batches, and whatever the job threads could
        not write because the database was unavailable, retrying with backoff until it
        is back (or, at shutdown, until the grace period ran out)."""
        outage = _Outage(self.log, "recording", self.config.unavailable_backoff_max)
        waiting: list[_Record] = []
        closing = False
        while True:
            if not waiting:
                if closing:
                    return
                item = self._done.get()
                if item is None:
                    return
                waiting.append(item)
            while len(waiting) < 500:
                try:
                    more = self._done.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                waiting.append(more)
            waiting = self._write_records(waiting)
            if not waiting:
                outage.ok()
                self._db_down.clear()
                continue
            self._db_down.set()
            pause = outage.failed(None)
            if closing and self._abandon.is_set():
                return
            self._abandon.wait(pause)

    def _write_records(self, records: list[_Record]) -> list[_Record]:
        """Write what can be written; returns the records to try again (the database was
        unavailable)."""
        again: list[_Record] = []
        finished: list[_Record] = []
        completions = [r for r in records if r.kind == "complete"]
        if completions:
            try:
                done = set(
                    self.store.complete(self.id, [(r.job.id, r.output or {}) for r in completions])
                )
            except DatabaseUnavailableError:
                again.extend(completions)
            except Exception as exc:  # e.g. an output the database does not take
                if len(completions) > 1:  # one by one, so that one bad output fails alone
                    for r in completions:
                        again.extend(self._write_records([r]))
                else:
                    job = completions[0].job
                    extra = {"job_id": job.id, "job_type": job.job_type, "worker_id": self.id}
                    self._fail(job, exc, extra)
                    finished.extend(completions)
            else:
                for r in completions:
                    self._completed(r, r.job.id in done)
                finished.extend(completions)
        for r in records:
            if r.kind == "complete":
                continue
            if again:  # the database just failed: do not knock again now
                again.append(r)
                continue
            try:
                if r.kind == "stop":
                    self.store.stop(r.job.id, self.id, r.action, r.reason, delay=r.delay)
                else:
                    self.store.fail(r.job.id, self.id, **(r.failure or {}))
                self.log.info(
                    "recorded %s after the outage", r.action or r.kind, extra={"job_id": r.job.id}
                )
            except DatabaseUnavailableError:
                again.append(r)
                continue
            except JobLostError:
                self.log.warning(
                    "late %s refused: another worker took the job over",
                    r.action or r.kind,
                    extra={"job_id": r.job.id},
                )
            except RhizomeError as exc:
                self.log.error(
                    "could not record %s: %s", r.action or r.kind, exc, extra={"job_id": r.job.id}
                )
            finished.append(r)
        with self._running_lock:
            for r in finished:
                if self._unrecorded.get(r.job.id) is r:
                    del self._unrecorded[r.job.id]
            self._pending_completions -= len(finished)
        if finished:
            self._slot_freed.set()
        return again

    def _completed(self, record: _Record, recorded: bool) -> None:
        job, ctx = record.job, record.ctx
        if not recorded:
            self.log.warning(
                "completion not recorded (ownership lost): another worker took the job over",
                extra={"job_id": job.id, "job_type": job.job_type},
            )
            return
        self.completed += 1
        if (ctx is not None and ctx.checkpoints_written) or job.last_checkpoint_path:
            try:
                delete_checkpoints(self.storage, job)
            except RhizomeError as exc:
                self.log.warning("could not delete checkpoints: %s", exc, extra={"job_id": job.id})

    # --- helper threads ---------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        cfg = self.config
        while not self._stopped.wait(cfg.heartbeat_seconds):
            self.beat()

    def beat(self) -> None:
        """One heartbeat: extend leases, read back control flags, reap."""
        try:
            # Snapshot the jobs held and running *before* the statement: their claims
            # committed before it started, so a job missing from its answer really was
            # lost. (A job claimed after the statement began would look lost by mistake.)
            with self._running_lock:
                running = dict(self._running)
                held = list(self._held)
                waiting = list(self._unrecorded)
            ids = [*running, *held, *waiting]
            controls = self.store.heartbeat(self.id, self.config.lease_seconds, ids)
            for job_id, ctx in running.items():
                control = controls.get(job_id)
                if control is None:
                    ctx.mark_lost()
                else:
                    ctx.signal(control)
            if held:
                self._update_held(held, controls)
            self._store_metrics()
            expired = self.store.expire_leases(self.config.max_takeovers)
            if expired:
                self.log.warning("reclaimed %d job(s) with expired leases", len(expired))
            for job_id in self.store.fail_crash_loops(self.config.max_takeovers):
                self.log.error(
                    "job failed: its workers died %d times in a row (crash loop)",
                    self.config.max_takeovers + 1,
                    extra={"job_id": job_id},
                )
            self.store.promote_retries()
            prune_due(self.store, self.storage)  # retention, hourly, in its own thread
        except DatabaseUnavailableError as exc:
            self.log.warning("heartbeat failed, database unavailable: %s", exc)
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

    def _update_held(self, held: list[str], controls: dict[str, Control]) -> None:
        """Pass the heartbeat's answer on to the jobs that were held before it: held
        ones keep their flags for their start, those started since get them in their
        context. Held jobs of a paused queue are handed back."""
        with self._running_lock:
            for job_id in held:
                control = controls.get(job_id)
                h = self._held.get(job_id)
                if h is not None:
                    if control is None:
                        h.lost = True
                    else:
                        h.pause = h.pause or control.pause_requested
                        h.cancel = h.cancel or control.cancel_requested
                    continue
                ctx = self._running.get(job_id)
                if ctx is not None:
                    if control is None:
                        ctx.mark_lost()
                    else:
                        ctx.signal(control)
            if not self._held:
                return
        paused = {t for t, c in self.store.queue_controls().items() if c["paused"]}
        if not paused:
            return
        with self._running_lock:
            back = [h for h in self._held.values() if "*" in paused or h.job.job_type in paused]
            for h in back:
                del self._held[h.job.id]
            self._busy -= len(back)
        self._release_held(back, "handed back unstarted: the queue was paused")


class _FieldsAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds the worker's fields to each record and keeps the ``extra`` a call passes
    (``job_id``, ``job_type``, ``stage``): the standard adapter replaces it (until 3.13)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class _Outage:
    """Backoff and log lines while the database cannot be reached: one warning when the
    outage starts, one line when it ends."""

    def __init__(self, log: logging.LoggerAdapter[logging.Logger], what: str, cap: float) -> None:
        self.log = log
        self.what = what
        self.cap = cap
        self.since: float | None = None
        self.tries = 0

    def failed(self, exc: BaseException | None) -> float:
        """Seconds to wait before the next try."""
        self.tries += 1
        wait = min(0.2 * 2.0 ** min(self.tries - 1, 10), self.cap)
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning(
                "database unavailable (%s paused; retrying with backoff up to %.0fs)%s",
                self.what,
                self.cap,
                f": {exc}" if exc is not None else "",
            )
        return wait

    def ok(self) -> None:
        if self.since is not None:
            self.log.warning(
                "database is back after %.1fs; %s resumed",
                time.monotonic() - self.since,
                self.what,
            )
        self.since = None
        self.tries = 0
