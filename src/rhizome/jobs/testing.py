"""A test harness for handler authors: run a job type inline, pause or crash it at a
chosen safe point, resume it, and look at what happened.

    from rhizome.jobs.testing import run_inline, safe_points

    def test_count_resumes_everywhere() -> None:
        clean = run_inline("count", {"n": 10})
        for k in range(1, safe_points("count", {"n": 10}) + 1):
            for how in ("pause", "crash", "crash-before"):
                run = run_inline("count", {"n": 10}, interrupt_at=k, interrupt=how)
                assert run.job.status == "completed"
                assert run.output == clean.output

The job runs in the calling thread against a temporary SQLite store and a temporary local
storage folder (or the ``store``/``storage`` you pass). ``interrupt_at=k`` stops the first
run at its k-th safe point (a checkpoint):

* ``pause``: a pause is requested there, exactly as a user would; the job is resumed;
* ``crash``: the run dies right after the checkpoint is durable, like ``kill -9``: nothing
  else is written; a new worker takes the job over once its lease expired;
* ``crash-before``: the run dies right *before* the k-th checkpoint is written (the unit's
  effects are done, its checkpoint is not): the new owner must redo that unit, never skip it.

The second run goes to the end. :class:`InlineRun` has the final job row, its timeline,
its output and the stages each run executed and skipped.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rhizome.errors import JobError, JobLostError
from rhizome.jobs.context import JobContext, JobInterrupted, delete_checkpoints
from rhizome.jobs.model import Control, ErrorType, Job, JobEvent, JobStatus, NewJob
from rhizome.jobs.registry import JobType, Registry, registry
from rhizome.jobs.retry import RetryPolicy, classify, user_message
from rhizome.jobs.store import SqlJobStore, open_store
from rhizome.storage import LocalStorage, Storage

Interrupt = Literal["pause", "crash", "crash-before"]
INTERRUPTS: tuple[Interrupt, ...] = ("pause", "crash", "crash-before")
_TAKEOVER_LEASE = 0.001
"""Inline runs hold a lease that is already over when a crashed run is taken over (no
heartbeat runs inline, and ownership is checked by worker id, not by the clock)."""


class SimulatedCrash(BaseException):
    """Raised by the harness to end a run the way ``kill -9`` would: nothing more is written."""


@dataclass
class RunRecord:
    """One run (attempt) of the job."""

    worker_id: str
    outcome: str
    """``completed``, ``paused``, ``cancelled``, ``released``, ``failed`` or ``crashed``."""
    safe_points: list[str] = field(default_factory=list)
    """The stage of each safe point the run passed, in order."""
    skipped_stages: list[str] = field(default_factory=list)
    resumed: bool = False
    error: str | None = None


@dataclass
class InlineRun:
    job: Job
    events: list[JobEvent]
    runs: list[RunRecord]

    @property
    def output(self) -> dict[str, Any] | None:
        return self.job.output_data

    @property
    def messages(self) -> list[str]:
        return [e.message or "" for e in self.events]


@contextmanager
def temporary_backends() -> Iterator[tuple[SqlJobStore, Storage]]:
    """A fresh SQLite store and local storage in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="rhizome-inline-") as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'jobs.db'}")
        try:
            yield store, LocalStorage(Path(tmp) / "storage")
        finally:
            store.close()


def run_inline(
    job_type: str,
    input_data: dict[str, Any] | None = None,
    *,
    interrupt_at: int | None = None,
    interrupt: Interrupt = "pause",
    store: SqlJobStore | None = None,
    storage: Storage | None = None,
    user_id: str = "local",
    entity_type: str | None = None,
    entity_id: str | None = None,
    types: Registry = registry,
    retry: RetryPolicy | None = None,
    job_id: str | None = None,
) -> InlineRun:
    """Enqueue ``job_type`` with ``input_data`` and run it inline to the end (see module
    doc); or, with ``job_id``, run that job already enqueued in ``store``. Pass ``store``
    and ``storage`` to run against your own backends (they must hold no other due job of
    this type); otherwise temporary ones are used."""
    if store is None or storage is None:
        with temporary_backends() as (tmp_store, tmp_storage):
            return run_inline(
                job_type,
                input_data,
                interrupt_at=interrupt_at,
                interrupt=interrupt,
                store=store or tmp_store,
                storage=storage or tmp_storage,
                user_id=user_id,
                entity_type=entity_type,
                entity_id=entity_id,
                types=types,
                retry=retry,
                job_id=job_id,
            )
    if interrupt not in INTERRUPTS:
        raise ValueError(f"interrupt must be one of {INTERRUPTS}")
    kind = types.get(job_type)
    if job_id is not None:
        job = store.get(job_id)
    else:
        kind.validate_input(input_data or {})
        [job] = store.enqueue(
            [
                NewJob(
                    job_type,
                    input_data or {},
                    user_id=user_id,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    max_retries=kind.max_retries,
                )
            ]
        )
    runs: list[RunRecord] = []
    first = _run_once(store, storage, kind, job.id, 1, interrupt_at, interrupt, retry)
    runs.append(first)
    if first.outcome == "paused":
        store.resume(job.id)
    if first.outcome == "crashed":
        time.sleep(_TAKEOVER_LEASE * 20)  # let the dead run's lease run out
    if first.outcome in ("paused", "crashed"):
        runs.append(_run_once(store, storage, kind, job.id, 2, None, interrupt, retry))
    final = store.get(job.id)
    return InlineRun(job=final, events=store.events(job.id), runs=runs)


