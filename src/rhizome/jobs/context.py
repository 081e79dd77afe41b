"""The :class:`JobContext` a handler receives: progress, stages, checkpoints, safe points."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rhizome.errors import JobLostError
from rhizome.jobs.model import Control, Job
from rhizome.jobs.registry import Stage

if TYPE_CHECKING:
    from rhizome.jobs.store.base import SqlJobStore
    from rhizome.storage import Storage

CHECKPOINT_VERSION = 1


class JobInterrupted(Exception):
    """Raised at a safe point to stop the handler: ``pause``, ``cancel`` or ``release``."""

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


def checkpoint_prefix(job: Job) -> str:
    """Where a job's checkpoints live (DESIGN §6)."""
    if job.entity_type == "document" and job.entity_id:
        return f"documents/{job.user_id}/{job.entity_id}/"
    return f"jobs/{job.id}/"


def checkpoint_key(job: Job, stage: str) -> str:
    return f"{checkpoint_prefix(job)}stage-{stage}.json"


def delete_checkpoints(storage: Storage, job: Job) -> int:
    """Remove every ``stage-*.json`` of the job; other files in a document folder stay."""
    prefix = checkpoint_prefix(job)
    if prefix.startswith("jobs/"):
        return storage.delete_prefix(prefix)
    removed = 0
    for key in storage.list(prefix):
        name = key.rsplit("/", 1)[-1]
        if name.startswith("stage-") and name.endswith(".json"):
            storage.delete(key)
            removed += 1
    return removed


class JobContext:
    """Given to a handler for one run (attempt) of one job.

    * :meth:`stage` enters a declared stage (always written, plus a timeline event);
    * :meth:`progress` reports progress inside it (throttled to ``progress_interval``);
    * :meth:`checkpoint` saves a stage result (or a cursor inside a long stage) to storage
      with its SHA-256 on the job row, and is a *safe point*;
    * :meth:`resume_point` returns the last verified checkpoint when a job resumes.
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

    def stage_named(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ValueError(f"job type {self.job.job_type} declares no stage {name!r}")

    def stage(self, name: str, details: str | None = None) -> Stage:
        """Enter stage ``name``: written at once, with a timeline event."""
        stage = self.stage_named(name)
        self._stage = stage
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
        self._last_write = self._clock()
        self.signal(control)

    # --- checkpoints and safe points --------------------------------------------------------

    def checkpoint(self, stage: str, data: Any) -> Checkpoint:
        """Save ``data`` as the checkpoint of ``stage`` (call it again inside a long stage
        with a cursor) and stop here if a pause or cancel was requested."""
        self.stage_named(stage)
        key = checkpoint_key(self.job, stage)
        saved_at = datetime.now(UTC).isoformat()
        payload = json.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "job_id": self.job.id,
                "job_type": self.job.job_type,
                "stage": stage,
                "saved_at": saved_at,
                "data": data,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        digest = hashlib.sha256(payload).hexdigest()
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
        self._last_write = self._clock()
        self.checkpoints_written += 1
        self.job.last_checkpoint_path, self.job.last_checkpoint_stage = key, stage
        self.job.checkpoint_hash = digest
        self.signal(control)
        self.safe_point()
        return Checkpoint(stage, data, key, digest, saved_at)

    def safe_point(self) -> None:
        """Stop here if a pause, cancel or shutdown is pending and the current stage is
        pause-safe (cancel is honoured in any stage)."""
        self._check(pause_allowed=self._stage is None or self._stage.pause_safe)

    def _check(self, *, pause_allowed: bool) -> None:
        if self._lost:
            raise JobLostError(f"Job {self.job.id} is no longer owned by this worker.")
        if self._cancel:
            raise JobInterrupted("cancel", "cancelled by user")
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
        self.log.warning("%s; starting fresh", problem, extra={"stage": job.last_checkpoint_stage})
        self.store.add_event(
            job.id,
            f"{problem}: {job.last_checkpoint_path}; starting fresh",
            stage=job.last_checkpoint_stage,
            worker_id=self.worker_id,
        )
        self.store.clear_checkpoint(job.id)
        self._progress.pop("checkpoint", None)
        job.last_checkpoint_path = job.last_checkpoint_stage = job.checkpoint_hash = None
        return None
