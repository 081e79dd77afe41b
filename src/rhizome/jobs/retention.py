"""Retention: the cost of the job tables does not grow with history.

Finished jobs (completed, cancelled, and failed ones with no retry scheduled) whose last
change is older than ``RHIZOME_JOB_RETENTION_DAYS`` are deleted with their timeline, their
log lines and any checkpoint files left; then the timeline lines of jobs deleted earlier
(the tombstones an admin delete leaves) once they are that old too. Work goes in batches
of :data:`BATCH` jobs, each in its own transaction, oldest first, so a large backlog never
holds a long lock and a crash loses nothing but the batch in flight (the next run
continues).

The reaper runs it: every worker's heartbeat calls :func:`prune_due`, which prunes at
most once per :data:`EVERY_SECONDS` per process (several workers pruning at once only
share the batches). ``rhizome.jobs.admin.Admin.prune_finished`` runs it by hand.

The same reaper removes **orphaned checkpoint files** more often (every
:data:`SWEEP_EVERY_SECONDS`, whatever the retention setting): a worker records a
completion (which clears the row's checkpoint) and only then deletes the files, so a
kill in between leaves them behind; so does one between deleting a job's row and its
files. :func:`remove_orphan_checkpoints` is the one definition of an orphan, shared with
``rhizome admin fix-orphans``: a checkpoint no job can resume from. Checkpoints of
cancelled and failed jobs stay: both can be retried by hand from their last checkpoint
(they go with the job when retention prunes it).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rhizome.jobs.context import delete_checkpoints
from rhizome.jobs.model import Job, JobFilter, JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import Storage

__all__ = [
    "BATCH",
    "EVERY_SECONDS",
    "SWEEP_EVERY_SECONDS",
    "PruneResult",
    "prune_due",
    "prune_finished",
    "remove_orphan_checkpoints",
]

log = logging.getLogger("rhizome.jobs.retention")

BATCH = 1000
"""Jobs per transaction."""
EVERY_SECONDS = 3600.0
"""How often the reaper of one process prunes."""
FIRST_DELAY_SECONDS = 60.0
"""How long after a process's first heartbeat its reaper first prunes."""
MAX_BATCHES = 50
"""Batches per reaper run (50,000 jobs); the rest waits for the next run, so a heartbeat
is never held up for long by a first prune of a large backlog."""
SWEEP_EVERY_SECONDS = 300.0
"""How often the reaper of one process removes orphaned checkpoint files."""
LOOKUP_BATCH = 500
"""Job or document ids per status look-up of the sweep."""


@dataclass
class PruneResult:
    jobs: int = 0
    events: int = 0
    tombstones: int = 0
    checkpoint_files: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "jobs": self.jobs,
            "events": self.events,
            "tombstones": self.tombstones,
            "checkpoint_files": self.checkpoint_files,
            "seconds": round(self.seconds, 3),
        }


