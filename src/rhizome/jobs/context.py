"""The :class:`JobContext` a handler receives: stages, progress, checkpoints, safe points.

One resume mechanism for every job type. A handler runs its work as stages and, inside a
long stage, over a cursor::

    def my_job(ctx: JobContext, data: Input) -> dict[str, Any]:
        text = ctx.run_stage("load", lambda: load(data.path))      # skipped once done
        def embed() -> int:
            cur = ctx.cursor("batch", start=0)
            for start in cur.range(len(text), step=64):            # resumes inside
                write_batch(text[start : start + 64])              # effects first ...
            return cur.value                                       # ... then the cursor
        ctx.run_stage("embed", embed)

* :meth:`run_stage` skips a stage the verified checkpoint says is done (and returns its
  stored result); otherwise it enters the stage, runs it and checkpoints its result.
* :meth:`cursor` resumes inside a stage. Its position is checkpointed only **after** the
  unit's effects are done (the loop body returned), never before, so an interruption can
  redo the unit in flight but never skip one.
* Every checkpoint is a *safe point*: a pause (in a pause-safe stage), a cancel or a
  shutdown stops the job there with :class:`JobInterrupted`.

Checkpoints are written under a new key each time (derived from their hash), recorded on
the job row, and only then is the previous file removed: a crash at any instant leaves the
row pointing at a complete file whose SHA-256 matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from rhizome.errors import DatabaseUnavailableError, JobLostError, RhizomeError, TimeLimitError
from rhizome.jobs.model import Control, Job
from rhizome.jobs.registry import Stage

if TYPE_CHECKING:
    from rhizome.jobs.store.base import SqlJobStore
    from rhizome.storage import Storage

CHECKPOINT_VERSION = 2
T = TypeVar("T")
Item = TypeVar("Item")


class JobInterrupted(BaseException):
    """Raised at a safe point to stop the handler: ``pause``, ``cancel`` or ``release``.

    A ``BaseException`` (like ``KeyboardInterrupt``), so no handler's ``except Exception``
    can swallow a pause or a cancel."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(reason)
        self.action = action
        self.reason = reason


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: the stage it completed (or is inside) and its data."""

    stage: str
    data: Any
    path: str
    sha256: str
    saved_at: str


@dataclass
class ResumeState:
    """What a checkpoint holds: the results of finished stages (in order) and the cursors
    of the stage in progress (outermost first)."""

    done: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    """The stage the cursors belong to."""
    cursors: list[list[Any]] = field(default_factory=list)
    """``[name, value]`` pairs in creation order; saving one drops those created after it
    (cursors nested inside it)."""

    def to_json(self) -> dict[str, Any]:
        return {"done": self.done, "stage": self.stage, "cursors": self.cursors}

    @classmethod
    def from_json(cls, data: Any) -> ResumeState:
        if not isinstance(data, dict) or not isinstance(data.get("done"), dict):
            raise ValueError("not a resume state")
        cursors = data.get("cursors") or []
        if not isinstance(cursors, list) or not all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) for c in cursors
        ):
            raise ValueError("bad cursors")
        stage = data.get("stage")
        return cls(done=dict(data["done"]), stage=stage, cursors=cursors)

    def cursor_value(self, stage: str, name: str) -> tuple[bool, Any]:
        if self.stage == stage:
            for saved, value in self.cursors:
                if saved == name:
                    return True, value
        return False, None

    def set_cursor(self, stage: str, name: str, value: Any) -> None:
        if self.stage != stage:
            self.stage, self.cursors = stage, []
        for i, (saved, _) in enumerate(self.cursors):
            if saved == name:
                self.cursors[i] = [name, value]
                del self.cursors[i + 1 :]
                return
        self.cursors.append([name, value])

    def finish(self, stage: str, result: Any) -> None:
        self.done[stage] = result
        if self.stage == stage:
            self.stage, self.cursors = None, []


def checkpoint_prefix(job: Job) -> str:
    """Where a job's checkpoints live (DESIGN §6)."""
    if job.entity_type == "document" and job.entity_id:
        return f"documents/{job.user_id}/{job.entity_id}/"
    return f"jobs/{job.id}/"


