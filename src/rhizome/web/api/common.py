"""What the API routes share: request-value validators, the base request model, and the
admin actions bound to the requesting user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rhizome.errors import InvalidInputError
from rhizome.jobs.admin import Admin
from rhizome.jobs.model import Job, StatusFilter
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