def prune_finished(
    store: SqlJobStore,
    storage: Storage | None,
    older_than: timedelta,
    *,
    batch: int = BATCH,
    max_batches: int | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """Delete finished jobs last changed before ``now - older_than`` with their timeline,
    log lines and checkpoint files, then tombstones older than that. Returns the counts."""
    started = time.monotonic()
    cutoff = (now or datetime.now(UTC)) - older_than
    result = PruneResult()
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        with store.transaction() as tx:
            rows = tx.all("retention_candidates", {"cutoff": cutoff, "limit": batch})
            if not rows:
                break
            ids = [str(r["id"]) for r in rows]
            result.events += tx.run("retention_delete_events", {"ids": ids})
            tx.run("retention_delete_logs", {"ids": ids})
            deleted = tx.all("retention_delete_jobs", {"ids": ids, "cutoff": cutoff})
            gone = {str(r["id"]) for r in deleted}
        result.jobs += len(gone)
        if storage is not None:
            for row in rows:
                if str(row["id"]) in gone and row.get("last_checkpoint_path"):
                    try:
                        result.checkpoint_files += delete_checkpoints(storage, Job.from_row(row))
                    except Exception as exc:  # an orphan for fix-orphans; the row is gone
                        log.warning("could not delete checkpoints of %s: %s", row["id"], exc)
        if len(rows) < batch:
            break
    while max_batches is None or batches < max_batches:
        batches += 1
        with store.transaction() as tx:
            removed = tx.run("retention_delete_orphan_events", {"cutoff": cutoff, "limit": batch})
        result.tombstones += removed
        if removed < batch:
            break
    result.seconds = time.monotonic() - started
    return result


_LAST: dict[str, float] = {}
_SWEPT: dict[str, float] = {}
_RUNNING: set[str] = set()
_LOCK = threading.Lock()


def prune_due(
    store: SqlJobStore,
    storage: Storage | None,
    days: float | None = None,
    *,
    wait: bool = False,
) -> None:
    """The reaper's part (a worker's heartbeat): prune once per :data:`EVERY_SECONDS` per
    process and database, when retention is on (``days`` or the ``job_retention_days``
    setting > 0), and remove orphaned checkpoint files once per
    :data:`SWEEP_EVERY_SECONDS`, in a background thread so the heartbeat is never held up
    (``wait``: in the caller's thread). Never raises: a failed run is logged and tried at
    the next one."""
    key = str(getattr(store, "url", id(store)))
    now = time.monotonic()
    with _LOCK:
        # the first runs come FIRST_DELAY_SECONDS after the process's first heartbeat: a
        # worker that only lives for a burst does not prune on its way
        last = _LAST.setdefault(key, now - EVERY_SECONDS + FIRST_DELAY_SECONDS)
        swept = _SWEPT.setdefault(key, now - SWEEP_EVERY_SECONDS + FIRST_DELAY_SECONDS)
        if key in _RUNNING:
            return
        prune = now - last >= EVERY_SECONDS
        sweep = storage is not None and now - swept >= SWEEP_EVERY_SECONDS
        if not (prune or sweep):
            return
        if prune:
            _LAST[key] = now
        if sweep:
            _SWEPT[key] = now
        _RUNNING.add(key)

    def run() -> None:
        try:
            if prune:
                _prune(store, storage, days)
            if sweep and storage is not None:
                _sweep(store, storage)
        finally:
            with _LOCK:
                _RUNNING.discard(key)

    if wait:
        run()
    else:
        threading.Thread(target=run, name="rhizome-retention", daemon=True).start()


_JOB_FOLDER = re.compile(r"^jobs/([0-9a-f-]{36})/")
_DOCUMENT_CHECKPOINT = re.compile(r"^documents/[^/]+/([0-9a-f-]{36})/stage-[^/]*\.json$")
_UNFINISHED_OR_RETRYABLE = tuple(s.value for s in JobStatus if s is not JobStatus.COMPLETED)


def remove_orphan_checkpoints(store: SqlJobStore, storage: Storage) -> int:
    """Remove the checkpoint files no job can resume from; returns how many.

    A job's own folder (``jobs/<id>/``) is orphaned when the job is gone or completed; a
    document's checkpoint files (``documents/<user>/<doc>/stage-*.json``, shared by the
    jobs of that document) when none of its jobs is anything but completed. Pending,
    processing and paused jobs resume from theirs; failed and cancelled ones can be
    retried by hand from theirs, so those stay too. Files are listed *before* the jobs
    are looked at, and only listed files go: a job created meanwhile writes new keys."""
    removed = 0
    folders: dict[str, str] = {}
    for key in storage.list("jobs"):
        match = _JOB_FOLDER.match(key)
        if match:
            folders.setdefault(match.group(1), key)
    documents: dict[str, list[str]] = {}
    for key in storage.list("documents"):
        match = _DOCUMENT_CHECKPOINT.match(key)
        if match:
            documents.setdefault(match.group(1), []).append(key)
    if folders:
        status: dict[str, JobStatus] = {}
        for part in _parts(sorted(folders)):
            status.update((j.id, j.status) for j in store.list_jobs(ids=part, limit=len(part)))
        for job_id in folders:
            if status.get(job_id) in (None, JobStatus.COMPLETED):
                removed += storage.delete_prefix(f"jobs/{job_id}")
    if documents:
        in_use: set[str] = set()
        for part in _parts(sorted(documents)):
            f = JobFilter(
                entity_type="document",
                entity_ids=tuple(part),
                statuses=_UNFINISHED_OR_RETRYABLE,
            )
            in_use.update(str(j.entity_id) for j in store.search_jobs(f, limit=1_000_000))
        for doc, keys in documents.items():
            if doc in in_use:
                continue
            for key in keys:
                storage.delete(key)
                removed += 1
    return removed


def _parts(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + LOOKUP_BATCH]) for i in range(0, len(ids), LOOKUP_BATCH)]


def _sweep(store: SqlJobStore, storage: Storage) -> None:
    try:
        removed = remove_orphan_checkpoints(store, storage)
        if removed:
            log.info("reaper: removed %d orphaned checkpoint file(s)", removed)
    except Exception as exc:
        log.error("reaper: removing orphaned checkpoints failed: %s", exc)


def _prune(store: SqlJobStore, storage: Storage | None, days: float | None) -> None:
    try:
        if days is None:
            from rhizome.config import load_settings

            days = load_settings().job_retention_days
        if not days or days <= 0:
            return
        result = prune_finished(store, storage, timedelta(days=days), max_batches=MAX_BATCHES)
        if result.jobs or result.tombstones:
            log.info(
                "retention: pruned %d finished job(s) older than %g day(s), %d timeline "
                "line(s), %d tombstone(s)",
                result.jobs,
                days,
                result.events,
                result.tombstones,
            )
    except Exception as exc:
        log.error("retention: pruning failed: %s", exc)