def safe_points(job_type: str, input_data: dict[str, Any] | None = None, **kwargs: Any) -> int:
    """How many safe points an uninterrupted run of the job passes (for ``interrupt_at``)."""
    run = run_inline(job_type, input_data, **kwargs)
    return len(run.runs[0].safe_points)


def _run_once(
    store: SqlJobStore,
    storage: Storage,
    kind: JobType,
    job_id: str,
    number: int,
    interrupt_at: int | None,
    interrupt: Interrupt,
    retry: RetryPolicy | None,
) -> RunRecord:
    worker_id = f"inline:{number}"
    claimed = store.claim(worker_id, 1, _TAKEOVER_LEASE, [kind.name])
    if not claimed or claimed[0].id != job_id:
        for other in claimed:
            store.stop(other.id, worker_id, "release", "claimed by the test harness by mistake")
        raise RuntimeError(
            f"run_inline could not claim job {job_id}: the store holds other due "
            f"{kind.name} jobs (or the queue is paused)"
        )
    job = claimed[0]
    record = RunRecord(worker_id=worker_id, outcome="completed")
    data = kind.validate_input(job.input_data)
    ctx = JobContext(
        job,
        kind.stages_for(data),
        store,
        storage,
        worker_id,
        progress_interval=0.0,
        safe_point_hook=_hook(store, record, interrupt_at, interrupt),
        time_limit=kind.time_limit_seconds,
        memory_limit_mb=kind.memory_limit_mb,
    )
    try:
        output = kind.handler(ctx, data) or {}
    except SimulatedCrash:
        record.outcome = "crashed"
    except JobInterrupted as stop:
        store.stop(job.id, worker_id, stop.action, stop.reason)
        record.outcome = {"pause": "paused", "cancel": "cancelled"}.get(stop.action, "released")
    except JobLostError:
        record.outcome = "lost"
    except Exception as exc:
        record.outcome = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        _fail(store, job, worker_id, exc, retry or RetryPolicy())
    else:
        if job_id not in store.complete(worker_id, [(job.id, output)]):
            record.outcome = "lost"
        else:
            delete_checkpoints(storage, job)
    record.skipped_stages = list(ctx.skipped_stages)
    record.resumed = ctx.resumed_from is not None
    return record


def _hook(
    store: SqlJobStore, record: RunRecord, interrupt_at: int | None, interrupt: Interrupt
) -> Callable[[JobContext, str, str], None]:
    def hook(ctx: JobContext, stage: str, phase: str) -> None:
        if phase == "before":
            if interrupt == "crash-before" and len(record.safe_points) + 1 == interrupt_at:
                raise SimulatedCrash(f"crash before safe point {interrupt_at} ({stage})")
            return
        record.safe_points.append(stage)
        if len(record.safe_points) != interrupt_at:
            return
        if interrupt == "crash":
            raise SimulatedCrash(f"crash at safe point {interrupt_at} ({stage})")
        if interrupt == "pause":
            store.request_pause(ctx.job.id, reason=f"paused at safe point {interrupt_at}")
            ctx.signal(Control(pause_requested=True, cancel_requested=False))

    return hook


def _fail(
    store: SqlJobStore, job: Job, worker_id: str, exc: Exception, policy: RetryPolicy
) -> None:
    error_type = classify(exc)
    delay = None
    if policy.should_retry(error_type, job.retry_count, job.max_retries):
        delay = policy.delay(job.retry_count + 1)
    technical = (
        f"{type(exc).__name__}: {exc.message}"
        if isinstance(exc, JobError)
        else "".join(traceback.format_exception(exc))
    )
    store.fail(
        job.id,
        worker_id,
        error_type=error_type,
        last_error=technical,
        error_message=user_message(exc, error_type, will_retry=delay is not None),
        retry_delay=delay,
    )


__all__ = [
    "INTERRUPTS",
    "ErrorType",
    "InlineRun",
    "JobStatus",
    "RunRecord",
    "SimulatedCrash",
    "run_inline",
    "safe_points",
    "temporary_backends",
]
