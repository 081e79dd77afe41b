"""Retention (RHIZOME_JOB_RETENTION_DAYS) on both stores: finished jobs older than the
cutoff go with their timeline, log lines and checkpoint files, then old tombstones;
everything else stays. Behaviour only (no timings)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from rhizome.jobs import retention
from rhizome.jobs.admin import Admin
from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.storage import LocalStorage

OLD = datetime.now(UTC) - timedelta(days=40)


def backdate(db_url: str, job_ids: list[str], when: datetime = OLD) -> None:
    """Move the jobs' last change (and their timeline) into the past."""
    if db_url.startswith("sqlite:///"):
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            for job_id in job_ids:
                conn.execute(
                    "UPDATE background_jobs SET updated_at = ? WHERE id = ?", (stamp, job_id)
                )
                conn.execute("UPDATE job_events SET at = ? WHERE job_id = ?", (stamp, job_id))
    else:
        with psycopg.connect(db_url, autocommit=True) as conn:
            for job_id in job_ids:
                conn.execute(
                    "UPDATE background_jobs SET updated_at = %s WHERE id = %s", (when, job_id)
                )
                conn.execute("UPDATE job_events SET at = %s WHERE job_id = %s", (when, job_id))


def _events(store: SqlJobStore, job_id: str) -> int:
    return len(store.events(job_id))


@pytest.fixture
def history(store: SqlJobStore, storage: LocalStorage, db_url: str) -> dict[str, Any]:
    """Old jobs in every state, recent ones, an old and a recent tombstone."""
    done = run_inline("noop", {"stages": 1, "units": 2}, store=store, storage=storage).job
    failed = run_inline(
        "noop", {"fail_times": 1, "error": "permanent"}, store=store, storage=storage
    ).job
    retrying = run_inline(
        "noop", {"fail_times": 5, "error": "transient"}, store=store, storage=storage
    ).job
    assert failed.status is JobStatus.FAILED and failed.next_retry_at is None
    assert retrying.status is JobStatus.FAILED and retrying.next_retry_at is not None
    recent = run_inline("noop", {}, store=store, storage=storage).job
    # not due for a long time, so the harness never claims them
    later = datetime.now(UTC) + timedelta(days=365)
    [cancelled, pending, deleted] = store.enqueue([NewJob("noop", {}, run_at=later)] * 3)
    store.request_cancel(cancelled.id)
    assert store.get(cancelled.id).status is JobStatus.CANCELLED
    # a checkpoint file left behind by the cancelled job
    key = f"jobs/{cancelled.id}/stage-step-1-0.json"
    storage.put(key, b"{}")
    _set_checkpoint(db_url, cancelled.id, key)
    Admin(store, storage).delete(deleted.id)  # leaves a tombstone event
    old = [done.id, failed.id, retrying.id, cancelled.id, pending.id, deleted.id]
    backdate(db_url, old)
    return {
        "done": done.id,
        "failed": failed.id,
        "retrying": retrying.id,
        "cancelled": cancelled.id,
        "pending": pending.id,
        "deleted": deleted.id,
        "recent": recent.id,
        "checkpoint": key,
    }


def _set_checkpoint(db_url: str, job_id: str, key: str) -> None:
    sql = "UPDATE background_jobs SET last_checkpoint_path = %s WHERE id = %s"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            conn.execute(sql.replace("%s", "?"), (key, job_id))
    else:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql, (key, job_id))


def _exists(store: SqlJobStore, job_id: str) -> bool:
    return bool(store.list_jobs(ids=[job_id], limit=1))


def test_prune_finished_keeps_what_is_not_finished_or_not_old(
    store: SqlJobStore, storage: LocalStorage, history: dict[str, Any]
) -> None:
    assert _events(store, history["deleted"]) == 1  # the tombstone
    result = retention.prune_finished(store, storage, timedelta(days=30), batch=2)
    gone = ("done", "failed", "cancelled")
    kept = ("retrying", "pending", "recent")
    assert result.jobs == len(gone) and result.tombstones == 1, result
    assert result.checkpoint_files == 1 and not storage.list(f"jobs/{history['cancelled']}")
    for name in gone:
        assert not _exists(store, history[name]), name
        assert _events(store, history[name]) == 0, name
    for name in kept:
        assert _exists(store, history[name]), name
        assert _events(store, history[name]) > 0, name
    assert _events(store, history["deleted"]) == 0  # the old tombstone went too
    # nothing left to do: a second run changes nothing
    again = retention.prune_finished(store, storage, timedelta(days=30))
    assert (again.jobs, again.events, again.tombstones) == (0, 0, 0)


def test_the_reaper_prunes_once_per_interval_and_not_when_off(
    store: SqlJobStore,
    storage: LocalStorage,
    history: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
) -> None:
    monkeypatch.setattr(retention, "_LAST", {})
    retention.prune_due(store, storage, days=30, wait=True)  # a first heartbeat: not yet
    assert _exists(store, history["done"])
    monkeypatch.setattr(retention, "FIRST_DELAY_SECONDS", 0.0)
    monkeypatch.setattr(retention, "_LAST", {})
    retention.prune_due(store, storage, days=0, wait=True)  # retention off: nothing goes
    assert _exists(store, history["done"])
    monkeypatch.setattr(retention, "_LAST", {})
    retention.prune_due(store, storage, days=30, wait=True)
    assert not _exists(store, history["done"]) and _exists(store, history["pending"])
    # within the interval the reaper does not prune again
    newer = run_inline("noop", {}, store=store, storage=storage).job
    backdate(db_url, [newer.id])
    retention.prune_due(store, storage, days=30, wait=True)
    assert _exists(store, newer.id)


