"""A seeded job history for the operator's view: jobs whose timelines happened minutes ago,
with known run, stage and claim times, written through the store and then moved back in
time by rewriting their events' timestamps (no waiting)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from rhizome.jobs.model import ErrorType, Job, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.sqlite import format_time

SEED_TYPE = "legacy_import"
"""Not registered: no worker ever runs it, and it is not a hidden type."""
WORKER = "seed-host:1:history"


class Raw:
    """Plain SQL on the test database (what the seeding rewrites is test-only)."""

    def __init__(self, db_url: str) -> None:
        self.sqlite = db_url.startswith("sqlite")
        self.db_url = db_url

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if self.sqlite:
            conn = sqlite3.connect(self.db_url.removeprefix("sqlite:///"))
            try:
                conn.execute(sql.replace("%s", "?"), params)
                conn.commit()
            finally:
                conn.close()
        else:
            with psycopg.connect(self.db_url, autocommit=True) as pg:
                pg.execute(sql, params)

    def time(self, value: datetime) -> Any:
        return format_time(value) if self.sqlite else value


@dataclass(frozen=True)
class Seeded:
    job: Job
    done_at: datetime
    run_seconds: float
    stage_seconds: dict[str, float]
    claim_seconds: float


def seed_job(
    store: SqlJobStore,
    raw: Raw,
    *,
    minutes_ago: float,
    run_seconds: float = 30.0,
    waited_seconds: float = 60.0,
    fail: bool = False,
    now: datetime | None = None,
    user: str = "local",
    job_type: str = SEED_TYPE,
) -> Seeded:
    """One job that was created, waited ``waited_seconds``, ran ``run_seconds`` (two thirds
    in stage ``load``, one third in ``save``) and completed (or failed) ``minutes_ago``."""
    now = now or datetime.now(UTC)
    done = now - timedelta(minutes=minutes_ago)
    started = done - timedelta(seconds=run_seconds)
    created = started - timedelta(seconds=waited_seconds)
    save_at = done - timedelta(seconds=run_seconds / 3)
    [job] = store.enqueue([NewJob(job_type, {"title": f"seeded {minutes_ago}"}, user_id=user)])
    [claimed] = store.claim(WORKER, 1, 300, [job_type])
    assert claimed.id == job.id, "another job of the seeded type was due"
    store.update_progress(
        job.id, WORKER, {"percent": 10, "stage": "load"}, event="stage load started"
    )
    store.update_progress(
        job.id, WORKER, {"percent": 70, "stage": "save"}, event="stage save started"
    )
    if fail:
        store.fail(
            job.id,
            WORKER,
            error_type=ErrorType.PERMANENT,
            last_error="boom",
            error_message="It broke.",
            retry_delay=None,
        )
    else:
        store.complete(WORKER, [(job.id, {"ok": True})])
    events = store.events(job.id)
    when = [created, started, started, save_at, done]
    assert len(events) == len(when), [e.message for e in events]
    for event, at in zip(events, when, strict=True):
        raw.run("UPDATE job_events SET at = %s WHERE id = %s", (raw.time(at), event.id))
    raw.run(
        "UPDATE background_jobs SET created_at = %s, run_at = %s, started_at = %s,"
        " completed_at = %s, updated_at = %s WHERE id = %s",
        (
            raw.time(created),
            raw.time(created),
            raw.time(started),
            raw.time(done),
            raw.time(done),
            job.id,
        ),
    )
    stages = {"load": run_seconds * 2 / 3, "save": run_seconds / 3}
    return Seeded(store.get(job.id), done, run_seconds, stages, waited_seconds)
