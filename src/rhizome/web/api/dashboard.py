"""``/api/dashboard`` and ``/api/stats``: the operator's view over a time window (last hour,
day or week), computed from ``job_events`` by the store's SQL on either database."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from rhizome.web.services import dashboard
from rhizome.web.state import StateDep, UserDep

router = APIRouter(tags=["dashboard"])

WindowName = Literal["hour", "day", "week"]


@router.get("/dashboard", summary="Series over time: throughput, queue depth, latencies")
def overview(
    state: StateDep,
    user: UserDep,
    window: Annotated[WindowName, Query(description="The time window.")] = "hour",
    include_hidden: bool = False,
) -> dict[str, Any]:
    """One point per bucket (``buckets``: epoch seconds of each bucket's start):
    ``completed`` and ``failed`` per job type, ``depth`` (jobs pending, processing and
    paused at the end of each bucket), ``claim_latency`` p50/p95 (seconds from due to
    claimed) and ``run_time`` p50/p95 per job type (seconds processing, over all runs, of
    the jobs completed in the bucket); null where a bucket has no sample."""
    return dashboard.overview(
        state, user, dashboard.window_of(window), include_hidden=include_hidden
    )


@router.get("/stats", summary="p50/p95 per job type and stage")
def stats(
    state: StateDep,
    user: UserDep,
    window: Annotated[WindowName, Query(description="The time window.")] = "day",
    include_hidden: bool = False,
) -> dict[str, Any]:
    """Per job type: completed, failed, cancelled; run time and claim latency (count,
    p50, p95, max in seconds); per stage the time jobs spent in it."""
    return dashboard.stats(state, user, dashboard.window_of(window), include_hidden=include_hidden)
