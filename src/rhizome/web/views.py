"""JSON views of jobs and documents, shared by the API, the event stream and the pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rhizome.jobs.model import Job, JobEvent, WorkerInfo
from rhizome.jobs.registry import Registry
from rhizome.library import Chunk, Document
from rhizome.web import display

SUMMARY_FIELDS = (
    "id",
    "job_type",
    "user_id",
    "status",
    "priority",
    "entity_type",
    "entity_id",
    "created_at",
    "run_at",
    "started_at",
    "completed_at",
    "updated_at",
    "worker_id",
    "heartbeat_at",
    "attempt",
    "retry_count",
    "max_retries",
    "next_retry_at",
    "error_type",
    "error_message",
    "pause_requested",
    "cancel_requested",
    "paused_at",
    "resumed_at",
    "pause_reason",
    "resume_count",
    "last_checkpoint_stage",
)


def job_summary(registry: Registry, job: Job, document_title: str | None = None) -> dict[str, Any]:
    """What lists, the dock and the event stream need (no input/output/traceback)."""
    full = job.to_dict()
    out = {k: full[k] for k in SUMMARY_FIELDS}
    t = display.type_display(registry, job.job_type)
    progress = job.progress
    out.update(
        {
            "status_label": display.status_label(job),
            "status_text": display.STATUS_TEXT.get(display.status_label(job), job.status.value),
            "type_label": t.label,
            "type_icon": t.icon,
            "hidden": t.hidden,
            "title": display.job_title(job, document_title, t.label),
            "percent": display.percent_of(job),
            "stage": job.stage,
            "stage_label": display.stage_label(registry, job),
            "details": progress.get("details"),
            "checkpoint": display.checkpoint_info(job),
            "eta_seconds": display.eta_seconds(job),
            "dock": display.is_dock_job(job),
        }
    )
    return out


def job_detail(
    registry: Registry,
    job: Job,
    *,
    document_title: str | None = None,
    events: list[JobEvent] | None = None,
    worker: WorkerInfo | None = None,
) -> dict[str, Any]:
    """Everything about one job: the row, its stages, checkpoint, error, retry, worker and
    timeline."""
    out = job_summary(registry, job, document_title)
    full = job.to_dict()
    out.update(
        {
            "input_data": full["input_data"],
            "output_data": full["output_data"],
            "progress": full["progress"],
            "last_error": full["last_error"],
            "last_checkpoint_path": full["last_checkpoint_path"],
            "checkpoint_hash": full["checkpoint_hash"],
            "dedupe_key": full["dedupe_key"],
            "lease_expires_at": full["lease_expires_at"],
            "stages": display.stage_rows(registry, job),
            "error_guidance": display.ERROR_GUIDANCE.get(job.error_type.value)
            if job.error_type
            else None,
            "retry": retry_info(job),
            "worker": worker_view(worker) if worker else None,
            "events": [e.to_dict() for e in events] if events is not None else None,
        }
    )
    return out


def retry_info(job: Job, now: datetime | None = None) -> dict[str, Any] | None:
    if job.next_retry_at is None:
        return None
    now = now or datetime.now(UTC)
    return {
        "attempt": job.retry_count,
        "of": job.max_retries,
        "at": job.next_retry_at.isoformat(),
        "in_seconds": max(0.0, (job.next_retry_at - now).total_seconds()),
    }


def worker_view(w: WorkerInfo, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    age = (now - w.last_seen_at).total_seconds() if w.last_seen_at else None
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "concurrency": w.concurrency,
        "started_at": display.iso(w.started_at),
        "last_seen_at": display.iso(w.last_seen_at),
        "stopped_at": display.iso(w.stopped_at) or None,
        "seen_seconds_ago": age,
    }


def document_view(doc: Document, job: Job | None = None) -> dict[str, Any]:
    out = doc.to_dict()
    out["job"] = None
    if job is not None:
        out["job"] = {
            "id": job.id,
            "job_type": job.job_type,
            "status": job.status.value,
            "status_label": display.status_label(job),
            "percent": display.percent_of(job),
            "stage": job.stage,
            "details": job.progress.get("details"),
        }
    return out


def chunk_view(c: Chunk) -> dict[str, Any]:
    return c.to_dict()
