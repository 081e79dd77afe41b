"""The Python API for producers: validated enqueue.

from rhizome.jobs.client import enqueue
[job] = enqueue(store, "noop", {"sleep_ms": 10})
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from rhizome.errors import UnknownJobTypeError
from rhizome.jobs.model import Job, NewJob
from rhizome.jobs.registry import Registry, registry
from rhizome.jobs.store.base import SqlJobStore

BATCH = 5000


def enqueue(
    store: SqlJobStore,
    job_type: str,
    input_data: Mapping[str, Any] | None = None,
    *,
    count: int = 1,
    priority: int = 0,
    user_id: str = "local",
    entity_type: str | None = None,
    entity_id: str | None = None,
    dedupe_key: str | None = None,
    run_at: datetime | None = None,
    max_retries: int | None = None,
    types: Registry = registry,
) -> list[Job]:
    """Validate ``input_data`` against the job type's model and enqueue ``count`` jobs.

    Raises UnknownJobTypeError or InvalidInputError (with the offending fields)."""
    jt = types.get(job_type)
    data = dict(input_data or {})
    jt.validate_input(data)
    spec = NewJob(
        job_type,
        data,
        user_id=user_id,
        priority=priority,
        entity_type=entity_type,
        entity_id=entity_id,
        dedupe_key=dedupe_key,
        max_retries=jt.max_retries if max_retries is None else max_retries,
        run_at=run_at,
    )
    created: list[Job] = []
    for start in range(0, count, BATCH):
        created.extend(store.enqueue([spec] * min(BATCH, count - start)))
    return created


WORKER_ALIVE = timedelta(seconds=60)
"""A worker seen this recently counts as live for :func:`enqueue_for_workers`."""


def enqueue_for_workers(
    store: SqlJobStore,
    job_type: str,
    input_data: Mapping[str, Any] | None = None,
    *,
    count: int = 1,
    priority: int = 0,
    user_id: str = "local",
    types: Registry = registry,
) -> list[Job]:
    """Enqueue a job type this process does not know but a live worker runs (it was
    started with ``--app``). The worker validates the input when it claims the job; bad
    input fails the job as ``invalid``."""
    if job_type in types:
        return enqueue(store, job_type, input_data, count=count, priority=priority, user_id=user_id)
    now = datetime.now(UTC)
    runners = [
        w
        for w in store.list_workers()
        if w.stopped_at is None
        and w.last_seen_at is not None
        and now - w.last_seen_at < WORKER_ALIVE
        and job_type in w.job_types
    ]
    if not runners:
        known = ", ".join(types.names()) or "none"
        raise UnknownJobTypeError(
            f"Unknown job type {job_type!r}: neither this command nor a live worker knows "
            f"it. Registered here: {known}.",
            "Pass --app MODULE (or set RHIZOME_APPS) to import the module that defines it, "
            "or start a worker with --app MODULE first.",
        )
    spec = NewJob(job_type, dict(input_data or {}), user_id=user_id, priority=priority)
    created: list[Job] = []
    for start in range(0, count, BATCH):
        created.extend(store.enqueue([spec] * min(BATCH, count - start)))
    return created
