"""Retention (RHIZOME_JOB_RETENTION_DAYS) on both stores: finished jobs older than the
cutoff go with their timeline, log lines and checkpoint files, then old tombstones;
everything else stays. Behaviour only (no timings)."""

from __future__ import annotations

import sqlite3
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
