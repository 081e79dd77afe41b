"""How jobs look in the UI and the API (rendering helpers, no I/O): type labels and icons
(from the job registry only), status texts, stage ranges, titles, ETA, guidance, number and
time formats, and the SVG icons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from rhizome.jobs.model import ErrorType, Job, JobStatus
from rhizome.jobs.registry import Registry, Stage
from rhizome.jobs.vocabulary import (
    ERROR_TEXT,
    STATUS_TEXT,
    error_text,
    humanize,
    stage_labels,
    status_text,
)

__all__ = [
    "ERROR_TEXT",
    "STATUS_TEXT",
    "error_text",
    "humanize",
    "stage_labels",
    "status_text",
]

# --- job types -------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeDisplay:
    name: str
    label: str
    icon: str
    hidden: bool = False
    registered: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "icon": self.icon,
            "hidden": self.hidden,
            "registered": self.registered,
        }


def type_display(registry: Registry, name: str) -> TypeDisplay:
    """A job type's label and icon, as its registry entry declares them. A type that is not
    registered in this process (its jobs may still be in the database) shows its name and
    a plain box, and is never offered as a filter."""
    if name in registry:
        jt = registry.get(name)
        return TypeDisplay(name, jt.label or _humanize(name), jt.icon, jt.hidden, True)
    return TypeDisplay(name, _humanize(name), "box", False, False)


def all_types(registry: Registry, *, include_hidden: bool = False) -> list[TypeDisplay]:
    """The registered job types (the ones offered as filters), by name."""
    out = [type_display(registry, n) for n in registry.names()]
    return [t for t in out if include_hidden or not t.hidden]


def hidden_types(registry: Registry) -> list[str]:
    return [jt.name for jt in registry.all() if jt.hidden]


def _humanize(name: str) -> str:
    return humanize(name)


# --- statuses -----------------------------------------------------------------------------

# STATUS_TEXT (each status filter value and shown status), ERROR_TEXT: the one vocabulary
# of rhizome.jobs.vocabulary, shared with the CLI.


def status_label(job: Job) -> str:
    """The status a person sees: the stored one, or pausing/cancelling/retrying."""
    return job.display_status


DOCK_STATUSES = ("active", "paused", "retrying")
"""Status filter values of the jobs the ProcessingDock shows: waiting, running, paused,
or failed with an automatic retry due."""


def is_dock_job(job: Job) -> bool:
    return job.matches_status(DOCK_STATUSES)


# --- errors -------------------------------------------------------------------------------

ERROR_GUIDANCE: dict[str, str] = {
    ErrorType.TRANSIENT.value: (
        "A temporary problem (network, timeout, a busy service). The job retries "
        "automatically with growing delays and continues from its last checkpoint."
    ),
    "transient-exhausted": (
        "A temporary problem (network, timeout, a busy service) kept coming back, and "
        "the automatic retries are used up. Check the connection or the service, then "
        "retry the job: it continues from its last checkpoint."
    ),
    ErrorType.PERMANENT.value: (
        "The job cannot finish as it is. Read the message, fix the cause, then retry it "
        "(from its checkpoint, or from the beginning) or delete it."
    ),
    ErrorType.PAYWALL.value: (
        "A service refused for quota, billing or credits. Check your plan or credits, "
        "then retry the job."
    ),
    ErrorType.INVALID.value: (
        "The input cannot be processed (a corrupt, encrypted, empty or unsupported "
        "file, or bad parameters). Fix the input and add it again; retrying alone will "
        "not help."
    ),
}


# --- stages, progress, titles ---------------------------------------------------------------


def error_guidance(job: Job) -> str | None:
    """What to do about the job's error: for a temporary problem, whether the job still
    retries by itself or its retries are used up."""
    if job.error_type is None:
        return None
    key = job.error_type.value
    if job.error_type is ErrorType.TRANSIENT and job.next_retry_at is None:
        key = "transient-exhausted"
    return ERROR_GUIDANCE.get(key)


def shows_error(job: Job) -> bool:
    """Whether the job's recorded error is current: it failed (or retries after a
    failure), or was cancelled after one. A job that completed after a failed attempt
    shows no error (its timeline keeps the history)."""
    return job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING) or (
        job.status is JobStatus.PROCESSING and job.retry_count > 0
    )


def job_stages(registry: Registry, job: Job) -> list[Stage]:
    if job.job_type not in registry:
        return []
    jt = registry.get(job.job_type)
    try:
        return list(jt.stages_for(jt.validate_input(job.input_data)))
    except Exception:  # a bad input shows no stage table, never an error page
        return []


def stage_rows(registry: Registry, job: Job) -> list[dict[str, Any]]:
    """Each declared stage with its percent range, state and fill (0..100 inside it)."""
    stages = job_stages(registry, job)
    current = job.stage
    percent = percent_of(job)
    names = [s.name for s in stages]
    index = names.index(current) if current in names else -1
    done_all = job.status is JobStatus.COMPLETED
    rows = []
    for i, s in enumerate(stages):
        if done_all or (index >= 0 and i < index):
            state, fill = "done", 100.0
        elif i == index:
            span = max(s.end - s.start, 0.0001)
            fill = max(0.0, min(100.0, (percent - s.start) / span * 100))
            state = "current"
        else:
            state, fill = "todo", 0.0
        rows.append(
            {
                "name": s.name,
                "label": s.label,
                "start": s.start,
                "end": s.end,
                "pause_safe": s.pause_safe,
                "state": state,
                "fill": round(fill, 1),
            }
        )
    return rows


def stage_label(registry: Registry, job: Job, stage: str | None = None) -> str | None:
    """The label of the job's current stage (or of ``stage``), as its type declares it."""
    current = stage if stage is not None else job.stage
    if current is None:
        return None
    for s in job_stages(registry, job):
        if s.name == current:
            return s.label
    labels = stage_labels(registry, [job.job_type])
    return labels.get(current) or _humanize(current)


