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
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rhizome.jobs.context import delete_checkpoints
from rhizome.jobs.model import Job
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import Storage

__all__ = ["BATCH", "EVERY_SECONDS", "PruneResult", "prune_due", "prune_finished"]

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
    setting > 0), in a background thread so the heartbeat is never held up (``wait``: in
    the caller's thread). Never raises: a failed prune is logged and tried at the next
    run."""
    key = str(getattr(store, "url", id(store)))
    now = time.monotonic()
    with _LOCK:
        # the first run comes FIRST_DELAY_SECONDS after the process's first heartbeat: a
        # worker that only lives for a burst does not prune on its way
        last = _LAST.setdefault(key, now - EVERY_SECONDS + FIRST_DELAY_SECONDS)
        if key in _RUNNING or now - last < EVERY_SECONDS:
            return
        _LAST[key] = now
        _RUNNING.add(key)

    def run() -> None:
        try:
            _prune(store, storage, days)
        finally:
            with _LOCK:
                _RUNNING.discard(key)

    if wait:
        run()
    else:
        threading.Thread(target=run, name="rhizome-retention", daemon=True).start()


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
