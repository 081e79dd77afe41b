"""Job control and admin actions (DESIGN §7, §9): one function each, shared by the CLI,
the HTTP API and the UI. Every action writes ``job_events`` rows (status changes or
tombstones); destructive ones are confirmed by the caller (``--yes`` / a dialog).

The jobs core knows nothing about documents: whoever builds an :class:`Admin` hands it
the other components' parts of *nuclear reset* and *fix orphans* as :class:`AdminHooks`
(:class:`rhizome.app.App` passes the library's). Nothing here is registered globally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rhizome.errors import InvalidInputError, RhizomeError
from rhizome.jobs.context import delete_checkpoints
from rhizome.jobs.model import Job, JobStatus
from rhizome.jobs.store.base import SqlJobStore
from rhizome.storage import Storage

log = logging.getLogger("rhizome.jobs.admin")

AdminHook = Callable[["Admin"], dict[str, Any]]
"""Takes the admin (its store, storage and user scope); returns counts for the result."""


@dataclass(frozen=True)
class AdminHooks:
    """One component's parts of the admin actions that reach beyond jobs."""

    reset: tuple[AdminHook, ...] = ()
    """Run by :meth:`Admin.nuclear_reset` after the jobs are gone (e.g. processing
    documents)."""
    orphans: tuple[AdminHook, ...] = ()
    """Run by :meth:`Admin.fix_orphans` (e.g. documents stuck in processing with no job)."""


BULK_ACTIONS = ("pause", "resume", "cancel", "retry", "delete", "force_fail")


