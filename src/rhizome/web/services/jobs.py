"""Job operations of the web layer, shared by the API and the pages: a filter from request
values (validated against the registry and the status definitions of the jobs core), a page
of jobs with their documents' titles, facet counts, ids for bulk actions, and one job with
its timeline and worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rhizome.errors import InvalidInputError
from rhizome.jobs.model import STATUS_FILTERS, Facets, Job, JobFilter
from rhizome.web.services.documents import documents_titled
from rhizome.web.state import WebState, clean_text
from rhizome.web.views import job_detail


def split_values(values: list[str]) -> list[str]:
    """Repeated and comma-separated query values, flattened."""
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def build_filter(
    state: WebState,
    user: str,
    *,
    types: list[str] | None = None,
    statuses: list[str] | None = None,
    stage: str | None = None,
    q: str | None = None,
    include_hidden: bool = False,
) -> JobFilter:
    """The user's job filter from request values. Only registered job types and the status
    filter values of the jobs core are accepted (others: 422 naming the valid ones); the
    text search also matches the titles of the user's documents."""
    types = split_values(types or [])
    statuses = split_values(statuses or [])
    known = state.known_types()
    bad = [t for t in types if t not in known]
    if bad:
        raise InvalidInputError(
            f"Unknown job type {bad[0]!r}.", "Use one of: " + ", ".join(sorted(known)) + "."
        )
    bad = [s for s in statuses if s not in STATUS_FILTERS]
    if bad:
        raise InvalidInputError(
            f"Unknown status {bad[0]!r}.", "Use one of: " + ", ".join(STATUS_FILTERS) + "."
        )
    if stage is not None:
        stage = clean_text(stage, "stage").strip() or None
    if q is not None:
        q = clean_text(q, "search text").strip() or None
    return JobFilter(
        user_id=user,
        types=tuple(types),
        statuses=tuple(statuses),
        stage=stage,
        q=q,
        q_entity_ids=documents_titled(state.store, user, q) if q else (),
        exclude_types=() if include_hidden else state.hidden_types(),
    )


def is_empty(f: JobFilter) -> bool:
    """No type, status, stage or text: such a filter selects every job."""
    return not (f.types or f.statuses or f.stage or f.q)


@dataclass
class JobPage:
    jobs: list[Job]
    document_titles: dict[str, str] = field(default_factory=dict)
    """job id → the title of the document it works on."""


def search(
    state: WebState, f: JobFilter, *, limit: int = 50, offset: int = 0, sort: str | None = None
) -> JobPage:
    """A page of matching jobs (newest first, or by ``sort``) with their documents'
    titles."""
    jobs = state.store.search_jobs(f, limit=limit, offset=offset, sort=sort)
    return JobPage(jobs, state.broadcaster.titles.of_jobs(jobs))


def facets(state: WebState, f: JobFilter) -> Facets:
    """Facet counts, from the cache while no job changed its type, status or stage."""
    return state.facet_cache.get(f, lambda: state.store.facet_counts(f))


def job_ids(state: WebState, f: JobFilter, *, limit: int) -> list[str]:
    """Ids of the matching jobs (oldest first), for bulk actions by filter."""
    return state.store.filtered_job_ids(f, limit=limit)


def job_with_context(state: WebState, job_id: str, user: str) -> dict[str, Any]:
    """One job of the user (its id or a unique prefix) with its stages, timeline,
    durations, worker and document title."""
    job = state.store.get(state.store.resolve_job_id(job_id, user), user)
    worker = None
    if job.worker_id:
        worker = next((w for w in state.workers() if w.id == job.worker_id), None)
    return job_detail(
        state.registry,
        job,
        document_title=state.broadcaster.titles.of_job(job),
        events=state.store.events(job.id),
        worker=worker,
    )
