"""The Jobs panel's fast counts (migration 0007) on both stores: the finished-job counts
kept by triggers in ``job_counts`` and the facet counts built on them equal a brute-force
count of the rows after every kind of change: enqueue, claim, completion, failure with and
without a retry, pause, cancel, resume, retry, force-fail, delete, admin clear, retention
pruning. Behaviour only (no timings)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rhizome.jobs import retention
from rhizome.jobs.admin import Admin
from rhizome.jobs.model import ErrorType, Facets, Job, JobFilter, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.storage import LocalStorage
from tests.integration.test_retention import backdate

pytestmark = pytest.mark.timeout(240)

FINISHED = ("completed", "cancelled", "failed")
WORKER = "counts-test-worker"


def _all_jobs(store: SqlJobStore) -> list[Job]:
    return store.search_jobs(JobFilter(), limit=100_000)


def _kept(store: SqlJobStore) -> Counter[tuple[str, str, str]]:
    with store.session() as s:
        rows = store._raw(s, "SELECT user_id, job_type, status, n FROM job_counts")
    return Counter(
        {(r["user_id"], r["job_type"], r["status"]): int(r["n"]) for r in rows if int(r["n"])}
    )


def _brute(jobs: list[Job]) -> Counter[tuple[str, str, str]]:
    """Finished jobs (failed ones only without a retry due) per user, type and status."""
    return Counter(
        (j.user_id, j.job_type, j.status.value)
        for j in jobs
        if j.status.value in ("completed", "cancelled")
        or (j.status is JobStatus.FAILED and j.next_retry_at is None)
    )


def _facets_brute(jobs: list[Job], f: JobFilter) -> Facets:
    base = f.without("type").without("status").without("stage")
    rows: Counter[tuple[str, str, str | None]] = Counter()
    for j in jobs:
        if base.user_id is not None and j.user_id != base.user_id:
            continue
        if j.job_type in base.exclude_types:
            continue
        if base.entity_type is not None and j.entity_type != base.entity_type:
            continue
        stage = j.progress.get("stage") if isinstance(j.progress, dict) else None
        rows[(j.job_type, j.display_status, stage)] += 1
    return Facets.count(f, ((t, s, st, n) for (t, s, st), n in rows.items()))


FILTERS = [
    JobFilter(),
    JobFilter(user_id="local"),
    JobFilter(user_id="bob"),
    JobFilter(user_id="local", exclude_types=("noop",)),
    JobFilter(user_id="local", types=("t_other",), exclude_types=("noop",)),
    JobFilter(user_id="local", statuses=("failed",)),
    JobFilter(user_id="local", statuses=("active",)),
    JobFilter(user_id="local", stage="step-1"),
    JobFilter(user_id="local", entity_type="document"),  # counted live: not from the table
]


def check(store: SqlJobStore) -> None:
    jobs = _all_jobs(store)
    assert _kept(store) == _brute(jobs)
    for f in FILTERS:
        fast = store.facet_counts(f)
        assert fast == _facets_brute(jobs, f), f


def _claim_and_complete(store: SqlJobStore, job_type: str, n: int) -> list[str]:
    claimed = store.claim(WORKER, n, 60, [job_type])
    done = store.complete(WORKER, [(j.id, {"ok": True}) for j in claimed])
    return done


@pytest.fixture
def mixed(store: SqlJobStore, storage: LocalStorage) -> dict[str, Any]:
    """Jobs of two users and three types in every state."""
    store.register_worker(WORKER, "host", 1, 4, None)
    out: dict[str, Any] = {}
    out["pending"] = store.enqueue(
        [NewJob("t_other", {}, user_id="local") for _ in range(6)]
        + [NewJob("t_other", {}, user_id="bob") for _ in range(3)]
        + [NewJob("t_doc", {}, user_id="local", entity_type="document", entity_id="d1")]
    )
    out["done"] = [
        run_inline("noop", {"stages": 1, "units": 1}, store=store, storage=storage).job
        for _ in range(3)
    ]
    out["failed"] = run_inline(
        "noop", {"fail_times": 1, "error": "permanent"}, store=store, storage=storage
    ).job
    out["retrying"] = run_inline(
        "noop", {"fail_times": 5, "error": "transient"}, store=store, storage=storage
    ).job
    out["paused"] = store.enqueue([NewJob("t_other", {}, user_id="bob")])[0]
    Admin(store, storage).pause(out["paused"].id)
    return out


def test_counts_stay_exact_through_every_transition(
    store: SqlJobStore, storage: LocalStorage, db_url: str, mixed: dict[str, Any]
) -> None:
    check(store)
    admin = Admin(store, storage)

    # claims (pending -> processing) and completions in batches, of two users
    assert len(_claim_and_complete(store, "t_other", 4)) == 4
    check(store)

    # a running job fails for good, another with a retry due; a pending one is cancelled
    running = store.claim(WORKER, 2, 60, ["t_other"])
    assert len(running) == 2
    store.fail(
        running[0].id,
        WORKER,
        error_type=ErrorType.PERMANENT,
        last_error="x",
        error_message="broke",
        retry_delay=None,
    )
    store.fail(
        running[1].id,
        WORKER,
        error_type=ErrorType.TRANSIENT,
        last_error="x",
        error_message="flaky",
        retry_delay=3600,
    )
    check(store)

    doc = mixed["pending"][-1]
    admin.cancel(doc.id)
    check(store)

    # a retry due now goes back to pending; a failed job retried by a person; cancelled
    # and failed jobs retried; paused resumed
    store.promote_retries(as_of=datetime.now(UTC) + timedelta(days=1))
    check(store)
    admin.retry(mixed["failed"].id)
    admin.retry(doc.id)
    admin.resume(mixed["paused"].id)
    check(store)

    # force-fail a pending job (finished: failed with no retry), pause a pending one
    pending = [j for j in _all_jobs(store) if j.status is JobStatus.PENDING]
    admin.force_fail(pending[0].id)
    admin.pause(pending[1].id)
    check(store)

    # the rest of the work runs: every user's jobs complete, the retrying noop fails for good
    _claim_and_complete(store, "t_other", 100)
    _claim_and_complete(store, "t_doc", 100)
    check(store)

    # deletes: one job, a bulk delete by filter, admin clear of completed and failed
    finished = [j for j in _all_jobs(store) if j.status.value in FINISHED]
    admin.delete(finished[0].id)
    check(store)
    bob = store.filtered_job_ids(JobFilter(user_id="bob", statuses=("completed",)))
    assert bob
    store.delete_many(bob[:1])
    check(store)

    # retention: old finished jobs go
    old = [j.id for j in _all_jobs(store) if j.status.value in FINISHED][:3]
    backdate(db_url, old)
    pruned = retention.prune_finished(store, storage, timedelta(days=30))
    assert pruned.jobs >= 3
    check(store)

    assert admin.clear_completed() > 0
    check(store)
    admin.clear_failed()
    check(store)
    admin.clear_all()
    check(store)
    assert _kept(store) == Counter()
    assert store.facet_counts(JobFilter()).everything == 0


def test_counts_include_history_from_before_the_migration(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    """Jobs finished before the counts existed are counted (the migration fills the table
    from the rows): rebuilt here the way the migration does, the table is unchanged."""
    for _ in range(3):
        run_inline("noop", {}, store=store, storage=storage)
    run_inline("noop", {"fail_times": 1, "error": "permanent"}, store=store, storage=storage)
    before = _kept(store)
    with store.transaction() as tx:
        tx.script(
            "DELETE FROM job_counts;\n"
            "INSERT INTO job_counts (user_id, job_type, status, n) "
            "SELECT user_id, job_type, status, count(*) FROM background_jobs "
            "WHERE status IN ('completed', 'cancelled') "
            "OR (status = 'failed' AND next_retry_at IS NULL) "
            "GROUP BY user_id, job_type, status"
        )
    assert (
        _kept(store)
        == before
        == Counter({("local", "noop", "completed"): 3, ("local", "noop", "failed"): 1})
    )
    check(store)
