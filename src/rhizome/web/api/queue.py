"""``/api/queue``, ``/api/job-types``, ``/api/workers``: pausing claims (all jobs or one
type), the registered job types with their labels, icons and stages, and the workers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from rhizome.errors import InvalidInputError
from rhizome.web import display
from rhizome.web.api.common import JobTypeName, Model, Text, admin_for
from rhizome.web.services import dashboard
from rhizome.web.state import ADMIN_ONLY, StateDep, UserDep

router = APIRouter(tags=["queue"])


class QueueRequest(Model):
    type: JobTypeName | None = Field(None, description="One job type; omit for the whole queue.")
    reason: Annotated[Text, Field(min_length=1, max_length=500)] = "queue paused"
    pause_running: bool = Field(
        False, description="Also ask running jobs to pause at their next safe point."
    )


class QueueResumeRequest(Model):
    type: JobTypeName | None = None


@router.get("/queue", summary="Queue and job-type pause state")
def queue_state(state: StateDep, user: UserDep) -> dict[str, Any]:
    controls = state.store.queue_controls()
    return {
        "paused": bool(controls.get("*", {}).get("paused")),
        "controls": controls,
    }


@router.post(
    "/queue/pause", summary="Stop claiming (all jobs, or one type)", dependencies=ADMIN_ONLY
)
def pause_queue(state: StateDep, user: UserDep, body: QueueRequest | None = None) -> dict[str, Any]:
    body = body or QueueRequest()
    if body.type is not None and body.type not in state.known_types():
        raise InvalidInputError(f"Unknown job type {body.type!r}.")
    result = admin_for(state, user).pause_queue(
        body.type, reason=body.reason, pause_running=body.pause_running
    )
    return {"queue": queue_state(state, user), "paused_jobs": result.to_dict()}


@router.post("/queue/resume", summary="Claim again (all, or one type)", dependencies=ADMIN_ONLY)
def resume_queue(
    state: StateDep, user: UserDep, body: QueueResumeRequest | None = None
) -> dict[str, Any]:
    job_type = body.type if body else None
    if job_type is not None and job_type not in state.known_types():
        raise InvalidInputError(f"Unknown job type {job_type!r}.")
    admin_for(state, user).resume_queue(job_type)
    return {"queue": queue_state(state, user)}


@router.get("/job-types", summary="Job types with labels, icons and stages")
def job_types(state: StateDep) -> dict[str, Any]:
    """The registered job types (the only ones offered as filters), with the labels and
    icons their registry entries declare, ``time_limit_seconds``: the longest one run may
    take (the type's own limit, or ``job_time_limits``; null: none), and
    ``memory_limit_mb``: the address-space limit of the child process a run reads untrusted
    input in (the type's own, or ``job_memory_limits``; null: the type starts none)."""
    out = []
    settings = state.app.settings
    for t in display.all_types(state.registry, include_hidden=True):
        item = t.to_dict()
        job_type = state.registry.get(t.name)
        described = job_type.describe()
        item["time_limit_seconds"], item["memory_limit_mb"] = job_type.limits(
            settings.job_time_limits, settings.job_memory_limits
        )
        item.update(
            {
                "description": described["description"],
                "stages": described["stages"],
                "input_schema": described["input_schema"],
                "public": described["public"],
            }
        )
        out.append(item)
    return {"job_types": out}


@router.get("/workers", summary="Workers: state, heartbeats, what they run")
def workers(state: StateDep, user: UserDep) -> dict[str, Any]:
    """Each worker process seen in the last day: host, pid, started, last seen,
    concurrency, ``state`` (live, dead: no heartbeat for longer than a lease; stopped),
    the user's jobs it runs now, how many jobs it completed and failed in the last hour,
    and for a dead worker the jobs taken over from it. ``queue``: the queue controls."""
    return dashboard.workers(state, user)
