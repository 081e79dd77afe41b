"""The words a person reads for job statuses, stages and error classes: one vocabulary for
the web UI, the API (``*_label`` / ``*_text`` fields) and the CLI.

Values stay what they are (``processing``, ``embed``, ``transient``: filters, columns,
scripts); wherever a person reads them, they see these labels. Stage labels come from the
job types' registry entries.
"""

from __future__ import annotations

from rhizome.jobs.model import STATUS_FILTERS, ErrorType
from rhizome.jobs.registry import Registry

STATUS_TEXT: dict[str, str] = {
    "active": "Active",
    "pending": "Pending",
    "processing": "Processing",
    "pausing": "Pausing…",
    "paused": "Paused",
    "retrying": "Retrying",
    "failed": "Failed",
    "cancelling": "Cancelling…",
    "cancelled": "Cancelled",
    "completed": "Completed",
}
"""Each status filter value and shown status (defined in :mod:`rhizome.jobs.model`)."""
assert set(STATUS_TEXT) == set(STATUS_FILTERS)

ERROR_TEXT: dict[str, str] = {
    ErrorType.TRANSIENT.value: "Temporary problem",
    ErrorType.PERMANENT.value: "Permanent error",
    ErrorType.PAYWALL.value: "Quota or billing",
    ErrorType.INVALID.value: "Invalid input",
}
"""Each error class."""
assert set(ERROR_TEXT) == {e.value for e in ErrorType}

CLAIM_REASON_TEXT: dict[str, str] = {
    "resume": "resumed",
    "release": "handed back by a stopping worker",
    "retry": "retry",
    "takeover": "taken over (its worker stopped)",
}


def status_text(status: str) -> str:
    return STATUS_TEXT.get(status, humanize(status))


def error_text(error_type: str | None) -> str | None:
    if error_type is None:
        return None
    return ERROR_TEXT.get(error_type, humanize(error_type))


def humanize(name: str) -> str:
    """``some_name`` → ``Some name`` (for names nothing else labels)."""
    return name.replace("_", " ").replace("-", " ").strip().capitalize() or name


def stage_label(registry: Registry, job_type: str | None, stage: str | None) -> str | None:
    """The label of a stage of a job type (its registry entry's), or (no type) of a stage
    name over every registered type; a stage nothing declares is humanized."""
    if stage is None:
        return None
    if job_type is None:
        return stage_labels(registry).get(stage) or humanize(stage)
    if job_type in registry:
        jt = registry.get(job_type)
        if not callable(jt.stages):
            for s in jt.stages:
                if s.name == stage:
                    return s.label
    return humanize(stage)  # a type this process does not know: no borrowed label


def stage_labels(registry: Registry, job_types: list[str] | None = None) -> dict[str, str]:
    """Stage name → label over the given (default: every) registered job type with fixed
    stages. A name two types label differently gets both labels (``A / B``)."""
    out: dict[str, list[str]] = {}
    for jt in registry.all():
        if job_types and jt.name not in job_types:
            continue
        if callable(jt.stages):
            continue
        for s in jt.stages:
            labels = out.setdefault(s.name, [])
            if s.label not in labels:
                labels.append(s.label)
    return {name: " / ".join(labels) for name, labels in out.items()}
