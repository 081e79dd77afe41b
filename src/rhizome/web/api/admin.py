"""``/api/admin/...`` (DESIGN §9) and the admin actions on one job: force-fail, and
cancel-then-delete. Destructive actions over many jobs need ``{"confirm": true}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from rhizome.errors import InvalidInputError
from rhizome.web.api.common import Model, admin_for, job_out
from rhizome.web.state import ADMIN_ONLY, StateDep, UserDep

router = APIRouter(tags=["admin"])


class ConfirmRequest(Model):
    confirm: bool = Field(False, description="Must be true: this action cannot be undone.")


def _confirmed(body: ConfirmRequest | None, what: str) -> None:
    if body is None or not body.confirm:
        raise InvalidInputError(
            f"{what} cannot be undone and needs confirmation.",
            'Send {"confirm": true} to go ahead.',
        )


@router.post("/jobs/{job_id}/force-fail", summary="Mark a stuck job failed")
def force_fail_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    return job_out(state, admin_for(state, user).force_fail(job_id))


@router.post("/jobs/{job_id}/cancel-and-delete", summary="Cancel, then delete a job")
def cancel_and_delete_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    job = admin_for(state, user).cancel_and_delete(job_id)
    return {"deleted": job.id}


@router.post("/admin/clear-completed", summary="Delete completed jobs", dependencies=ADMIN_ONLY)
def clear_completed(state: StateDep, user: UserDep) -> dict[str, Any]:
    return {"deleted": admin_for(state, user).clear_completed()}


@router.post("/admin/clear-failed", summary="Delete failed jobs", dependencies=ADMIN_ONLY)
def clear_failed(state: StateDep, user: UserDep) -> dict[str, Any]:
    return {"deleted": admin_for(state, user).clear_failed()}


@router.post("/admin/stop-all", summary="Force-fail every active job", dependencies=ADMIN_ONLY)
def stop_all(state: StateDep, user: UserDep, body: ConfirmRequest | None = None) -> dict[str, Any]:
    _confirmed(body, "Stopping all processing")
    return {"stopped": admin_for(state, user).stop_all()}


@router.post("/admin/clear-all", summary="Fix orphans, delete every job", dependencies=ADMIN_ONLY)
def clear_all(state: StateDep, user: UserDep, body: ConfirmRequest | None = None) -> dict[str, Any]:
    _confirmed(body, "Clearing all jobs")
    return admin_for(state, user).clear_all()


@router.post(
    "/admin/nuclear-reset",
    summary="Delete every job, checkpoint and document still processing",
    dependencies=ADMIN_ONLY,
)
def nuclear_reset(
    state: StateDep, user: UserDep, body: ConfirmRequest | None = None
) -> dict[str, Any]:
    _confirmed(body, "A nuclear reset")
    return admin_for(state, user).nuclear_reset()  # the library's hook removes its documents


@router.post("/admin/fix-orphans", summary="Release and clean up orphans", dependencies=ADMIN_ONLY)
def fix_orphans(state: StateDep, user: UserDep) -> dict[str, Any]:
    return admin_for(state, user).fix_orphans()
