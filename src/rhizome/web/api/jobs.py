"""``/api/jobs``: list with filters, search and facet counts; enqueue; one job with its
timeline; pause, resume, cancel, retry, delete; bulk actions by ids or by filter."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from rhizome.errors import InvalidInputError
from rhizome.jobs.admin import Selection
from rhizome.jobs.client import enqueue
from rhizome.jobs.model import JobSort
from rhizome.web.api.common import (
    MAX_IDS,
    Computed,
    FilterQuery,
    JobTypeName,
    JsonObject,
    Model,
    RunAt,
    StatusName,
    Text,
    admin_for,
    cached,
    job_out,
    on_the_clock,
)
from rhizome.web.ownership import check_enqueue
from rhizome.web.readcache import LIBRARY_NEUTRAL_TYPES, WRITES_KEY, Scope
from rhizome.web.services import jobs as job_service
from rhizome.web.state import StateDep, UserDep
from rhizome.web.views import job_summary

router = APIRouter(tags=["jobs"])


class EnqueueRequest(Model):
    type: JobTypeName = Field(description="A registered job type (GET /api/job-types).")
    input: JsonObject = Field(default_factory=dict, description="The job type's input.")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first.")
    dedupe_key: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    max_retries: int | None = Field(None, ge=0, le=100)
    run_at: RunAt = Field(None, description="Not before this time (UTC if no offset).")
    count: int = Field(1, ge=1, le=1000, description="How many identical jobs to enqueue.")


class RestartRequest(Model):
    restart: bool = Field(
        False, description="Start from the beginning (drops the checkpoint) instead of resuming."
    )


class PauseRequest(Model):
    reason: Annotated[Text, Field(min_length=1, max_length=500)] = "paused by user"


class FilterModel(Model):
    type: list[JobTypeName] = Field(default_factory=list, max_length=50)
    status: list[StatusName] = Field(default_factory=list, max_length=20)
    stage: Annotated[Text, Field(min_length=1, max_length=100)] | None = None
    q: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    include_hidden: bool = False


class BulkRequest(Model):
    action: Literal["pause", "resume", "cancel", "retry", "delete", "force_fail"]
    ids: list[UUID] | None = Field(None, max_length=MAX_IDS, description="Explicit jobs.")
    filter: FilterModel | None = Field(None, description="Or every job matching a filter.")
    all: bool = Field(False, description="Or every job of the user (needs no ids/filter).")
    restart: bool = Field(False, description="For resume/retry: from the beginning.")


@router.get("/jobs", summary="List and filter jobs (newest first)", response_model=dict[str, Any])
async def list_jobs(
    state: StateDep,
    user: UserDep,
    type: FilterQuery = [],  # noqa: B006  (FastAPI copies defaults)
    status: FilterQuery = [],  # noqa: B006
    stage: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text search.")] = None,
    include_hidden: bool = False,
    sort: Annotated[
        JobSort, Query(description="Column and direction; default created_desc (newest first).")
    ] = "created_desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """``status`` takes the stored statuses and the derived ones (active, pausing,
    cancelling, retrying): ``processing`` includes the jobs pausing or cancelling,
    ``failed`` leaves out the jobs waiting for an automatic retry. ``stage`` selects the
    unfinished jobs in that stage ("stuck in chunking"). ``counts`` has the facet counts
    for each filter value."""
    key = ("jobs", user, tuple(type), tuple(status), stage, q, include_hidden, sort, limit, offset)
    named = set(job_service.split_values(type))
    hidden = set(state.hidden_types())
    # changes of jobs this view leaves out (hidden, not named) that touch no document
    ignore = frozenset(
        t for t in LIBRARY_NEUTRAL_TYPES if not include_hidden and t in hidden and t not in named
    )

    def compute() -> Computed:
        f = job_service.build_filter(
            state,
            user,
            types=type,
            statuses=status,
            stage=stage,
            q=q,
            include_hidden=include_hidden,
        )
        page = job_service.search(state, f, limit=limit, offset=offset, sort=sort)
        counts = job_service.facets(state, f)
        jobs = [job_summary(state.registry, j, page.document_titles.get(j.id)) for j in page.jobs]
        answer = {
            "jobs": jobs,
            "total": counts.total,
            "limit": limit,
            "offset": offset,
            "sort": sort,
            "counts": counts.to_dict(),
        }
        return answer, on_the_clock(jobs), None

    return await cached(state, key, Scope(user, ignore=ignore), compute)


@router.post("/jobs", status_code=201, summary="Enqueue jobs")
def create_jobs(
    request: Request, state: StateDep, user: UserDep, body: EnqueueRequest
) -> dict[str, Any]:
    """Public job types only (``public`` in ``GET /api/job-types``); an input that names a
    document, chunk, highlight, connection, job or storage key must name the user's own
    (403/404 otherwise). The server's own routes queue the internal types."""
    check_enqueue(state.registry, state.store, user, body.type, body.input)
    jobs = enqueue(
        state.store,
        body.type,
        body.input,
        count=body.count,
        priority=body.priority,
        user_id=user,
        dedupe_key=body.dedupe_key,
        run_at=body.run_at,
        max_retries=body.max_retries,
        types=state.registry,
    )
    # new jobs of the user (or the ones their dedupe key named): nothing else moved
    request.scope[WRITES_KEY] = [(j.user_id, j.job_type, j.id) for j in jobs]
    return {"jobs": [job_summary(state.registry, j) for j in jobs]}


