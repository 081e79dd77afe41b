"""JSON views of jobs and documents, shared by the API, the event stream and the pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rhizome.jobs.durations import job_durations
from rhizome.jobs.model import Job, JobEvent, JobStatus, WorkerInfo
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
    "claim_reason",
)


def job_summary(registry: Registry, job: Job, document_title: str | None = None) -> dict[str, Any]:
    """What lists, the dock and the event stream need (no input/output/traceback)."""
    full = job.to_dict()
    out = {k: full[k] for k in SUMMARY_FIELDS}
    t = display.type_display(registry, job.job_type)
    progress = job.progress
    current_error = display.shows_error(job)
    out.update(
        {
            "status_label": display.status_label(job),
            "status_text": display.status_text(display.status_label(job)),
            "type_label": t.label,
            "type_icon": t.icon,
            "hidden": t.hidden,
            "title": display.job_title(job, document_title, t.label),
            "percent": display.percent_of(job),
            "stage": job.stage,
            "stage_label": display.stage_label(registry, job),
            "substage": progress.get("substage"),
            "details": progress.get("details"),
            "checkpoint": display.checkpoint_view(registry, job),
            "eta_seconds": display.eta_seconds(job),
            "run_seconds": wall_seconds(job),
            "dock": display.is_dock_job(job),
            # an error a job got over (it completed since) is history, not its state
            "error_type": out["error_type"] if current_error else None,
            "error_message": out["error_message"] if current_error else None,
            "error_text": display.error_text(out["error_type"]) if current_error else None,
        }
    )
    return out


def wall_seconds(job: Job, now: datetime | None = None) -> float | None:
    """From the first start to completion (or now, while unfinished): what the Jobs panel's
    Duration column shows and sorts by. The job page shows the exact run time."""
    if job.started_at is None:
        return None
    end = job.completed_at
    if end is None:
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.COMPLETED):
            end = job.updated_at
        else:
            end = now or datetime.now(UTC)
    if end is None:
        return None
    return max(0.0, (end - job.started_at).total_seconds())


def job_detail(
    registry: Registry,
    job: Job,
    *,
    document_title: str | None = None,
    events: list[JobEvent] | None = None,
    worker: WorkerInfo | None = None,
) -> dict[str, Any]:
    """Everything about one job: the row, its stages, checkpoint, error, retry, worker,
    timeline and durations (run time and time per stage, from the timeline)."""
    out = job_summary(registry, job, document_title)
    full = job.to_dict()
    durations = job_durations(events) if events is not None else None
    stage_names = {s["name"] for s in display.stage_rows(registry, job)}
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
            "takeovers": job.takeovers,
            "infra_retries": job.infra_retries,
            "stages": display.stage_rows(registry, job),
            "error_guidance": display.error_guidance(job) if out["error_type"] else None,
            "previous_error": None
            if out["error_type"] or not job.error_message
            else {
                "error_type": full["error_type"],
                "error_text": display.error_text(full["error_type"]),
                "error_message": full["error_message"],
            },
            "retry": retry_info(job),
            "worker": worker_view(worker) if worker else None,
            "events": None if events is None else [event_view(registry, job, e) for e in events],
            "durations": None
            if durations is None
            else {
                **durations.to_dict(),
                "stages": [
                    {**row, "label": display.stage_label(registry, job, row["stage"])}
                    for row in durations.to_dict()["stages"]
                    if row["stage"] in stage_names or not stage_names
                ],
            },
        }
    )
    return out


def event_view(registry: Registry, job: Job, e: JobEvent) -> dict[str, Any]:
    """A timeline entry with the labels a person reads."""
    out = e.to_dict()
    out["from_text"] = display.status_text(e.from_status) if e.from_status else None
    out["to_text"] = display.status_text(e.to_status) if e.to_status else None
    out["stage_label"] = display.stage_label(registry, job, e.stage) if e.stage else None
    message = e.message or ""
    if e.stage and message == f"stage {e.stage} started":
        message = f"{out['stage_label']} started"
    out["text"] = message
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


def document_view(
    doc: Document, job: Job | None = None, registry: Registry | None = None
) -> dict[str, Any]:
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
            "stage_label": display.stage_label(registry, job)
            if registry is not None
            else (display.humanize(job.stage) if job.stage else None),
            "details": job.progress.get("details"),
        }
    return out


def chunk_view(c: Chunk) -> dict[str, Any]:
    return c.to_dict()