def test_admin_prune_finished(
    store: SqlJobStore, storage: LocalStorage, history: dict[str, Any]
) -> None:
    out = Admin(store, storage).prune_finished(30)
    assert out["jobs"] == 3 and out["tombstones"] == 1
    assert _exists(store, history["recent"]) and _exists(store, history["retrying"])


def _put(storage: LocalStorage, key: str) -> str:
    storage.put(key, b"{}")
    return key


def test_the_reaper_removes_checkpoints_no_job_can_resume_from(
    store: SqlJobStore,
    storage: LocalStorage,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kill between recording a completion (which clears the row's checkpoint) and
    deleting the files, or between deleting a job's row and its files, leaves checkpoint
    files behind. The reaper removes them within SWEEP_EVERY_SECONDS, whatever the
    retention setting; checkpoints a job can still resume from stay: pending, processing
    and paused jobs, and failed and cancelled ones (retried by hand from their last
    checkpoint). ``fix-orphans`` removes exactly the same files."""
    later = datetime.now(UTC) + timedelta(days=365)
    doc_done, doc_busy, doc_cancelled = (str(uuid.uuid4()) for _ in range(3))

    def document_job(doc: str, *, run: bool = False) -> str:
        """A job of the document: run to completion now, or due in a year."""
        when = None if run else later
        [job] = store.enqueue(
            [NewJob("noop", {}, entity_type="document", entity_id=doc, run_at=when)]
        )
        if run:
            run_inline("noop", job_id=job.id, store=store, storage=storage)
        return job.id

    # a processing job (claimed by a live worker) with its checkpoint
    [running] = store.enqueue([NewJob("noop", {})])
    assert [j.id for j in store.claim("w-live", 1, 60.0, ["noop"])] == [running.id]
    # finished ones: completed (twice: a job folder and a document's), a deleted one
    done = run_inline("noop", {}, store=store, storage=storage).job
    doc_job = document_job(doc_done, run=True)
    [deleted] = store.enqueue([NewJob("noop", {}, run_at=later)])
    # resumable: pending, paused, cancelled, failed (by hand), and a document whose
    # detection is pending while its processing completed
    [pending, paused, cancelled] = store.enqueue([NewJob("noop", {}, run_at=later)] * 3)
    store.request_pause(paused.id)
    store.request_cancel(cancelled.id)
    failed = run_inline(
        "noop", {"fail_times": 1, "error": "permanent"}, store=store, storage=storage
    ).job
    assert failed.status is JobStatus.FAILED
    document_job(doc_busy, run=True)
    document_job(doc_busy)  # still pending
    cancelled_doc = document_job(doc_cancelled)
    store.request_cancel(cancelled_doc)

    orphans = [
        _put(storage, f"jobs/{done.id}/stage-step-1.0123456789abcdef.json"),
        _put(storage, f"jobs/{deleted.id}/stage-step-1.0123456789abcdef.json"),
        _put(storage, f"documents/local/{doc_done}/stage-extract.0123456789abcdef.json"),
        _put(storage, f"documents/local/{doc_done}/stage-semantic.{doc_job}.x.0-16.json"),
    ]
    Admin(store, storage).delete(deleted.id)
    kept = [
        _put(storage, f"jobs/{running.id}/stage-step-1.0123456789abcdef.json"),
        _put(storage, f"jobs/{pending.id}/stage-step-1.0123456789abcdef.json"),
        _put(storage, f"jobs/{paused.id}/stage-step-1.0123456789abcdef.json"),
        _put(storage, f"jobs/{cancelled.id}/stage-step-1.0123456789abcdef.json"),
        _put(storage, f"jobs/{failed.id}/stage-step-1.0123456789abcdef.json"),
        _put(storage, f"documents/local/{doc_busy}/stage-embed.0123456789abcdef.json"),
        _put(storage, f"documents/local/{doc_cancelled}/stage-embed.0123456789abcdef.json"),
        # not checkpoints: a document's other files stay
        _put(storage, f"documents/local/{doc_done}/source.txt"),
        _put(storage, f"documents/local/{doc_done}/connections-backup-20261207T000000Z.json"),
    ]
    for job_id, key in ((cancelled.id, kept[3]), (failed.id, kept[4]), (paused.id, kept[2])):
        _set_checkpoint(db_url, job_id, key)

    monkeypatch.setattr(retention, "FIRST_DELAY_SECONDS", 0.0)
    monkeypatch.setattr(retention, "_LAST", {})
    monkeypatch.setattr(retention, "_SWEPT", {})
    retention.prune_due(store, storage, days=0, wait=True)  # retention off: the sweep runs
    left = set(storage.list(""))
    assert not left & set(orphans), left & set(orphans)
    assert set(kept) <= left, set(kept) - left
    for name in (pending, paused, cancelled, failed):
        assert store.get(name.id).last_checkpoint_path == (
            None if name is pending else f"jobs/{name.id}/stage-step-1.0123456789abcdef.json"
        )

    # within SWEEP_EVERY_SECONDS the reaper does not sweep again; fix-orphans does, by
    # the same definition
    again = _put(storage, f"jobs/{done.id}/stage-step-2.0123456789abcdef.json")
    retention.prune_due(store, storage, days=0, wait=True)
    assert storage.exists(again)
    out = Admin(store, storage).fix_orphans()
    assert out["removed_checkpoint_files"] == 1 and not storage.exists(again)
    assert set(kept) <= set(storage.list(""))
    # once the pending detection of doc_busy completed, its document's checkpoints go too
    for job in store.list_jobs(entity_id=doc_busy, limit=10):
        if job.status is JobStatus.PENDING:
            store.delete(job.id)
    assert retention.remove_orphan_checkpoints(store, storage) == 1
    assert not storage.exists(kept[5])
