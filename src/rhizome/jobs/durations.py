"""How long a job ran and how long it spent in each stage, from its timeline.

A job's *run time* is the sum of its processing spells (from each claim to the next status
change: completed, failed, paused, released, lease expired); a *stage spell* runs from a
"stage X started" event to the next stage start or status change. Waiting, paused and
retry delays are not run time. The SQL of the dashboards (``dash_runs`` and
``dash_stage_times`` in ``jobs/store/sql/<dialect>/operator.sql``) computes the same thing
over many jobs; tests compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rhizome.jobs.model import JobEvent


def is_stage_start(e: JobEvent) -> bool:
    """An event :meth:`JobContext.stage` writes when a stage starts (or restarts)."""
    return (
        e.to_status is None
        and bool(e.stage)
        and (e.message or "").startswith("stage ")
        and (e.message or "").endswith(" started")
    )


@dataclass
class Durations:
    run_seconds: float = 0.0
    """Time spent processing, over all runs."""
    wait_seconds: float | None = None
    """From creation to the first claim."""
    runs: int = 0
    """Processing spells (claims)."""
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage, in the order the stages first started."""
    running_stage: str | None = None
    """The stage whose spell is still open (the job is processing)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_seconds": round(self.run_seconds, 3),
            "wait_seconds": round(self.wait_seconds, 3) if self.wait_seconds is not None else None,
            "runs": self.runs,
            "stages": [
                {"stage": name, "seconds": round(sec, 3), "running": name == self.running_stage}
                for name, sec in self.stages.items()
            ],
        }


def job_durations(events: Sequence[JobEvent], now: datetime | None = None) -> Durations:
    """Durations from a job's events (in id order). A spell still open counts until
    ``now`` when the job is processing (its last status change was a claim)."""
    now = now or datetime.now(UTC)
    out = Durations()
    created: datetime | None = None
    processing_since: datetime | None = None
    stage_open: tuple[str, datetime] | None = None
    for e in sorted(events, key=lambda x: x.id):
        if e.at is None:
            continue
        if stage_open is not None and (e.to_status is not None or is_stage_start(e)):
            name, since = stage_open
            out.stages[name] = out.stages.get(name, 0.0) + _seconds(since, e.at)
            stage_open = None
        if is_stage_start(e):
            assert e.stage is not None
            out.stages.setdefault(e.stage, 0.0)
            stage_open = (e.stage, e.at)
            continue
        if e.to_status is None:
            continue
        if e.from_status is None and e.to_status == "pending" and created is None:
            created = e.at
        if e.from_status == "processing" and processing_since is not None:
            out.run_seconds += _seconds(processing_since, e.at)
            processing_since = None
        if e.to_status == "processing":
            if out.runs == 0 and created is not None:
                out.wait_seconds = _seconds(created, e.at)
            out.runs += 1
            processing_since = e.at
    if processing_since is not None:
        out.run_seconds += _seconds(processing_since, now)
        if stage_open is not None:
            name, since = stage_open
            out.stages[name] = out.stages.get(name, 0.0) + _seconds(since, now)
            out.running_stage = name
    return out


def _seconds(a: datetime, b: datetime) -> float:
    if a.tzinfo is None:
        a = a.replace(tzinfo=UTC)
    if b.tzinfo is None:
        b = b.replace(tzinfo=UTC)
    return max(0.0, (b - a).total_seconds())


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))
