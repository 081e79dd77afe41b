"""The operator's view on both stores: durations from the timeline agree between Python
and SQL, the dashboard's read models over a seeded history, a job's bounded log, sorted
searches, id prefixes, the stage filter (unfinished jobs only) and the workers' activity."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from rhizome.errors import InvalidInputError, JobNotFoundError
from rhizome.jobs.durations import job_durations, percentile
from rhizome.jobs.model import ErrorType, JobFilter, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from tests.helpers import make_worker
from tests.operator_history import SEED_TYPE, Raw, seed_job

W = "test-host:1:ops"


@pytest.fixture
def raw(db_url: str) -> Raw:
    return Raw(db_url)


@pytest.fixture
def info_logs() -> Iterator[None]:
    """Handlers' INFO lines reach the job log (as under `rhizome worker`)."""
    logger = logging.getLogger("rhizome")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


def test_seeded_history_read_models(store: SqlJobStore, raw: Raw) -> None:
    now = datetime.now(UTC)
    a = seed_job(store, raw, minutes_ago=50, run_seconds=30, now=now)
    b = seed_job(store, raw, minutes_ago=30, run_seconds=60, now=now)
    c = seed_job(store, raw, minutes_ago=10, run_seconds=90, waited_seconds=6, now=now)
    f = seed_job(store, raw, minutes_ago=5, run_seconds=3, fail=True, now=now)
    since = now - timedelta(hours=1)

    changes = store.status_transitions(since, 60)
    done = sorted(int(r["bucket"]) for r in changes if r["to_status"] == "completed")
    assert done == sorted(int(s.done_at.timestamp()) // 60 * 60 for s in (a, b, c))
    failed = [r for r in changes if r["to_status"] == "failed"]
    assert [int(r["n"]) for r in failed] == [1]

    runs = {round(float(r["seconds"]), 2) for r in store.run_times(since)}
    assert runs == {30.0, 60.0, 90.0}  # the failed job did not complete
    claims = sorted(round(float(r["seconds"]), 2) for r in store.claim_latencies(since))
    assert claims == [6.0, 60.0, 60.0, 60.0]
    stages: dict[str, list[float]] = {}
    for r in store.stage_times(since):
        stages.setdefault(str(r["stage"]), []).append(round(float(r["seconds"]), 2))
    assert sorted(stages["load"]) == [2.0, 20.0, 40.0, 60.0]
    assert sorted(stages["save"]) == [1.0, 10.0, 20.0, 30.0]

    # the same numbers from Python over each job's timeline
    for seeded in (a, b, c, f):
        d = job_durations(store.events(seeded.job.id), now=now)
        assert d.run_seconds == pytest.approx(seeded.run_seconds, abs=0.01)
        assert d.wait_seconds == pytest.approx(seeded.claim_seconds, abs=0.01)
        for name, seconds in seeded.stage_seconds.items():
            assert d.stages[name] == pytest.approx(seconds, abs=0.01)
        assert d.runs == 1 and d.running_stage is None

    # an older window leaves the older jobs out; the user filter every other user's
    recent = store.run_times(now - timedelta(minutes=20))
    assert [round(float(r["seconds"])) for r in recent] == [90]
    assert store.run_times(since, JobFilter(user_id="someone-else")) == []
    assert store.run_times(since, JobFilter(exclude_types=(SEED_TYPE,))) == []
    assert percentile([30, 60, 90], 50) == 60 and percentile([30, 60, 90], 95) == 87


def test_durations_of_a_paused_and_resumed_run(store: SqlJobStore, storage: LocalStorage) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 2, "units": 2})])
    make_worker(store, storage, burst=True).run()
    d = job_durations(store.events(job.id))
    assert list(d.stages) == ["step-1", "step-2"] and d.runs == 1
    assert d.run_seconds >= sum(d.stages.values()) - 0.01
    rows = store.run_times(datetime.now(UTC) - timedelta(hours=1))
    assert [float(r["seconds"]) for r in rows] == [pytest.approx(d.run_seconds, abs=0.01)]


def test_job_log_is_stored_bounded_and_deleted_with_the_job(
    store: SqlJobStore, storage: LocalStorage, info_logs: None
) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 1, "units": 30, "log_units": True})])
    make_worker(store, storage, burst=True, log_lines=10).run()
    lines = store.job_logs(job.id)
    assert [line.message for line in lines] == [
        f"Step 1 of 1: unit {n} of 30 done" for n in range(21, 31)
    ]  # the newest 10
    assert all(ln.stage == "step-1" and ln.attempt == 1 and ln.level == "INFO" for ln in lines)
    assert all(ln.worker_id and ln.logger == "rhizome.jobs.handler" for ln in lines)
    assert [ln.id for ln in store.job_logs(job.id, limit=3, tail=True)] == [
        ln.id for ln in lines[-3:]
    ]
    assert store.job_logs(job.id, after=lines[-2].id) == lines[-1:]
    store.delete(job.id)
    assert store.job_logs(job.id) == []


