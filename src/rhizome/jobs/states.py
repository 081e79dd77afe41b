"""The job state machine: the one place that decides which status changes are legal.

Every status write in the stores names an *action*; the store asks this table which
``from`` statuses the action accepts and refuses (raises) anything else. Adding a status or
an action means adding rows here, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from rhizome.errors import IllegalTransitionError
from rhizome.jobs.model import JobStatus

P, R, Z = JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.PAUSED
C, F, X = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


@dataclass(frozen=True)
class Transition:
    action: str
    source: JobStatus
    target: JobStatus
    meaning: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition("claim", P, R, "a worker claimed the job"),
    Transition("reclaim", R, R, "lease expired; another worker took the job over"),
    Transition("complete", R, C, "the handler finished"),
    Transition("fail", R, F, "the handler raised an error"),
    Transition("pause", P, Z, "paused before it started"),
    Transition("pause", R, Z, "paused at a safe point"),
    Transition("cancel", P, X, "cancelled before it started"),
    Transition("cancel", Z, X, "cancelled while paused"),
    Transition("cancel", F, X, "cancelled after failing"),
    Transition("cancel", R, X, "cancelled at a safe point"),
    Transition("release", R, P, "released by its worker (shutdown) to run again"),
    Transition("expire", R, P, "lease expired: its worker stopped heartbeating"),
    Transition("resume", Z, P, "resumed"),
    Transition("retry_due", F, P, "automatic retry is due"),
    Transition("retry", F, P, "retried by hand"),
    Transition("retry", X, P, "retried by hand"),
    Transition("force_fail", P, F, "failed by an administrator"),
    Transition("force_fail", R, F, "failed by an administrator"),
    Transition("force_fail", Z, F, "failed by an administrator"),
)

ACTIONS: frozenset[str] = frozenset(t.action for t in TRANSITIONS)


def sources(action: str) -> tuple[JobStatus, ...]:
    """The statuses from which ``action`` is legal, in table order."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    seen: list[JobStatus] = []
    for t in TRANSITIONS:
        if t.action == action and t.source not in seen:
            seen.append(t.source)
    return tuple(seen)


def target(action: str) -> JobStatus:
    """The status ``action`` leads to (every action has exactly one)."""
    targets = {t.target for t in TRANSITIONS if t.action == action}
    if len(targets) != 1:
        raise ValueError(f"unknown action {action!r}")
    return next(iter(targets))


def find(action: str, source: JobStatus | str) -> Transition:
    """The transition for ``action`` from ``source``; raises if it is illegal."""
    source = JobStatus(source)
    for t in TRANSITIONS:
        if t.action == action and t.source == source:
            return t
    legal = ", ".join(s.value for s in sources(action))
    raise IllegalTransitionError(
        f"Cannot {action.replace('_', ' ')} a job that is {source.value} (allowed from: {legal}).",
    )


def is_legal(source: JobStatus | str, dest: JobStatus | str) -> bool:
    return any(t.source == source and t.target == dest for t in TRANSITIONS)
