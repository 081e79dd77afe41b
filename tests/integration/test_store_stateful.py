"""A model-based test of the job store: random sequences of user, worker and reaper actions
against a real SQLite file and a real PostgreSQL database, checked against a small model.

The model is written from DESIGN §4 and §7 by hand (not from ``states.TRANSITIONS``), so a
mistake in the table, the SQL or the store logic shows up as a disagreement.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from rhizome.errors import IllegalTransitionError
from rhizome.jobs.model import Control, ErrorType, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore, open_store

P, R, Z = JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.PAUSED
C, F, X = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED
WORKERS = ("worker-a", "worker-b")
LEASE = 600.0
PAST = "2000-01-01T00:00:00.000Z"


class Raw:
    """A direct connection to the test database, beside the store."""

    def __init__(self, db_url: str) -> None:
        self.sqlite = db_url.startswith("sqlite:///")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(
                db_url.removeprefix("sqlite:///"), isolation_level=None, timeout=30
            )
        else:
            self.conn = psycopg.connect(db_url, autocommit=True)

    def reset(self) -> None:
        """Empty tables for each example (a paused queue would stop every claim)."""
        if self.sqlite:
            for table in ("background_jobs", "job_events", "workers", "queue_controls"):
                self.conn.execute(f"DELETE FROM {table}")
        else:
            self.conn.execute("TRUNCATE background_jobs, job_events, workers, queue_controls")

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        cur = self.conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []

    def close(self) -> None:
        self.conn.close()


@dataclass
class M:
    """The model of one job."""

    status: JobStatus
    priority: int
    created_at: Any
    key: str | None = None
    owner: str | None = None
    attempt: int = 0
    reason: str | None = None  # claim_reason: why it went (back) to pending
    retrying: bool = False  # failed with an automatic retry pending
    expired: bool = False  # processing with a lease in the past
    pause: bool = False  # pause_requested
    cancel: bool = False  # cancel_requested

    def unfinished(self) -> bool:
        return self.status in (P, R, Z) or (self.status is F and self.retrying)


# The legal user actions, from DESIGN §7 (pause/cancel of a processing job are requests).
USER_ACTIONS = {
    "pause": {P, R},
    "cancel": {P, Z, F, R},
    "resume": {Z},
    "retry": {F, X},
    "force_fail": {P, R, Z},
}


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, store: SqlJobStore, raw: Raw) -> None:
        super().__init__()
        self.store = store
        self.raw = raw
        self.jobs: dict[str, M] = {}
        self.deleted: set[str] = set()
        self.attempts: dict[str, int] = {}

    # --- helpers -----------------------------------------------------------------------------

    def ids(self, *statuses: JobStatus) -> list[str]:
        # insertion order, never uuid order: the choices must replay the same way
        return [i for i, m in self.jobs.items() if not statuses or m.status in statuses]

    def key_held_by_other(self, job_id: str) -> bool:
        key = self.jobs[job_id].key
        return key is not None and any(
            i != job_id and m.key == key and m.unfinished() for i, m in self.jobs.items()
        )

    def legal(self, action: str, job_id: str) -> bool:
        m = self.jobs[job_id]
        if m.status not in USER_ACTIONS[action]:
            return False
        return not (action == "retry" and self.key_held_by_other(job_id))

    def snapshot(self, job_id: str) -> tuple[dict[str, Any], int]:
        return self.store.get(job_id).to_dict(), len(self.store.events(job_id))

    def _run_user_action(self, action: str, job_id: str) -> None:
        call = {
            "pause": self.store.request_pause,
            "cancel": self.store.request_cancel,
            "resume": self.store.resume,
            "retry": self.store.retry,
            "force_fail": self.store.force_fail,
        }[action]
        call(job_id)

    # --- setup ---------------------------------------------------------------------------------

    @initialize()
    def reset(self) -> None:
        self.raw.reset()

    # --- user actions --------------------------------------------------------------------------

    @rule(
        priority=st.integers(0, 2),
        key=st.sampled_from([None, None, "k1", "k2"]),
        twice=st.booleans(),
    )
    def enqueue(self, priority: int, key: str | None, twice: bool) -> None:
        """One job; with a key, optionally twice in one batch (deduplicated to one)."""
        n = 2 if key is not None and twice else 1
        jobs = self.store.enqueue([NewJob("noop", priority=priority, dedupe_key=key)] * n)
        time.sleep(0.002)  # distinct created_at (SQLite keeps milliseconds): no claim ties
        assert len({j.id for j in jobs}) == 1
        job = jobs[0]
        holder = [
            i for i, m in self.jobs.items() if key is not None and m.key == key and m.unfinished()
        ]
        if holder:
            assert job.id == holder[0]
            return
        assert job.status is P
        assert job.id not in self.jobs
        assert all(m.created_at != job.created_at for m in self.jobs.values())
        self.jobs[job.id] = M(P, priority, job.created_at, key=key)

    @precondition(lambda self: self.jobs)
    @rule(action=st.sampled_from(sorted(USER_ACTIONS)), data=st.data())
    def user_action(self, action: str, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids()))
        m = self.jobs[job_id]
        if not self.legal(action, job_id):
            self._expect_refused(action, job_id)
            return
        self._run_user_action(action, job_id)
        if action == "pause":
            if m.status is R:
                m.pause = True
            else:
                m.status, m.pause = Z, False
        elif action == "cancel":
            if m.status is R:
                m.cancel = True
            else:
                m.status, m.retrying, m.pause, m.cancel = X, False, False, False
        elif action == "resume":
            m.status, m.pause, m.reason = P, False, "resume"
        elif action == "retry":
            m.status, m.retrying, m.pause, m.cancel = P, False, False, False
            m.reason = "retry"
        else:  # force_fail
            m.status, m.retrying, m.pause, m.cancel, m.expired = F, False, False, False, False

    @precondition(lambda self: any(not self.legal(a, i) for a in USER_ACTIONS for i in self.jobs))
    @rule(data=st.data())
    def illegal_action(self, data: st.DataObject) -> None:
        pairs = [(a, i) for a in sorted(USER_ACTIONS) for i in self.ids() if not self.legal(a, i)]
        action, job_id = data.draw(st.sampled_from(pairs))
        self._expect_refused(action, job_id)

    def _expect_refused(self, action: str, job_id: str) -> None:
        before = self.snapshot(job_id)
        try:
            self._run_user_action(action, job_id)
        except IllegalTransitionError:
            pass
        else:
            raise AssertionError(f"{action} of a {self.jobs[job_id].status} job was accepted")
        assert self.snapshot(job_id) == before

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids()))
        status = self.jobs[job_id].status
        self.store.delete(job_id)
        del self.jobs[job_id]
        self.deleted.add(job_id)
        events = self.store.events(job_id)
        assert [(e.from_status, e.to_status) for e in events] == [(status.value, None)]

    # --- workers -------------------------------------------------------------------------------

    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 3))
    def claim(self, worker: str, n: int) -> None:
        candidates = [
            i for i, m in self.jobs.items() if m.status is P or (m.status is R and m.expired)
        ]
        claimed = self.store.claim(worker, n, LEASE, None)
        got = [j.id for j in claimed]
        assert len(got) == len(set(got)) == min(n, len(candidates))
        assert set(got) <= set(candidates)

        def order(i: str) -> tuple[int, Any]:
            return (-self.jobs[i].priority, self.jobs[i].created_at)

        # highest priority first, then oldest (created_at values are distinct)
        assert got == sorted(candidates, key=order)[:n]
        for job in claimed:
            m = self.jobs[job.id]
            taken = m.status is R  # an expired lease, taken over
            # attempts count the first run, retries and takeovers, not resumes or releases
            if m.attempt == 0 or taken or m.reason in (None, "retry", "takeover"):
                m.attempt += 1
            if taken:
                m.reason = "takeover"
            m.status, m.owner, m.expired = R, worker, False
            assert job.worker_id == worker
            assert job.attempt == m.attempt

    def _processing(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(self.ids(R)))

    @precondition(lambda self: self.ids(R))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        job_id = self._processing(data)
        m = self.jobs[job_id]
        assert m.owner is not None
        assert self.store.complete(m.owner, [(job_id, {"ok": True})]) == [job_id]
        m.status, m.pause, m.cancel, m.expired = C, False, False, False

    @precondition(lambda self: self.ids(R))
    @rule(data=st.data())
    def complete_by_non_owner(self, data: st.DataObject) -> None:
        job_id = self._processing(data)
        other = next(w for w in WORKERS if w != self.jobs[job_id].owner)
        before = self.snapshot(job_id)
        assert self.store.complete(other, [(job_id, {})]) == []
        assert self.snapshot(job_id) == before

    @precondition(lambda self: self.ids(R))
    @rule(data=st.data(), retry=st.booleans())
    def fail(self, data: st.DataObject, retry: bool) -> None:
        job_id = self._processing(data)
        m = self.jobs[job_id]
        assert m.owner is not None
        self.store.fail(
            job_id,
            m.owner,
            error_type=ErrorType.TRANSIENT if retry else ErrorType.PERMANENT,
            last_error="boom",
            error_message="It broke.",
            retry_delay=0.0 if retry else None,
        )
        m.status, m.retrying, m.pause, m.cancel, m.expired = F, retry, False, False, False

    @precondition(
        lambda self: any(m.pause or m.cancel for m in self.jobs.values() if m.status is R)
    )
    @rule(data=st.data())
    def worker_honours_request(self, data: st.DataObject) -> None:
        """The owner reaches a safe point and stops: cancel wins over pause."""
        job_id = data.draw(
            st.sampled_from([i for i in self.ids(R) if self.jobs[i].pause or self.jobs[i].cancel])
        )
        m = self.jobs[job_id]
        assert m.owner is not None
        if m.cancel:
            self.store.stop(job_id, m.owner, "cancel", "cancelled at a safe point")
            m.status, m.pause, m.cancel = X, False, False
        else:
            self.store.stop(job_id, m.owner, "pause", "paused at a safe point")
            m.status, m.pause = Z, False
        m.expired = False

    @precondition(lambda self: self.ids(R))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        job_id = self._processing(data)
        m = self.jobs[job_id]
        assert m.owner is not None
        self.store.stop(job_id, m.owner, "release", "shutting down")
        m.status, m.expired, m.reason = P, False, "release"

    @precondition(lambda self: self.ids(R))
    @rule(worker=st.sampled_from(WORKERS))
    def heartbeat(self, worker: str) -> None:
        expected = {
            i: Control(m.pause, m.cancel)
            for i, m in self.jobs.items()
            if m.status is R and m.owner == worker
        }
        assert self.store.heartbeat(worker, LEASE, list(self.jobs)) == expected
        for i in expected:
            self.jobs[i].expired = False

    @precondition(lambda self: self.ids(R))
    @rule(data=st.data())
    def worker_dies(self, data: st.DataObject) -> None:
        """Its lease runs out (moved into the past rather than waited for)."""
        job_id = self._processing(data)
        self.raw.run("UPDATE background_jobs SET lease_expires_at = ? WHERE id = ?", (PAST, job_id))
        self.jobs[job_id].expired = True

    # --- the reaper ------------------------------------------------------------------------------

    @precondition(lambda self: self.ids(R))
    @rule()
    def expire_leases(self) -> None:
        expected = {i for i, m in self.jobs.items() if m.status is R and m.expired}
        assert set(self.store.expire_leases()) == expected
        for i in expected:
            self.jobs[i].status, self.jobs[i].reason = P, "takeover"
            self.jobs[i].expired = False

    @precondition(lambda self: self.ids(F))
    @rule()
    def promote_retries(self) -> None:
        expected = {i for i, m in self.jobs.items() if m.status is F and m.retrying}
        assert set(self.store.promote_retries()) == expected
        for i in expected:
            self.jobs[i].status, self.jobs[i].retrying = P, False
            self.jobs[i].reason = "retry"

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        rows = {j.id: j for j in self.store.list_jobs(limit=10_000)}
        assert set(rows) == set(self.jobs)
        for job_id, m in self.jobs.items():
            job = rows[job_id]
            assert job.status is m.status, job_id
            assert job.attempt == m.attempt, job_id
            assert job.claim_reason == m.reason, job_id
            assert (job.pause_requested, job.cancel_requested) == (m.pause, m.cancel), job_id
            assert (job.next_retry_at is not None) == (m.status is F and m.retrying), job_id
            if m.status is R:
                assert job.worker_id == m.owner
                assert job.lease_expires_at is not None
            else:
                assert job.lease_expires_at is None, job_id

    @invariant()
    def one_owner_per_processing_job(self) -> None:
        owned: dict[str, str] = {}
        for worker in WORKERS:
            for (job_id,) in self.raw.run(
                "SELECT id FROM background_jobs WHERE status = 'processing' AND worker_id = ?",
                (worker,),
            ):
                assert str(job_id) not in owned
                owned[str(job_id)] = worker
        assert set(owned) == set(self.ids(R))

    @invariant()
    def at_most_one_unfinished_job_per_key(self) -> None:
        for key in ("k1", "k2"):
            holders = [i for i, m in self.jobs.items() if m.key == key and m.unfinished()]
            assert len(holders) <= 1

    @invariant()
    def last_event_matches_status(self) -> None:
        last: dict[str, str] = {}
        counts: dict[str, int] = {}
        for job_id, to_status in self.raw.run(
            "SELECT job_id, to_status FROM job_events WHERE to_status IS NOT NULL ORDER BY id"
        ):
            last[str(job_id)] = to_status
            counts[str(job_id)] = counts.get(str(job_id), 0) + 1
        for job_id, m in self.jobs.items():
            assert last[job_id] == m.status.value, job_id
        for job_id in self.deleted:
            assert job_id not in last  # only the tombstone (to_status NULL) is left

    @invariant()
    def attempts_never_decrease(self) -> None:
        for job_id, attempt in self.raw.run("SELECT id, attempt FROM background_jobs"):
            job_id = str(job_id)
            assert attempt >= self.attempts.get(job_id, 0), job_id
            self.attempts[job_id] = attempt


@pytest.fixture
def raw(db_url: str) -> Iterator[Raw]:
    s = open_store(db_url)  # create the schema before the raw connection uses it
    s.close()
    r = Raw(db_url)
    try:
        yield r
    finally:
        r.close()


def test_store_state_machine(store: SqlJobStore, raw: Raw) -> None:
    run_state_machine_as_test(
        lambda: StoreMachine(store, raw),
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