def checkpoint_key(job: Job, stage: str, sha256: str) -> str:
    """A new key for every checkpoint (``stage-<stage>.<hash prefix>.json``), so a write
    never overwrites the file the job row points at."""
    return f"{checkpoint_prefix(job)}stage-{stage}.{sha256[:16]}.json"


def is_checkpoint_key(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith("stage-") and name.endswith(".json")


def delete_checkpoints(storage: Storage, job: Job) -> int:
    """Remove every ``stage-*.json`` of the job; other files in a document folder stay."""
    prefix = checkpoint_prefix(job)
    if prefix.startswith("jobs/"):
        return storage.delete_prefix(prefix)
    removed = 0
    for key in storage.list(prefix):
        if is_checkpoint_key(key):
            storage.delete(key)
            removed += 1
    return removed


SafePointHook = Callable[["JobContext", str, str], None]
"""``hook(ctx, stage, phase)``: called with phase ``"before"`` when a checkpoint is about to
be written (the unit's effects are done) and ``"after"`` once it is durable (storage and
row), before the safe-point check. The test harness uses it to pause or crash a job at a
chosen safe point."""


class Cursor:
    """A position inside the current stage that survives pause, crash and takeover.

    ``value`` is where to continue (the saved position when resuming, else ``start``).
    :meth:`save` checkpoints a new position and is a safe point; :meth:`range` and
    :meth:`each` save after each loop body returns, i.e. after the unit's effects."""

    def __init__(self, ctx: JobContext, stage: str, name: str, value: Any) -> None:
        self._ctx = ctx
        self.stage = stage
        self.name = name
        self.value = value

    def save(self, value: Any) -> None:
        """Record ``value`` as done-up-to (call it after the work it covers is committed)."""
        self.value = value
        self._ctx._save_cursor(self.stage, self.name, value)

    def range(self, stop: int, step: int = 1) -> Iterator[int]:
        """``start, start+step, ...`` below ``stop``, from the saved position; after each
        body the next position is saved (so the value is the first index not yet done)."""
        if step <= 0:
            raise ValueError("step must be positive")
        position = int(self.value)
        while position < stop:
            yield position
            position = min(position + step, stop)
            self.save(position)

    def each(self, items: Sequence[Item]) -> Iterator[tuple[int, Item]]:
        """``(index, item)`` for the items not done yet; saves ``index + 1`` after each."""
        for index in self.range(len(items)):
            yield index, items[index]


class JobContext:
    """Given to a handler for one run (attempt) of one job.

    * :meth:`run_stage` runs a declared stage once (skipped on resume when done);
    * :meth:`cursor` resumes inside a stage;
    * :meth:`progress` reports progress inside a stage (throttled to ``progress_interval``);
    * :meth:`safe_point` lets a pause/cancel stop the job without saving anything new.
    """

    def __init__(
        self,
        job: Job,
        stages: tuple[Stage, ...],
        store: SqlJobStore,
        storage: Storage,
        worker_id: str,
        *,
        progress_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        safe_point_hook: SafePointHook | None = None,
        time_limit: float | None = None,
        memory_limit_mb: int | None = None,
    ) -> None:
        self.job = job
        self.stages = stages
        self.store = store
        self.storage = storage
        self.worker_id = worker_id
        self.progress_interval = progress_interval
        self._clock = clock
        self._progress: dict[str, Any] = dict(job.progress)
        self._stage: Stage | None = None
        self._last_write = float("-inf")
        self._lock = threading.Lock()
        self._pause = job.pause_requested
        self._cancel = job.cancel_requested
        self._shutdown = False
        self._lost = False
        self._state: ResumeState | None = None
        self._hook = safe_point_hook
        self.time_limit = time_limit
        """Seconds this run may take (None: no limit), checked at safe points."""
        self.memory_limit_mb = memory_limit_mb
        """The address-space limit (MB) of a child process this run starts to read untrusted
        input (the type's own, or ``job_memory_limits``; None: the type declares none)."""
        self._began = clock()
        self.resumed_from: Checkpoint | None = None
        """The verified checkpoint this run continued from (None: started fresh)."""
        self.skipped_stages: list[str] = []
        self.checkpoints_written = 0
        self.log = logging.LoggerAdapter(
            logger or logging.getLogger("rhizome.jobs.handler"),
            {"job_id": job.id, "job_type": job.job_type, "worker_id": worker_id},
        )

    # --- signals from the worker ----------------------------------------------------------

    def signal(self, control: Control) -> None:
        with self._lock:
            self._pause = self._pause or control.pause_requested
            self._cancel = self._cancel or control.cancel_requested

    def request_shutdown(self) -> None:
        self._shutdown = True

    def mark_lost(self) -> None:
        self._lost = True

    @property
    def lost(self) -> bool:
        return self._lost

    # --- stages and progress ----------------------------------------------------------------

    @property
    def current_stage(self) -> Stage | None:
        return self._stage

    def current_stage_name(self) -> str | None:
        return self._stage.name if self._stage is not None else None

    def stage_named(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ValueError(f"job type {self.job.job_type} declares no stage {name!r}")

    def stage(self, name: str, details: str | None = None, *, resuming: bool = False) -> Stage:
        """Enter stage ``name``: written at once, with a timeline event. (Handlers use
        :meth:`run_stage`, which calls this.) ``resuming``: the job continues inside this
        stage from a checkpoint, so the progress it had reached in it (percent, details)
        stays instead of jumping back to the stage's start."""
        stage = self.stage_named(name)
        self._stage = stage
        keep = resuming and self._progress.get("stage") == stage.name
        try:
            reached = float(self._progress.get("percent") or 0)
        except (TypeError, ValueError):
            reached = 0.0
        if keep and stage.start <= reached <= stage.end:
            self._progress.update(substage=None)
        else:
            self._progress.update(
                percent=stage.start,
                stage=stage.name,
                substage=None,
                details=details or stage.label,
                stage_data={},
            )
        self._write(event=f"stage {stage.name} started")
        return stage

    def progress(
        self,
        percent: float | None = None,
        *,
        fraction: float | None = None,
        details: str | None = None,
        substage: str | None = None,
        force: bool = False,
        **stage_data: Any,
    ) -> None:
        """Report progress: an overall ``percent``, or a ``fraction`` (0..1) of the current
        stage. Written at most every ``progress_interval`` seconds unless ``force``.
        A cancel request stops the job here."""
        if fraction is not None and self._stage is not None:
            percent = self._stage.percent(fraction)
        if percent is not None:
            self._progress["percent"] = round(float(percent), 2)
        if details is not None:
            self._progress["details"] = details
        if substage is not None:
            self._progress["substage"] = substage
        if stage_data:
            merged = dict(self._progress.get("stage_data") or {})
            merged.update(stage_data)
            self._progress["stage_data"] = merged
        if force or self._clock() - self._last_write >= self.progress_interval:
            self._write()
        self._check(pause_allowed=False)

    def _write(self, event: str | None = None) -> None:
        if self._lost:
            raise JobLostError(f"Job {self.job.id} is no longer owned by this worker.")
        try:
            control = self.store.update_progress(
                self.job.id, self.worker_id, dict(self._progress), event=event
            )
        except JobLostError:
            self._lost = True
            raise
        except DatabaseUnavailableError as exc:
            if event is not None:
                raise  # a stage change belongs on the timeline: set the job aside
            # A progress figure can wait: the next write (or checkpoint) carries it.
            self._last_write = self._clock()
            self.log.debug("progress not written (database unavailable): %s", exc)
            return
        self._last_write = self._clock()
        self.signal(control)

    # --- the resume mechanism ---------------------------------------------------------------

    def _resume_state(self) -> ResumeState:
        """The state to continue from: loaded once from the verified checkpoint."""
        if self._state is not None:
            return self._state
        point = self.resume_point()
        state = ResumeState()
        if point is not None:
            try:
                state = ResumeState.from_json(point.data)
            except ValueError:
                self._forget_checkpoint(point.path, "checkpoint has an unknown format")
            else:
                self.resumed_from = point
                where = "after " + (", ".join(state.done) or "no finished stage")
                if state.stage is not None and state.cursors:
                    at = ", ".join(_describe(name, value) for name, value in state.cursors)
                    where += f"; inside {state.stage} at {at}"
                self.log.info("resumed from checkpoint (%s)", where, extra={"stage": point.stage})
                self.store.add_event(
                    self.job.id,
                    f"resumed from checkpoint ({where})",
                    stage=point.stage,
                    worker_id=self.worker_id,
                )
        self._state = state
        return state

    def run_stage(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run declared stage ``name`` as ``fn(*args, **kwargs)`` and checkpoint its result
        (JSON-serializable) once it returned; or, when the verified checkpoint says the stage
        is done, return the stored result without running it again."""
        state = self._resume_state()
        if name in state.done:
            self.stage_named(name)
            self.skipped_stages.append(name)
            result: T = state.done[name]
            return result
        self.stage(name, resuming=state.stage == name and bool(state.cursors))
        value = fn(*args, **kwargs)
        state.finish(name, value)
        self._checkpoint(name)
        return value

    def is_done(self, name: str) -> bool:
        """Whether stage ``name`` finished (in this run or before the checkpoint)."""
        return name in self._resume_state().done

    def stage_result(self, name: str) -> Any:
        """The stored result of a finished stage (KeyError when it has not run)."""
        return self._resume_state().done[name]

    def discard(self, name: str, *keys: str) -> None:
        """Drop large data of a finished stage's stored result that later stages no longer
        need (``keys`` of a dict result, or the whole result), so later checkpoints stay
        small. The stage stays done."""
        state = self._resume_state()
        result = state.done.get(name)
        if keys and isinstance(result, dict):
            state.done[name] = {k: v for k, v in result.items() if k not in keys}
        elif name in state.done and not keys:
            state.done[name] = None

    def cursor(self, name: str = "position", start: Any = 0) -> Cursor:
        """A cursor inside the current stage: its saved value when this job resumes inside
        the same stage, else ``start``. Cursors nest: saving one forgets the cursors made
        after it (e.g. an engine's batch cursor inside a per-document cursor)."""
        if self._stage is None:
            raise RuntimeError("ctx.cursor() is used inside a stage run by ctx.run_stage()")
        found, value = self._resume_state().cursor_value(self._stage.name, name)
        return Cursor(self, self._stage.name, name, value if found else start)

    def _save_cursor(self, stage: str, name: str, value: Any) -> None:
        self._resume_state().set_cursor(stage, name, value)
        self._checkpoint(stage)

    # --- checkpoints and safe points --------------------------------------------------------

    def _checkpoint(self, stage: str) -> Checkpoint:
        """Write the resume state as a new checkpoint file, record it on the row, remove the
        previous file, then stop here if a pause or cancel was requested."""
        state = self._resume_state()
        if self._hook is not None:
            self._hook(self, stage, "before")
        saved_at = datetime.now(UTC).isoformat()
        payload = json.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "job_id": self.job.id,
                "job_type": self.job.job_type,
                "stage": stage,
                "saved_at": saved_at,
                "data": state.to_json(),
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        digest = hashlib.sha256(payload).hexdigest()
        key = checkpoint_key(self.job, stage, digest)
        if self._lost:
            raise JobLostError(f"Job {self.job.id} is no longer owned by this worker.")
        self.storage.put(key, payload)
        info = {
            "stage": stage,
            "path": key,
            "sha256": digest,
            "at": saved_at,
            "size": len(payload),
            "can_resume": True,
        }
        self._progress["checkpoint"] = info
        try:
            control = self.store.record_checkpoint(
                self.job.id,
                self.worker_id,
                path=key,
                stage=stage,
                sha256=digest,
                progress=dict(self._progress),
            )
        except JobLostError:
            self._lost = True
            raise
        previous = self.job.last_checkpoint_path
        self._last_write = self._clock()
        self.checkpoints_written += 1
        self.job.last_checkpoint_path, self.job.last_checkpoint_stage = key, stage
        self.job.checkpoint_hash = digest
        if previous and previous != key:
            try:
                self.storage.delete(previous)
            except RhizomeError as exc:  # an orphan for fix-orphans; the row is right
                self.log.warning("could not remove old checkpoint %s: %s", previous, exc)
        self.signal(control)
        if self._hook is not None:
            self._hook(self, stage, "after")
        self.safe_point()
        return Checkpoint(stage, state.to_json(), key, digest, saved_at)

    def safe_point(self) -> None:
        """Stop here if a pause, cancel or shutdown is pending and the current stage is
        pause-safe (cancel is honoured in any stage)."""
        self._check(pause_allowed=self._stage is None or self._stage.pause_safe)

    def _check(self, *, pause_allowed: bool) -> None:
        if self._lost:
            raise JobLostError(f"Job {self.job.id} is no longer owned by this worker.")
        if self._cancel:
            raise JobInterrupted("cancel", "cancelled by user")
        if self.time_limit is not None and self._clock() - self._began > self.time_limit:
            stage = self.current_stage_name()
            raise TimeLimitError(
                f"The job ran longer than the time limit of {self.time_limit:g} s for "
                f"{self.job.job_type} jobs" + (f" (stopped in stage {stage!r})." if stage else "."),
                "Raise the limit with the setting job_time_limits (RHIZOME_JOB_TIME_LIMITS="
                + json.dumps({self.job.job_type: "SECONDS"})
                + ") or split the input, then retry the job: it continues from its last "
                "checkpoint.",
            )
        if not pause_allowed:
            return
        if self._pause:
            raise JobInterrupted("pause", self.job.pause_reason or "paused by user")
        if self._shutdown:
            raise JobInterrupted("release", "worker shutting down; released to run again")

    def resume_point(self) -> Checkpoint | None:
        """The job's last checkpoint if its file exists and its SHA-256 matches, else None
        (with a timeline event saying why the job starts fresh)."""
        job = self.job
        if not job.last_checkpoint_path or not job.checkpoint_hash:
            return None
        problem: str | None = None
        try:
            payload = self.storage.get(job.last_checkpoint_path)
        except FileNotFoundError:
            problem = "checkpoint file is missing"
        else:
            if hashlib.sha256(payload).hexdigest() != job.checkpoint_hash:
                problem = "checkpoint hash does not match (file changed or truncated)"
        if problem is None:
            try:
                doc = json.loads(payload)
                return Checkpoint(
                    stage=str(doc["stage"]),
                    data=doc["data"],
                    path=job.last_checkpoint_path,
                    sha256=job.checkpoint_hash,
                    saved_at=str(doc.get("saved_at", "")),
                )
            except (ValueError, KeyError, TypeError):
                problem = "checkpoint file is not valid JSON"
        self._forget_checkpoint(job.last_checkpoint_path, problem)
        return None

    def _forget_checkpoint(self, path: str, problem: str) -> None:
        job = self.job
        self.log.warning("%s; starting fresh", problem, extra={"stage": job.last_checkpoint_stage})
        self.store.add_event(
            job.id,
            f"{problem}: {path}; starting fresh",
            stage=job.last_checkpoint_stage,
            worker_id=self.worker_id,
        )
        self.store.clear_checkpoint(job.id)
        self._progress.pop("checkpoint", None)
        job.last_checkpoint_path = job.last_checkpoint_stage = job.checkpoint_hash = None


def _describe(name: str, value: Any) -> str:
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if not isinstance(v, list | dict)}
    return f"{name} {json.dumps(value)[:60]}"
