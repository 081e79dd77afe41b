"""What the API routes share: request-value validators, the base request model, and the
admin actions bound to the requesting user."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from rhizome.errors import InvalidInputError
from rhizome.jobs.admin import Admin
from rhizome.jobs.model import TERMINAL_STATUSES, Job, StatusFilter
from rhizome.web.readcache import AS_ASKED, Scope
from rhizome.web.state import WebState, clean_json, clean_text
from rhizome.web.views import job_summary

MAX_IDS = 10_000


def _text(value: str) -> str:
    try:
        return clean_text(value)
    except InvalidInputError as exc:
        raise ValueError(exc.message) from None


def _json_obj(value: dict[str, Any]) -> dict[str, Any]:
    try:
        clean_json(value)
    except InvalidInputError as exc:
        raise ValueError(exc.message) from None
    return value


def _run_at(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not (2000 <= value.year <= 9000):
        raise ValueError("run_at must be between the years 2000 and 9000")
    return value.astimezone(UTC)


Text = Annotated[str, AfterValidator(_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_obj)]
RunAt = Annotated[datetime | None, AfterValidator(_run_at)]
JobTypeName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")]
StatusName = StatusFilter
"""The status filter values of the jobs core (stored statuses and derived ones)."""

FilterQuery = Annotated[
    list[str],
    Query(
        max_length=50,
        description="Repeat or comma-separate values; any of them matches.",
    ),
]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def admin_for(state: WebState, user: str) -> Admin:
    """The admin actions, limited to the user's jobs."""
    return state.app.admin(user)


def job_out(state: WebState, job: Job) -> dict[str, Any]:
    return {"job": job_summary(state.registry, job)}


# --- cached answers -------------------------------------------------------------------------

ANSWER = TypeAdapter(dict[str, Any])
"""How FastAPI writes a ``dict[str, Any]`` answer (the same bytes)."""


FINISHED = frozenset(s.value for s in TERMINAL_STATUSES)


def on_the_clock(jobs: Iterable[dict[str, Any]]) -> bool:
    """Whether these job views change with the clock alone (run time, ETA, retry
    countdown, a live worker's last sign of life): a job is unfinished, waits for a retry
    or shows a worker that has not stopped."""
    return any(
        j["status"] not in FINISHED
        or j.get("next_retry_at")
        or (j.get("worker") and not j["worker"].get("stopped_at"))
        for j in jobs
    )


Computed = tuple[dict[str, Any], bool, str | None]
"""An answer, whether it depends on the clock, and the job it shows (a job's page)."""


async def cached(
    state: WebState, key: Hashable, scope: Scope, compute: Callable[[], Computed]
) -> Response:
    """The answer for ``key`` from the response cache, or ``compute()`` run in the request
    pool (once: the answer is written to JSON there too) and kept. The key must hold the
    user and every request value the answer depends on."""
    cache = state.responses
    body = cache.get(key)
    if body is None:

        def run() -> tuple[bytes, bool, str | None]:
            data, clock, resolved = compute()
            return ANSWER.dump_json(data), clock, resolved

        if not cache.active:
            body, _, _ = await run_in_threadpool(run)
            return Response(body, media_type="application/json")
        ticket = cache.begin(scope)
        try:
            body, clock, resolved = await run_in_threadpool(run)
        except BaseException:
            cache.end(ticket, key, None)
            raise
        alias = AS_ASKED.get()
        cache.end(ticket, key, body, clock=clock, resolved=resolved, alias=alias)
    return Response(body, media_type="application/json")
