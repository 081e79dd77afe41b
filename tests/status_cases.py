"""Jobs in every state a person can see (and a few edge cases), for the tests that check
that the status filters of the CLI, the API, the UI and the stores agree with the one
definition in :mod:`rhizome.jobs.model`."""

from __future__ import annotations

from rhizome.jobs.model import STATUS_FILTERS, Job
from rhizome.jobs.store import SqlJobStore
from tests.web import helpers as h

EXPECTED_SHOWN = {
    "pending": "pending",
    "running": "processing",
    "pausing": "pausing",
    "cancelling": "cancelling",
    "pause_and_cancel": "cancelling",
    "released_with_pause_request": "pending",
    "paused": "paused",
    "retrying": "retrying",
    "failed": "failed",
    "cancelled": "cancelled",
    "completed": "completed",
}
"""Case name → the status a person sees."""


def jobs_in_every_state(
    store: SqlJobStore, job_type: str = "noop", *, unique_types: bool = False
) -> dict[str, Job]:
    """One job per case of :data:`EXPECTED_SHOWN` (re-read from the store). With
    ``unique_types`` each job gets a type of its own (``<job_type>_<case>``)."""

    def t(case: str) -> str:
        return f"{job_type}_{case}" if unique_types else job_type

    jobs: dict[str, Job] = {}
    jobs["pending"] = h.new(store, t("pending"))
    jobs["running"] = h.running(store, t("running"), stage="extract", percent=10)
    jobs["pausing"] = h.running(store, t("pausing"), stage="embed")
    store.request_pause(jobs["pausing"].id)
    jobs["cancelling"] = h.running(store, t("cancelling"))
    store.request_cancel(jobs["cancelling"].id)
    jobs["pause_and_cancel"] = h.running(store, t("pause_and_cancel"))
    store.request_pause(jobs["pause_and_cancel"].id)
    store.request_cancel(jobs["pause_and_cancel"].id)
    jobs["paused"] = h.paused(store, t("paused"))
    jobs["retrying"] = h.failed(store, t("retrying"), retry_in=300)
    jobs["failed"] = h.failed(store, t("failed"))
    jobs["cancelled"] = h.cancelled(store, t("cancelled"))
    jobs["completed"] = h.finished(store, t("completed"))
    released = h.running(store, t("released_with_pause_request"))  # last: it is due again
    store.request_pause(released.id)
    store.stop(released.id, h.WORKER, "release", "worker shutting down")
    jobs["released_with_pause_request"] = released
    fresh = {name: store.get(job.id) for name, job in jobs.items()}
    for name, job in fresh.items():
        assert job.display_status == EXPECTED_SHOWN[name], (name, job)
    return fresh


def expected_ids(jobs: dict[str, Job], status: str) -> set[str]:
    """The ids a filter on ``status`` must select, by the Python definition."""
    assert status in STATUS_FILTERS
    return {j.id for j in jobs.values() if j.matches_status([status])}