def percent_of(job: Job) -> float:
    try:
        value = float(job.progress.get("percent") or 0)
    except (TypeError, ValueError):
        return 0.0
    if job.status is JobStatus.COMPLETED:
        return 100.0
    return max(0.0, min(100.0, value))


def job_title(job: Job, document_title: str | None = None, type_label: str | None = None) -> str:
    """A short title (the seed's getJobTitle, for all types); ``type_label`` (from the
    registry) when nothing better is known."""
    if document_title:
        return document_title
    data = job.input_data
    for key in ("title", "filename", "url", "path", "vault_path"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value.rstrip("/").rsplit("/", 1)[-1] if key.endswith("path") else value
    ids = data.get("document_ids") or data.get("documentIds")
    if job.job_type == "export_documents":
        if not isinstance(ids, list):
            return "Exporting the library"
        n = len(ids)
        return f"Exporting {n} document{'s' if n != 1 else ''}"
    if job.job_type == "reprocess_connections":
        mode = data.get("mode")
        return f"Reprocessing connections ({mode})" if mode else "Reprocessing connections"
    if job.job_type == "noop":
        return f"No-op ({data.get('stages', 0)} stages, {data.get('units', 1)} units each)"
    return type_label or _humanize(job.job_type)


def eta_seconds(job: Job, now: datetime | None = None) -> float | None:
    """A first estimate of the time left for a processing job: its average speed since its
    first start, if it never stopped (the page then refines it from a smoothed rate of the
    live progress, see static/app.js). None while there is too little to go on."""
    if job.status is not JobStatus.PROCESSING or job.started_at is None:
        return None
    percent = percent_of(job)
    if percent <= 1 or percent >= 100:
        return None
    if job.resume_count or job.attempt > 1 or job.claim_reason is not None:
        return None  # the percent includes earlier runs: no honest rate yet
    now = now or datetime.now(UTC)
    elapsed = (now - job.started_at).total_seconds()
    if elapsed <= 1:
        return None
    return elapsed / percent * (100 - percent)


def checkpoint_info(job: Job) -> dict[str, Any] | None:
    """Where the job can resume from: stage, time, size, hash (progress + row)."""
    info = job.progress.get("checkpoint")
    if not job.last_checkpoint_path and not isinstance(info, dict):
        return None
    data: dict[str, Any] = dict(info) if isinstance(info, dict) else {}
    data.setdefault("stage", job.last_checkpoint_stage)
    data.setdefault("path", job.last_checkpoint_path)
    data.setdefault("sha256", job.checkpoint_hash)
    if job.last_checkpoint_path:
        data["path"] = job.last_checkpoint_path
        data["stage"] = job.last_checkpoint_stage or data.get("stage")
        data["sha256"] = job.checkpoint_hash or data.get("sha256")
    data["resumable"] = bool(job.last_checkpoint_path)
    return data


def checkpoint_view(registry: Registry, job: Job) -> dict[str, Any] | None:
    """:func:`checkpoint_info` with the stage's label."""
    data = checkpoint_info(job)
    if data is not None:
        stage = data.get("stage")
        data["stage_label"] = stage_label(registry, job, str(stage)) if stage else None
    return data


# --- formatting (Jinja filters) --------------------------------------------------------------


def fmt_int(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def fmt_bytes(value: Any) -> str:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s < 600 else f"{round(s / 60)} min"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return value.isoformat()


def fmt_time(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        parsed = value
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- icons ------------------------------------------------------------------------------------

_PATHS: dict[str, str] = {
    "file-text": '<path d="M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z"/>'
    '<path d="M14 2v6h6M16 13H8M16 17H8M10 9H8"/>',
    "download": '<path d="M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4"/>'
    '<path d="m7 10 5 5 5-5M12 15V3"/>',
    "upload": '<path d="M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4"/>'
    '<path d="m17 8-5-5-5 5M12 3v12"/>',
    "package": '<path d="m7.5 4.3 9 5.2"/><path d="M21 8 12 3 3 8v8l9 5 9-5z"/>'
    '<path d="M3.3 7 12 12l8.7-5M12 22V12"/>',
    "network": '<circle cx="12" cy="5" r="2.5"/><circle cx="5" cy="19" r="2.5"/>'
    '<circle cx="19" cy="19" r="2.5"/><path d="M12 7.5V12m0 0-5.3 5.2M12 12l5.3 5.2"/>',
    "radar": '<circle cx="12" cy="12" r="9"/><circle cx="12" cy="12" r="5"/>'
    '<path d="M12 12 19 5"/><circle cx="12" cy="12" r="1"/>',
    "gem": '<path d="M6 3h12l4 6-10 13L2 9z"/><path d="M2 9h20M12 22 8 9l4-6 4 6z"/>',
    "refresh-cw": '<path d="M21 12a9 9 0 0 0-15-6.7L3 8"/><path d="M3 3v5h5"/>'
    '<path d="M3 12a9 9 0 0 0 15 6.7l3-2.7"/><path d="M16 16h5v5"/>',
    "highlighter": '<path d="m9 11-6 6v3h9l3-3"/>'
    '<path d="m22 12-4.6 4.6a2 2 0 0 1-2.8 0l-5.2-5.2a2 2 0 0 1 0-2.8L14 4"/>',
    "circle-dashed": '<circle cx="12" cy="12" r="9" stroke-dasharray="3 3"/>',
    "zap": '<path d="M13 2 3 14h9l-1 8 10-12h-9l1-8z"/>',
    "git-branch": '<path d="M6 3v12"/><circle cx="18" cy="6" r="3"/><circle cx="6" cy="18" r="3"/>'
    '<path d="M18 9a9 9 0 0 1-9 9"/>',
    "box": '<rect x="3" y="3" width="18" height="18" rx="2"/>',
    "pause": '<rect x="6" y="4" width="4" height="16" rx="1"/>'
    '<rect x="14" y="4" width="4" height="16" rx="1"/>',
    "play": '<path d="M6 4v16l14-8z"/>',
    "x": '<path d="M18 6 6 18M6 6l12 12"/>',
    "rotate-ccw": '<path d="M3 12a9 9 0 1 0 3-6.7L3 8"/><path d="M3 3v5h5"/>',
    "trash": '<path d="M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6"/>',
    "chevron-down": '<path d="m6 9 6 6 6-6"/>',
    "chevron-up": '<path d="m18 15-6-6-6 6"/>',
}
ICONS = frozenset(_PATHS)


def icon(name: str, size: int = 18, title: str | None = None) -> Markup:
    """An icon as inline SVG; a name without a drawing (e.g. a job type's icon that this
    set lacks) shows a plain box."""
    body = _PATHS.get(name, _PATHS["box"])
    label = f"<title>{Markup.escape(title)}</title>" if title else ""
    return Markup(
        f'<svg class="icon icon-{Markup.escape(name)}" width="{size}" height="{size}" '
        'viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" '
        f'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">{label}{body}</svg>'
    )


def icon_svgs() -> Mapping[str, str]:
    """Every icon as SVG markup (for the JavaScript that renders the dock)."""
    return {name: str(icon(name)) for name in _PATHS}