def test_sorted_search(store: SqlJobStore) -> None:
    ids = {}
    for percent in (50, 10, 90):
        [job] = store.enqueue([NewJob("noop", {}, priority=100)])
        store.claim(W, 1, 300, None)
        store.update_progress(job.id, W, {"percent": percent, "stage": "x"})
        ids[percent] = job.id
    [other] = store.enqueue([NewJob("export_documents", {})])

    def order(sort: str) -> list[str]:
        return [j.id for j in store.search_jobs(JobFilter(types=("noop",)), sort=sort)]

    assert order("progress_desc") == [ids[90], ids[50], ids[10]]
    assert order("progress_asc") == [ids[10], ids[50], ids[90]]
    created = [j.created_at for j in store.search_jobs(JobFilter(), sort="created_asc")]
    assert created == sorted(created)  # (same-millisecond times tie on SQLite)
    newest = [j.created_at for j in store.search_jobs(JobFilter(), sort="created_desc")]
    assert newest == sorted(newest, reverse=True) and order("created_desc") == order("")
    by_type = [j.job_type for j in store.search_jobs(JobFilter(), sort="type_asc")]
    assert by_type == sorted(by_type) and other.job_type in by_type
    assert len(store.search_jobs(JobFilter(), sort="duration_desc")) == 4
    assert len(store.search_jobs(JobFilter(), sort="started_asc")) == 4
    with pytest.raises(ValueError, match="Unknown sort"):
        store.search_jobs(JobFilter(), sort="nonsense")


def test_short_ids_and_prefixes(store: SqlJobStore) -> None:
    jobs = store.enqueue([NewJob("noop", {}) for _ in range(3)])
    # ids are UUIDv7: they sort by creation, and the short id is the random tail
    assert [uuid.UUID(j.id).version for j in jobs] == [7, 7, 7]
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    assert len({j.short_id for j in jobs}) == 3
    for job in jobs:
        assert job.short_id == job.id[-8:]
        assert store.resolve_job_id(job.short_id) == job.id
        assert store.resolve_job_id(job.id[-12:].upper()) == job.id  # the whole last group
        assert store.resolve_job_id(job.id) == job.id
    # the jobs made in one burst share their first digits (the time): a prefix that short
    # names several of them
    with pytest.raises(InvalidInputError, match="Several jobs"):
        store.resolve_job_id(jobs[0].id[:8])
    assert store.resolve_job_id(jobs[2].id[: 36 - 4]) == jobs[2].id  # a long enough prefix
    with pytest.raises(JobNotFoundError, match="is not a job id"):
        store.resolve_job_id(jobs[0].short_id[1:])
    with pytest.raises(JobNotFoundError, match="No job with the id"):
        store.resolve_job_id("ffffffff" if not jobs[0].short_id.startswith("f") else "00000000")
    with pytest.raises(JobNotFoundError):
        store.resolve_job_id(jobs[0].short_id, user_id="someone-else")
    # two jobs sharing a prefix: more characters needed
    raw_prefix = "abcdef01"
    twins = [f"{raw_prefix}-{n}{n}{n}{n}-4000-8000-000000000000" for n in (1, 2)]
    _insert_with_id(store, twins)
    with pytest.raises(InvalidInputError, match="Several jobs"):
        store.resolve_job_id(raw_prefix)
    assert store.resolve_job_id(f"{raw_prefix}-2") == twins[1]


def _insert_with_id(store: SqlJobStore, ids: list[str]) -> None:
    for job_id in ids:
        row = store._new_row(NewJob("noop", {}))  # a fixed id, for the test
        row["id"] = job_id
        with store.transaction() as tx:
            assert tx.one("insert_job", row) is not None


def test_stage_filter_and_counts_cover_unfinished_jobs_only(store: SqlJobStore) -> None:
    finished = []
    for _ in range(2):
        [job] = store.enqueue([NewJob("noop", {}, priority=100)])
        store.claim(W, 1, 300, None)
        store.update_progress(job.id, W, {"percent": 40, "stage": "chunk"})
        finished.append(job)
    store.complete(W, [(finished[0].id, {})])
    store.fail(
        finished[1].id, W, error_type=ErrorType.PERMANENT, last_error="x", error_message="x",
        retry_delay=None,
    )  # fmt: skip
    [stuck] = store.enqueue([NewJob("noop", {}, priority=100)])
    store.claim(W, 1, 300, None)
    store.update_progress(stuck.id, W, {"percent": 38, "stage": "chunk"})
    facets = store.facet_counts(JobFilter())
    assert facets.by_stage == {"chunk": 1}
    assert [j.id for j in store.search_jobs(JobFilter(stage="chunk"))] == [stuck.id]
    assert store.get(finished[0].id).status is JobStatus.COMPLETED


def test_worker_activity_and_takeovers(store: SqlJobStore, raw: Raw) -> None:
    dead, live = "dead-host:7:aaaaaa", "live-host:8:bbbbbb"
    store.register_worker(dead, "dead-host", 7, 2, ["noop"])
    store.register_worker(live, "live-host", 8, 2, ["noop"])
    reaped, claimed = store.enqueue([NewJob("noop", {}, priority=10), NewJob("noop", {})])
    assert {j.id for j in store.claim(dead, 2, 300, None)} == {reaped.id, claimed.id}
    past = raw.time(datetime.now(UTC) - timedelta(minutes=5))
    raw.run("UPDATE background_jobs SET lease_expires_at = %s WHERE id = %s", (past, reaped.id))
    assert store.expire_leases() == [reaped.id]  # the reaper hands it back ...
    raw.run("UPDATE background_jobs SET lease_expires_at = %s WHERE id = %s", (past, claimed.id))
    got = {j.id: j for j in store.claim(live, 2, 300, None)}  # ... and a claim takes both
    assert set(got) == {reaped.id, claimed.id}
    assert all(j.claim_reason == "takeover" and j.attempt == 2 for j in got.values())
    store.complete(live, [(reaped.id, {})])
    assert sorted(store.taken_over_jobs(dead)) == sorted([reaped.id, claimed.id])
    assert store.taken_over_jobs(live) == []
    running, finished = store.worker_activity(datetime.now(UTC) - timedelta(hours=1))
    assert [(r["worker_id"], str(r["id"])) for r in running] == [(live, claimed.id)]
    assert {(r["worker_id"], r["to_status"]): int(r["n"]) for r in finished} == {
        (live, "completed"): 1
    }