@dataclass
class BulkResult:
    action: str
    done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """job id → why it was left alone (e.g. an illegal transition for its status)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "done": self.done,
            "skipped": self.skipped,
            "count": len(self.done),
        }


@dataclass(frozen=True)
class Selection:
    """Which jobs a bulk action applies to: explicit ids, or a filter (or everything)."""

    ids: Sequence[str] | None = None
    statuses: Sequence[str] | None = None
    job_types: Sequence[str] | None = None
    stage: str | None = None
    everything: bool = False

    def is_empty(self) -> bool:
        return not (self.ids or self.statuses or self.job_types or self.stage or self.everything)


class Admin:
    def __init__(
        self,
        store: SqlJobStore,
        storage: Storage,
        user_id: str | None = None,
        *,
        hooks: Sequence[AdminHooks] = (),
    ) -> None:
        self.store = store
        self.storage = storage
        self.user_id = user_id
        """When set, every action is limited to this user's jobs."""
        self.hooks = tuple(hooks)
        """Other components' parts of nuclear reset and fix orphans, run in this order."""

    # --- one job ---------------------------------------------------------------------------
    #
    # Every action takes a job id or a unique prefix of 8 characters or more (the short ids
    # the UI and `rhizome jobs list` show).

    def resolve(self, job_id: str) -> str:
        """The full id of the user's job ``job_id`` names (an id, or a unique prefix)."""
        return self.store.resolve_job_id(job_id, self.user_id)

    def get(self, job_id: str) -> Job:
        return self.store.get(self.resolve(job_id), self.user_id)

    def pause(self, job_id: str, reason: str = "paused by user") -> Job:
        job_id = self.resolve(job_id)
        return self.store.request_pause(job_id, reason=reason, user_id=self.user_id)

    def resume(self, job_id: str, *, restart: bool = False) -> Job:
        job_id = self.resolve(job_id)
        before = self.store.get(job_id, self.user_id)
        job = self.store.resume(job_id, restart=restart, user_id=self.user_id)
        if restart:
            self._drop_checkpoint_files(before)
        return job

    def cancel(self, job_id: str) -> Job:
        job_id = self.resolve(job_id)
        return self.store.request_cancel(job_id, user_id=self.user_id)

    def retry(self, job_id: str, *, restart: bool = False) -> Job:
        job_id = self.resolve(job_id)
        before = self.store.get(job_id, self.user_id)
        job = self.store.retry(job_id, restart=restart, user_id=self.user_id)
        if restart:
            self._drop_checkpoint_files(before)
        return job

    def force_fail(self, job_id: str, reason: str = "failed by an administrator") -> Job:
        job_id = self.resolve(job_id)
        self.store.get(job_id, self.user_id)
        return self.store.force_fail(job_id, reason)

    def delete(self, job_id: str, reason: str = "deleted") -> Job:
        job_id = self.resolve(job_id)
        job = self.store.delete(job_id, user_id=self.user_id, reason=reason)
        self._drop_checkpoint_files(job)
        return job

    def cancel_and_delete(self, job_id: str) -> Job:
        """Cancel (a running job stops at its next write: it no longer owns the row), then
        delete the job, its timeline and its checkpoints."""
        job = self.get(job_id)
        job_id = job.id
        if job.status in (JobStatus.PENDING, JobStatus.PAUSED, JobStatus.FAILED):
            self.store.request_cancel(job_id, user_id=self.user_id)
        return self.delete(job_id, reason="cancelled and deleted")

    # --- many jobs --------------------------------------------------------------------------

    def select(self, selection: Selection) -> list[str]:
        if selection.is_empty():
            raise InvalidInputError(
                "No jobs selected.",
                "Pass job ids, or a filter (--type/--status/--stage), or --all.",
            )
        if selection.ids:
            return list(dict.fromkeys(self._resolve_quietly(i) for i in selection.ids))
        return self.store.job_ids_where(
            statuses=selection.statuses,
            job_types=selection.job_types,
            stage=selection.stage,
            user_id=self.user_id,
        )

    def bulk(self, action: str, selection: Selection, *, restart: bool = False) -> BulkResult:
        """Apply ``action`` to every selected job; jobs it does not apply to are skipped
        with the reason (never a half-done silent failure)."""
        if action not in BULK_ACTIONS:
            raise InvalidInputError(
                f"Unknown bulk action {action!r}.", f"Use one of: {', '.join(BULK_ACTIONS)}."
            )
        ids = self.select(selection)
        result = BulkResult(action)
        if action == "delete":
            deleted = self._delete_jobs(ids, "deleted (bulk)")
            result.done = [j.id for j in deleted]
            found = set(result.done)
            result.skipped = {i: "no such job" for i in ids if i not in found}
            return result
        for job_id in ids:
            try:
                if action == "pause":
                    self.pause(job_id)
                elif action == "resume":
                    self.resume(job_id, restart=restart)
                elif action == "cancel":
                    self.cancel(job_id)
                elif action == "retry":
                    self.retry(job_id, restart=restart)
                else:
                    self.force_fail(job_id)
                result.done.append(job_id)
            except RhizomeError as exc:
                result.skipped[job_id] = exc.message
        return result

    # --- queue ------------------------------------------------------------------------------

    def pause_queue(
        self,
        job_type: str | None = None,
        *,
        reason: str = "queue paused",
        pause_running: bool = False,
    ) -> BulkResult:
        """Workers stop claiming (all jobs, or one type). Running jobs continue unless
        ``pause_running``, which asks them to pause at their next safe point."""
        self.store.set_queue_paused(True, job_type, reason)
        result = BulkResult("pause_queue")
        if pause_running:
            result = self.bulk(
                "pause",
                Selection(
                    statuses=[JobStatus.PROCESSING],
                    job_types=[job_type] if job_type else None,
                    everything=True,
                ),
            )
        log.info("queue paused", extra={"job_type": job_type or "*"})
        return result

    def resume_queue(self, job_type: str | None = None) -> None:
        """Claim again: one job type, or (``None``) everything that was paused."""
        if job_type is None:
            for key, control in self.store.queue_controls().items():
                if control["paused"] and key != "*":
                    self.store.set_queue_paused(False, key, None)
        self.store.set_queue_paused(False, job_type, None)
        log.info("queue resumed", extra={"job_type": job_type or "*"})

    def queue_state(self) -> dict[str, dict[str, Any]]:
        return self.store.queue_controls()

    # --- admin actions (DESIGN §9) -----------------------------------------------------------

    def clear_completed(self) -> int:
        return len(self._delete_where([JobStatus.COMPLETED], "cleared (completed)"))

    def clear_failed(self) -> int:
        return len(self._delete_where([JobStatus.FAILED], "cleared (failed)"))

    def prune_finished(self, days: float) -> dict[str, float]:
        """Delete finished jobs (completed, cancelled, failed with no retry due) last
        changed more than ``days`` ago, with their timeline and checkpoints, then older
        tombstones: what the reaper does with ``RHIZOME_JOB_RETENTION_DAYS``. All users'
        jobs (an admin action of the whole installation)."""
        from rhizome.jobs.retention import prune_finished

        return prune_finished(self.store, self.storage, timedelta(days=days)).to_dict()

    def stop_all(self, reason: str = "stopped by an administrator (stop all)") -> int:
        """Force-fail every active job (pending or processing). Workers running one lose
        ownership and stop at their next write."""
        ids = self.store.job_ids_where(
            statuses=[JobStatus.PENDING, JobStatus.PROCESSING], user_id=self.user_id
        )
        stopped = 0
        for job_id in ids:
            try:
                self.store.force_fail(job_id, reason)
                stopped += 1
            except RhizomeError:
                continue  # finished meanwhile
        return stopped

    def clear_all(self) -> dict[str, Any]:
        """Fix orphans, then delete every job whatever its status."""
        orphans = self.fix_orphans()
        deleted = self._delete_where(None, "cleared (all)")
        return {"deleted": len(deleted), "orphans": orphans}

    def nuclear_reset(self) -> dict[str, Any]:
        """Delete every job, every checkpoint, and (through hooks) the documents that were
        still being processed with their storage."""
        deleted = self._delete_where(None, "deleted by nuclear reset")
        removed = 0
        if self.user_id is None:
            removed = self.storage.delete_prefix("jobs")
        out: dict[str, Any] = {"deleted_jobs": len(deleted), "deleted_checkpoint_files": removed}
        for hook in (h for hooks in self.hooks for h in hooks.reset):
            out.update(hook(self))
        return out

    def fix_orphans(self) -> dict[str, Any]:
        """Release jobs whose worker stopped heartbeating, remove checkpoint files no job
        can resume from (:func:`~rhizome.jobs.retention.remove_orphan_checkpoints`: those
        of jobs that no longer exist or completed), and run the orphan hooks."""
        from rhizome.jobs.retention import remove_orphan_checkpoints

        released = self.store.expire_leases()
        # the reaper removes the same ones every few minutes (one definition of an orphan)
        removed = remove_orphan_checkpoints(self.store, self.storage)
        out: dict[str, Any] = {
            "released_jobs": len(released),
            "removed_checkpoint_files": removed,
        }
        for hook in (h for hooks in self.hooks for h in hooks.orphans):
            out.update(hook(self))
        return out

    # --- helpers -------------------------------------------------------------------------

    def _resolve_quietly(self, job_id: str) -> str:
        """A prefix resolved, or the value as given (the action then skips it with the
        reason: no such job)."""
        try:
            return self.resolve(job_id)
        except RhizomeError:
            return job_id

    def _delete_where(self, statuses: Sequence[str] | None, reason: str) -> list[Job]:
        ids = self.store.job_ids_where(statuses=statuses, user_id=self.user_id)
        return self._delete_jobs(ids, reason)

    def _delete_jobs(self, ids: Sequence[str], reason: str) -> list[Job]:
        deleted = self.store.delete_many(ids, user_id=self.user_id, reason=reason)
        for job in deleted:
            self._drop_checkpoint_files(job)
        return deleted

    def _drop_checkpoint_files(self, job: Job) -> None:
        if job.last_checkpoint_path:  # completed jobs dropped theirs already
            try:
                delete_checkpoints(self.storage, job)
            except RhizomeError as exc:
                log.warning("could not delete checkpoints: %s", exc, extra={"job_id": job.id})
