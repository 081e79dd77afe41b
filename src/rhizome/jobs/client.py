"""The Python API for producers: validated enqueue.

from rhizome.jobs.client import enqueue
[job] = enqueue(store, "noop", {"sleep_ms": 10})
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

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