@router.post("/jobs/bulk", summary="Pause/resume/cancel/retry/delete many jobs")
def bulk(state: StateDep, user: UserDep, body: BulkRequest) -> dict[str, Any]:
    if body.ids:
        selection = Selection(ids=[str(i) for i in body.ids])
    elif body.filter is not None:
        f = job_service.build_filter(
            state,
            user,
            types=list(body.filter.type),
            statuses=list(body.filter.status),
            stage=body.filter.stage,
            q=body.filter.q,
            include_hidden=body.filter.include_hidden,
        )
        if job_service.is_empty(f):
            raise InvalidInputError(
                "An empty filter selects every job.", 'Pass "all": true to mean that.'
            )
        ids = job_service.job_ids(state, f, limit=100_000)
        if not ids:
            return {"action": body.action, "done": [], "skipped": {}, "count": 0}
        selection = Selection(ids=ids)
    elif body.all:
        selection = Selection(everything=True)
    else:
        raise InvalidInputError("No jobs selected.", 'Pass ids, a filter, or "all": true.')
    result = admin_for(state, user).bulk(body.action, selection, restart=body.restart)
    return result.to_dict()


@router.get(
    "/jobs/{job_id}",
    summary="One job with stages, timeline, durations, worker",
    response_model=dict[str, Any],
)
async def get_job(state: StateDep, user: UserDep, job_id: str) -> Response:
    """``job_id``: the id, or a unique prefix of 8 characters or more (as on every job
    route). ``durations`` has the run time (all runs) and the time of each stage."""

    def compute() -> Computed:
        job = job_service.job_with_context(state, job_id, user)
        return {"job": job}, on_the_clock([job]), str(job["id"])

    return await cached(state, ("job", user, job_id), Scope(user, job=job_id.lower()), compute)


@router.get("/jobs/{job_id}/events", summary="A job's timeline")
def job_events(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    job = admin_for(state, user).get(job_id)
    return {"events": [e.to_dict() for e in state.store.events(job.id)]}


@router.get("/jobs/{job_id}/logs", summary="A job's log (what its handler logged)")
def job_logs(
    state: StateDep,
    user: UserDep,
    job_id: str,
    after: Annotated[int, Query(ge=0, description="Only lines after this line id.")] = 0,
    tail: Annotated[
        int | None, Query(ge=1, le=10_000, description="Only the last N lines.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Lines oldest first; the newest lines of each job are kept (the worker's bound).
    Follow a running job with ``after`` = the last line's id, or live on ``/api/events``
    (``log`` messages)."""
    job = admin_for(state, user).get(job_id)
    if tail is not None:
        lines = state.store.job_logs(job.id, limit=tail, tail=True)
    else:
        lines = state.store.job_logs(job.id, after=after, limit=limit)
    return {"job_id": job.id, "lines": [line.to_dict() for line in lines]}


@router.post("/jobs/{job_id}/pause", summary="Pause (at the next safe point)")
def pause_job(
    state: StateDep, user: UserDep, job_id: str, body: PauseRequest | None = None
) -> dict[str, Any]:
    reason = body.reason if body else "paused by user"
    return job_out(state, admin_for(state, user).pause(job_id, reason))


@router.post("/jobs/{job_id}/resume", summary="Resume a paused job")
def resume_job(
    state: StateDep, user: UserDep, job_id: str, body: RestartRequest | None = None
) -> dict[str, Any]:
    restart = body.restart if body else False
    return job_out(state, admin_for(state, user).resume(job_id, restart=restart))


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job")
def cancel_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    return job_out(state, admin_for(state, user).cancel(job_id))


@router.post("/jobs/{job_id}/retry", summary="Retry a failed or cancelled job")
def retry_job(
    state: StateDep, user: UserDep, job_id: str, body: RestartRequest | None = None
) -> dict[str, Any]:
    restart = body.restart if body else False
    return job_out(state, admin_for(state, user).retry(job_id, restart=restart))


@router.delete("/jobs/{job_id}", summary="Delete a job and its checkpoints")
def delete_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    job = admin_for(state, user).delete(job_id)
    return {"deleted": job.id}
