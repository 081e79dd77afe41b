"""Typed records of the job system: the contract of the ``background_jobs`` table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING})
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


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

    @property
    def display_status(self) -> str:
        """The status a person sees: the stored one, or pausing, cancelling (a request is
        pending at a running job) or retrying (failed with an automatic retry scheduled)."""
        if self.status is JobStatus.PROCESSING and self.cancel_requested:
            return "cancelling"
        if self.status is JobStatus.PROCESSING and self.pause_requested:
            return "pausing"
        if self.status is JobStatus.FAILED and self.next_retry_at is not None:
            return "retrying"
        return self.status.value

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
class WorkerInfo:
    """One row of ``workers``."""

    id: str
    host: str
    pid: int
    started_at: datetime | None
    last_seen_at: datetime | None
    concurrency: int
    stopped_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkerInfo:
        return cls(
            id=str(row["id"]),
            host=str(row["host"]),
            pid=int(row["pid"]),
            started_at=parse_time(row.get("started_at")),
            last_seen_at=parse_time(row.get("last_seen_at")),
            concurrency=int(row["concurrency"]),
            stopped_at=parse_time(row.get("stopped_at")),
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
