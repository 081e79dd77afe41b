"""The derived statuses (pausing, cancelling, retrying, active) have one definition
(:mod:`rhizome.jobs.model`); the SQL of both stores agrees with it on real rows, and the
CLI's ``--status`` (list and bulk commands) accepts every value and selects the same jobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rhizome.jobs.model import (
    SHOWN_STATUSES,
    STATUS_FILTER_MEANING,
    STATUS_FILTERS,
    JobFilter,
    check_status_filter,
    shown_status,
)
from rhizome.jobs.store import SqlJobStore
from tests.conftest import cli_env, run_cli
from tests.status_cases import EXPECTED_SHOWN, expected_ids, jobs_in_every_state


def test_the_definition() -> None:
    assert STATUS_FILTERS[0] == "active" and set(SHOWN_STATUSES) < set(STATUS_FILTERS)
    # every job shows one status; each filter value selects a set of shown statuses
    for value in STATUS_FILTERS:
        assert STATUS_FILTER_MEANING[value] <= set(SHOWN_STATUSES)
    for shown in SHOWN_STATUSES:
        assert shown in STATUS_FILTER_MEANING[shown]
    assert shown_status("processing", pause_requested=True, cancel_requested=True) == ("cancelling")
    assert shown_status("pending", pause_requested=True) == "pending"
    assert shown_status("failed", retry_scheduled=True) == "retrying"
    assert "retrying" not in STATUS_FILTER_MEANING["failed"]  # not counted under Failed
    assert {"pausing", "cancelling"} <= STATUS_FILTER_MEANING["processing"]
    with pytest.raises(ValueError, match="Unknown status 'running'"):
        check_status_filter(["running"])
    with pytest.raises(ValueError):
        JobFilter(statuses=("bogus",))


def test_sql_agrees_with_the_python_definition(store: SqlJobStore) -> None:
    jobs = jobs_in_every_state(store, "t", unique_types=True)
    type_of = {j.id: j.job_type for j in jobs.values()}
    everything = store.facet_counts(JobFilter())
    assert everything.total == everything.everything == len(jobs)
    for value in STATUS_FILTERS:
        want = expected_ids(jobs, value)
        f = JobFilter(statuses=(value,))
        assert {j.id for j in store.search_jobs(f, limit=100)} == want, value
        assert set(store.filtered_job_ids(f)) == want, value
        assert {j.id for j in store.list_jobs(statuses=[value])} == want, value
        assert set(store.job_ids_where(statuses=[value])) == want, value
        # facet counts: the SQL's shown status, counted by the Python definition
        counts = store.facet_counts(f)
        assert counts.total == len(want), value
        assert everything.by_status.get(value, 0) == len(want), value
        assert counts.by_type == {type_of[i]: 1 for i in want}, value
    # the statuses of one filter are alternatives; other dimensions still apply
    both = JobFilter(statuses=("failed", "retrying"), types=("t_failed",))
    assert [j.id for j in store.search_jobs(both)] == [jobs["failed"].id]
    # Prometheus: jobs waiting for an automatic retry, by the same definition
    retries = {r["job_type"]: r for r in store.metrics_snapshot(datetime.now(UTC)).retries}
    assert int(retries["t_retrying"]["scheduled"]) == 1
    assert sum(int(r["scheduled"]) for r in retries.values()) == 1


def test_a_retrying_job_is_not_counted_under_failed(store: SqlJobStore) -> None:
    jobs = jobs_in_every_state(store)
    counts = store.facet_counts(JobFilter())
    assert counts.by_status["failed"] == 1 and counts.by_status["retrying"] == 1
    # processing includes the jobs still running with a pause or cancel request
    assert counts.by_status["pausing"] == 1 and counts.by_status["cancelling"] == 2
    assert counts.by_status["processing"] == 4
    assert counts.by_status["active"] == counts.by_status["pending"] + 4 == 6
    # apart from those, every job is counted under exactly one status
    alone = [s for s in SHOWN_STATUSES if s != "processing"]
    assert sum(counts.by_status.get(s, 0) for s in alone) + 1 == len(jobs)


def test_filter_dimensions_and_text_search(store: SqlJobStore) -> None:
    jobs = jobs_in_every_state(store, "t", unique_types=True)
    later = store.search_jobs(JobFilter(q="T_RETRY"))  # case-insensitive, literal
    assert [j.id for j in later] == [jobs["retrying"].id]
    assert store.search_jobs(JobFilter(q="t%retrying")) == []
    assert [j.id for j in store.search_jobs(JobFilter(stage="embed"))] == [jobs["pausing"].id]
    ids = (jobs["failed"].id, "not-a-uuid", jobs["paused"].id.upper())
    assert {j.id for j in store.search_jobs(JobFilter(ids=ids))} == {
        jobs["failed"].id,
        jobs["paused"].id,
    }
    assert store.search_jobs(JobFilter(ids=())) == []
    hidden = JobFilter(exclude_types=("t_failed",))
    assert jobs["failed"].id not in {j.id for j in store.search_jobs(hidden, limit=100)}
    asked = JobFilter(types=("t_failed",), exclude_types=("t_failed",))  # asked for by name
    assert [j.id for j in store.search_jobs(asked)] == [jobs["failed"].id]
    assert store.facet_counts(JobFilter(user_id="nobody")).everything == 0
    newest_first = [j.id for j in store.search_jobs(JobFilter(), limit=100)]
    assert [j.id for j in store.search_jobs(JobFilter(), limit=3)] == newest_first[:3]
    assert [j.id for j in store.search_jobs(JobFilter(), limit=3, offset=3)] == newest_first[3:6]
    oldest_first = store.filtered_job_ids(JobFilter())  # (created_at, id): ties are stable
    assert oldest_first == newest_first[::-1]
    assert store.filtered_job_ids(JobFilter(), limit=3) == oldest_first[:3]


def test_change_feed_position_and_changes(store: SqlJobStore) -> None:
    last, now = store.feed_position()
    jobs = jobs_in_every_state(store)
    changed, events = store.changes_since(now - timedelta(seconds=1), last)
    assert {j.id for j in jobs.values()} <= {j.id for j in changed}
    assert events and all(e.id > last for e in events)
    waiter = store.change_waiter()
    try:
        assert waiter(0.05) in (True, False)  # nothing pending, or an earlier commit
        store.request_pause(jobs["pending"].id)
        assert waiter(5.0) is True
    finally:
        waiter.close()


# --- the CLI ----------------------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str]) -> object:
    r = run_cli([*args, "--json"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_cli_status_filters(store: SqlJobStore, db_url: str, tmp_path: Path) -> None:
    jobs = jobs_in_every_state(store)
    env = cli_env(db_url, tmp_path / "storage")
    for value in STATUS_FILTERS:
        listed = _cli(["jobs", "list", "--status", value, "--limit", "100"], env)
        assert isinstance(listed, list)
        assert {j["id"] for j in listed} == expected_ids(jobs, value), value
    listed = _cli(["jobs", "list", "-s", "failed", "-s", "retrying"], env)
    assert isinstance(listed, list)
    assert {j["id"] for j in listed} == {jobs["failed"].id, jobs["retrying"].id}

    bad = run_cli(["jobs", "list", "--status", "running"], env)
    assert bad.returncode == 2
    assert "Unknown status 'running'" in bad.stderr and "retrying" in bad.stderr
    assert "Traceback" not in bad.stderr

    # bulk commands select by the same definition
    done = _cli(["jobs", "cancel", "--status", "retrying"], env)
    assert isinstance(done, dict) and done["done"] == [jobs["retrying"].id]
    assert store.get(jobs["retrying"].id).status.value == "cancelled"
    assert store.get(jobs["failed"].id).status.value == "failed"  # not retrying: left alone
    done = _cli(["jobs", "pause", "--status", "pausing"], env)
    assert isinstance(done, dict) and done["done"] == [jobs["pausing"].id]
    gone = _cli(["jobs", "delete", "--status", "cancelling", "--yes"], env)
    assert isinstance(gone, dict)
    assert set(gone["done"]) == {jobs["cancelling"].id, jobs["pause_and_cancel"].id}
    assert EXPECTED_SHOWN["pause_and_cancel"] == "cancelling"
