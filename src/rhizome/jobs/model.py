"""Typed records of the job system: the contract of the ``background_jobs`` table."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

import uuid_utils

SHORT_ID_LENGTH = 8


def new_job_id() -> str:
    """A new job id: a UUIDv7 (RFC 9562), so ids sort by creation time and a new job's
    index entries land next to those of the jobs just before it (random ids scatter them
    over the whole id index: the SQLite drain slowed to 0.8x at 1,000,000 rows of
    history; see bench/README.md). Its first 12 digits are the time, its last ones
    random."""
    return str(uuid_utils.uuid7())


def short_job_id(job_id: str) -> str:
    """The short id the CLI and the UI show: the id's last 8 hex digits (random in
    UUIDv7 and v4 alike; the first ones of a UUIDv7 are the same for every job made
    within a minute). ``resolve_job_id`` accepts it."""
    return job_id[-SHORT_ID_LENGTH:]  # inside the last group (12 digits, no hyphen)


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING})
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

DEFAULT_MAX_TAKEOVERS = 3
"""Takeovers of an expired lease a job gets before the reaper fails it as a crash loop
(the ``max_takeovers`` setting overrides it)."""


# --- the statuses a person sees, and the status filter ----------------------------------------
#
# The one definition of the derived statuses. Each job shows exactly one *shown* status:
# its stored one, or
#   cancelling  processing, a cancel requested (wins over a pause request)
#   pausing     processing, a pause requested
#   retrying    failed, an automatic retry scheduled (``next_retry_at`` set)
# The SQL of the stores computes the same thing (fragment ``shown_status`` in
# ``jobs/store/sql/<dialect>/views.sql``; tests/integration/test_status_filters.py checks
# that both agree on real rows).

ShownStatus = Literal[
    "pending",
    "processing",
    "pausing",
    "cancelling",
    "paused",
    "retrying",
    "failed",
    "cancelled",
    "completed",
]
SHOWN_STATUSES: tuple[str, ...] = get_args(ShownStatus)

StatusFilter = Literal[
    "active",
    "pending",
    "processing",
    "pausing",
    "paused",
    "retrying",
    "failed",
    "cancelling",
    "cancelled",
    "completed",
]
STATUS_FILTERS: tuple[str, ...] = get_args(StatusFilter)
"""Values of every ``--status`` / ``status=`` filter (CLI, API, UI), in display order."""

STATUS_FILTER_MEANING: Mapping[str, frozenset[str]] = {
    "active": frozenset({"pending", "processing", "pausing", "cancelling"}),
    "pending": frozenset({"pending"}),
    "processing": frozenset({"processing", "pausing", "cancelling"}),
    "pausing": frozenset({"pausing"}),
    "paused": frozenset({"paused"}),
    "retrying": frozenset({"retrying"}),
    "failed": frozenset({"failed"}),
    "cancelling": frozenset({"cancelling"}),
    "cancelled": frozenset({"cancelled"}),
    "completed": frozenset({"completed"}),
}
"""Which shown statuses each filter value selects. ``processing`` and ``active`` include
the jobs still running with a pause or cancel request; ``failed`` does not include the jobs
waiting for an automatic retry (they show, and count, as ``retrying``)."""

STORED_STATUS_OF: Mapping[str, JobStatus] = {
    **{s.value: s for s in JobStatus},
    "pausing": JobStatus.PROCESSING,
    "cancelling": JobStatus.PROCESSING,
    "retrying": JobStatus.FAILED,
}
"""The stored status behind each shown status."""

assert set(STATUS_FILTER_MEANING) == set(STATUS_FILTERS)
assert set(STORED_STATUS_OF) == set(SHOWN_STATUSES)

UNFINISHED_SHOWN: frozenset[str] = frozenset(
    {"pending", "processing", "pausing", "cancelling", "paused", "retrying"}
)
"""The shown statuses of jobs that are not finished: only these count as "in" a stage (the
stage filter, "stuck in chunking", leaves out jobs that completed, failed or were cancelled
in their last stage). The SQL fragment ``unfinished`` in ``views.sql`` says the same."""


def shown_status(
    status: JobStatus | str,
    *,
    pause_requested: bool = False,
    cancel_requested: bool = False,
    retry_scheduled: bool = False,
) -> str:
    """The status a person sees (see above)."""
    value = JobStatus(status)
    if value is JobStatus.PROCESSING and cancel_requested:
        return "cancelling"
    if value is JobStatus.PROCESSING and pause_requested:
        return "pausing"
    if value is JobStatus.FAILED and retry_scheduled:
        return "retrying"
    return value.value


def status_filter_matches(shown: str, statuses: Iterable[str]) -> bool:
    """Whether a job showing ``shown`` matches a status filter (no values: everything)."""
    values = list(statuses)
    return not values or any(shown in STATUS_FILTER_MEANING[s] for s in values)


def check_status_filter(values: Iterable[str]) -> tuple[str, ...]:
    """The filter values, deduplicated; ``ValueError`` names an unknown one."""
    out = tuple(dict.fromkeys(str(v) for v in values))
    for value in out:
        if value not in STATUS_FILTER_MEANING:
            raise ValueError(f"Unknown status {value!r}. Use one of: {', '.join(STATUS_FILTERS)}.")
    return out


JobSort = Literal[
    "created_desc",
    "created_asc",
    "started_desc",
    "started_asc",
    "duration_desc",
    "duration_asc",
    "progress_desc",
    "progress_asc",
    "type_asc",
    "type_desc",
    "status_asc",
    "status_desc",
]
JOB_SORTS: tuple[str, ...] = get_args(JobSort)
"""Orders of a job search (``sort=`` in the API and the Jobs panel): a column and a
direction. The default is ``created_desc`` (newest first)."""


class ErrorType(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    PAYWALL = "paywall"
    INVALID = "invalid"


@dataclass(frozen=True)
class NewJob:
    """What a caller gives to enqueue a job."""

    job_type: str
    input_data: dict[str, Any] = field(default_factory=dict)
    user_id: str = "local"
    priority: int = 0
    entity_type: str | None = None
    entity_id: str | None = None
    dedupe_key: str | None = None
    max_retries: int = 3
    run_at: datetime | None = None


@dataclass
class Job:
    """One row of ``background_jobs``."""

    id: str
    job_type: str
    user_id: str
    status: JobStatus
    priority: int = 0
    entity_type: str | None = None
    entity_id: str | None = None
    dedupe_key: str | None = None
    input_data: dict[str, Any] = field(default_factory=dict)
    output_data: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    run_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = None
    attempt: int = 0
    retry_count: int = 0
    max_retries: int = 3
    next_retry_at: datetime | None = None
    last_error: str | None = None
    error_type: ErrorType | None = None
    error_message: str | None = None
    pause_requested: bool = False
    cancel_requested: bool = False
    paused_at: datetime | None = None
    resumed_at: datetime | None = None
    pause_reason: str | None = None
    resume_count: int = 0
    last_checkpoint_path: str | None = None
    last_checkpoint_stage: str | None = None
    checkpoint_hash: str | None = None
    claim_reason: str | None = None
    """Why the current (or last) run was claimed: None (its first run), ``resume``,
    ``release`` (handed back by a stopping worker), ``retry`` or ``takeover``. Only a first
    run, a retry and a takeover count a new ``attempt``."""
    takeovers: int = 0
    """Times its lease ran out and another worker took it over since a person last started
    it; past ``max_takeovers`` the reaper fails it (a crash loop)."""
    infra_retries: int = 0
    """Times it was set aside because the storage or the database failed under it."""

    @property
    def display_status(self) -> str:
        """The status a person sees: the stored one, or pausing, cancelling (a request is
        pending at a running job) or retrying (failed with an automatic retry scheduled);
        see :func:`shown_status`."""
        return shown_status(
            self.status,
            pause_requested=self.pause_requested,
            cancel_requested=self.cancel_requested,
            retry_scheduled=self.next_retry_at is not None,
        )

    def matches_status(self, statuses: Iterable[str]) -> bool:
        """Whether this job is selected by a status filter (see :data:`STATUS_FILTERS`)."""
        return status_filter_matches(self.display_status, statuses)

    @property
    def short_id(self) -> str:
        return short_job_id(self.id)

    @property
    def stage(self) -> str | None:
        value = self.progress.get("stage")
        return str(value) if value is not None else None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        data: dict[str, Any] = {}
        for name in _JOB_FIELDS:
            if name in row:
                data[name] = row[name]
        for name in ("input_data", "output_data", "progress"):
            value = data.get(name)
            if isinstance(value, str):
                data[name] = json.loads(value)
        if data.get("progress") is None:
            data["progress"] = {}
        if data.get("input_data") is None:
            data["input_data"] = {}
        for name in _TIME_FIELDS:
            data[name] = parse_time(data.get(name))
        for name in ("id", "entity_id"):
            if data.get(name) is not None:
                data[name] = str(data[name])
        data["status"] = JobStatus(data["status"])
        if data.get("error_type"):
            data["error_type"] = ErrorType(data["error_type"])
        for name in ("pause_requested", "cancel_requested"):
            data[name] = bool(data.get(name))
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _JOB_FIELDS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            out[name] = value
        return out


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a search, a count or a bulk action covers (the stores turn it into SQL).

    Every given dimension must match; the values inside one are alternatives. Empty
    ``types`` or ``statuses`` select any; ``ids``/``entity_ids`` of ``None`` select any,
    an empty tuple none. ``statuses`` are :data:`STATUS_FILTERS` values."""

    user_id: str | None = None
    types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    stage: str | None = None
    """Unfinished jobs in this stage (see :data:`UNFINISHED_SHOWN`)."""
    q: str | None = None
    """Text search (case-insensitive, literal) over the id, type, input, progress details
    and stage, error message, entity id and worker id."""
    q_entity_ids: tuple[str, ...] = ()
    """Entities whose own text matched ``q`` elsewhere (e.g. documents by title): their jobs
    match the text search too."""
    ids: tuple[str, ...] | None = None
    entity_type: str | None = None
    entity_ids: tuple[str, ...] | None = None
    exclude_types: tuple[str, ...] = ()
    """Hidden types, left out unless asked for by name in ``types``."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "types", tuple(dict.fromkeys(self.types)))
        set_(self, "statuses", check_status_filter(self.statuses))
        set_(self, "q_entity_ids", tuple(self.q_entity_ids))
        set_(self, "exclude_types", tuple(t for t in self.exclude_types if t not in self.types))
        for name in ("ids", "entity_ids"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, tuple(value))

    def without(self, dimension: str) -> JobFilter:
        """This filter with one of the facet dimensions (type, status, stage) dropped."""
        if dimension == "type":
            return replace(self, types=())
        if dimension == "status":
            return replace(self, statuses=())
        if dimension == "stage":
            return replace(self, stage=None)
        raise ValueError(dimension)

    def shown_statuses(self) -> tuple[str, ...] | None:
        """The shown statuses the status filter selects (None: any)."""
        if not self.statuses:
            return None
        selected = set().union(*(STATUS_FILTER_MEANING[s] for s in self.statuses))
        return tuple(s for s in SHOWN_STATUSES if s in selected)

    def stored_statuses(self) -> tuple[str, ...] | None:
        """The stored statuses behind :meth:`shown_statuses` (lets the database use its
        status indexes)."""
        shown = self.shown_statuses()
        if shown is None:
            return None
        return tuple(dict.fromkeys(STORED_STATUS_OF[s].value for s in shown))

    def checked_ids(self, name: str = "ids") -> tuple[str, ...] | None:
        """``ids`` as canonical UUID strings; values that are no job id are dropped (they
        match nothing)."""
        value: tuple[str, ...] | None = getattr(self, name)
        if value is None:
            return None
        out: list[str] = []
        for item in value:
            try:
                out.append(str(uuid.UUID(str(item))))
            except ValueError:
                continue
        return tuple(out)

    def like_pattern(self) -> str | None:
        """``q`` as a LIKE pattern (wildcards in it are literal; escape character ``\\``)."""
        if not self.q:
            return None
        escaped = self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"


@dataclass
class Facets:
    """Counts for filter badges: each dimension counted under the filter's other two (so a
    badge says how many jobs choosing it would show), plus the total under all three and
    ``everything`` (under none of them)."""

    total: int
    by_type: dict[str, int]
    by_status: dict[str, int]
    by_stage: dict[str, int]
    everything: int

    @classmethod
    def count(cls, f: JobFilter, groups: Iterable[tuple[str, str, str | None, int]]) -> Facets:
        """From ``(job_type, shown status, stage, n)`` groups of the jobs matching ``f``
        without its type, status and stage."""
        by_type: dict[str, int] = {}
        by_status: dict[str, int] = {}
        by_stage: dict[str, int] = {}
        total = everything = 0
        for job_type, shown, stage, n in groups:
            type_ok = not f.types or job_type in f.types
            status_ok = status_filter_matches(shown, f.statuses)
            stage_ok = not f.stage or (stage == f.stage and shown in UNFINISHED_SHOWN)
            everything += n
            if status_ok and stage_ok:
                by_type[job_type] = by_type.get(job_type, 0) + n
            if type_ok and stage_ok:
                for value in STATUS_FILTERS:
                    if shown in STATUS_FILTER_MEANING[value]:
                        by_status[value] = by_status.get(value, 0) + n
            if type_ok and status_ok and stage and shown in UNFINISHED_SHOWN:
                by_stage[stage] = by_stage.get(stage, 0) + n
            if type_ok and status_ok and stage_ok:
                total += n
        return cls(total, by_type, by_status, by_stage, everything)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "all": self.everything,
            "by_type": self.by_type,
            "by_status": self.by_status,
            "by_stage": self.by_stage,
        }


@dataclass(frozen=True)
class JobEvent:
    """One row of ``job_events``: a step in a job's timeline."""

    id: int
    job_id: str
    at: datetime | None
    from_status: str | None
    to_status: str | None
    stage: str | None
    message: str | None
    worker_id: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobEvent:
        return cls(
            id=int(row["id"]),
            job_id=str(row["job_id"]),
            at=parse_time(row.get("at")),
            from_status=row.get("from_status"),
            to_status=row.get("to_status"),
            stage=row.get("stage"),
            message=row.get("message"),
            worker_id=row.get("worker_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "at": self.at.isoformat() if self.at else None,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "stage": self.stage,
            "message": self.message,
            "worker_id": self.worker_id,
        }


@dataclass(frozen=True)
class JobLogLine:
    """One row of ``job_logs``: a line a job's handler logged while it ran."""

    id: int
    job_id: str
    at: datetime | None
    level: str
    logger: str
    message: str
    stage: str | None = None
    worker_id: str | None = None
    attempt: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobLogLine:
        attempt = row.get("attempt")
        return cls(
            id=int(row["id"]),
            job_id=str(row["job_id"]),
            at=parse_time(row.get("at")),
            level=str(row["level"]),
            logger=str(row["logger"]),
            message=str(row["message"]),
            stage=row.get("stage"),
            worker_id=row.get("worker_id"),
            attempt=int(attempt) if attempt is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "at": self.at.isoformat() if self.at else None,
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
            "stage": self.stage,
            "worker_id": self.worker_id,
            "attempt": self.attempt,
        }


@dataclass(frozen=True)
class WorkerInfo:
    """One row of ``workers``."""

    id: str
    host: str
    pid: int
    started_at: datetime | None
    last_seen_at: datetime | None
    concurrency: int
    stopped_at: datetime | None = None
    job_types: tuple[str, ...] = ()
    """The job types the worker claims (empty: not recorded)."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkerInfo:
        types = row.get("job_types") or ""
        return cls(
            id=str(row["id"]),
            host=str(row["host"]),
            pid=int(row["pid"]),
            started_at=parse_time(row.get("started_at")),
            last_seen_at=parse_time(row.get("last_seen_at")),
            concurrency=int(row["concurrency"]),
            stopped_at=parse_time(row.get("stopped_at")),
            job_types=tuple(t for t in str(types).split(",") if t),
        )


@dataclass(frozen=True)
class Control:
    """Control flags a worker reads back for a running job."""

    pause_requested: bool = False
    cancel_requested: bool = False


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


_JOB_FIELDS = tuple(Job.__dataclass_fields__)
_TIME_FIELDS = (
    "created_at",
    "run_at",
    "started_at",
    "completed_at",
    "updated_at",
    "heartbeat_at",
    "lease_expires_at",
    "next_retry_at",
    "paused_at",
    "resumed_at",
)
