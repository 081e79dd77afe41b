"""The library's admin actions, and its parts of the job admin's *nuclear reset* and
*fix orphans* (:data:`ADMIN_HOOKS`, which :class:`rhizome.app.App` hands to every
:class:`~rhizome.jobs.admin.Admin` it builds)."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from rhizome.errors import RhizomeError
from rhizome.jobs.admin import Admin, AdminHooks
from rhizome.jobs.model import Job, JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.library.model import Document
from rhizome.library.repo import Library
from rhizome.storage import Storage

ACTIVE = [JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.PAUSED, JobStatus.FAILED]


def delete_document(
    store: SqlJobStore,
    storage: Storage,
    document_id: str,
    user_id: str,
    *,
    wait_seconds: float = 15.0,
) -> Document:
    """Delete a document with its chunks, connections, stored files, and its jobs.

    Running jobs of the document are asked to cancel first and given up to
    ``wait_seconds`` to stop at their next safe point or progress write, so none of them
    writes into the folder after it is gone. (If one does not stop in time it loses its
    job row and stops at its next write; fix-orphans cleans what it may leave.)"""
    library = Library(store)
    doc = library.get_document(document_id, user_id)
    admin = Admin(store, storage, user_id=user_id)

    def of_document() -> list[Job]:
        return store.list_jobs(
            user_id=user_id, entity_type="document", entity_id=doc.id, limit=100000
        )

    now = datetime.now(UTC)
    running = [  # with a live lease: a worker is there to honour the cancel
        j.id
        for j in of_document()
        if j.status is JobStatus.PROCESSING and j.lease_expires_at and j.lease_expires_at > now
    ]
    for job_id in running:
        with contextlib.suppress(RhizomeError):
            admin.cancel(job_id)
    deadline = time.monotonic() + wait_seconds
    while running and time.monotonic() < deadline:
        time.sleep(0.1)
        running = [
            j.id
            for j in store.list_jobs(ids=running, limit=len(running))
            if j.status is JobStatus.PROCESSING
        ]
    for job in of_document():
        with contextlib.suppress(RhizomeError):
            admin.delete(job.id, reason=f"document {doc.id} deleted")
    library.delete_document(doc.id, user_id)
    storage.delete_prefix(doc.storage_folder)
    return doc


def _reset_documents(admin: Admin) -> dict[str, Any]:
    """Nuclear reset: documents that were still being processed go, with their files."""
    library = Library(admin.store)
    removed = 0
    for doc in library.unfinished_documents(admin.user_id):
        library.delete_document(doc.id, doc.user_id)
        admin.storage.delete_prefix(doc.storage_folder)
        removed += 1
    return {"deleted_processing_documents": removed}


def _fix_stuck_documents(admin: Admin) -> dict[str, Any]:
    """Documents left pending/processing with no job that will finish them → failed."""
    library = Library(admin.store)
    fixed = 0
    for doc in library.stuck_documents(admin.user_id):
        library.update_document(
            doc.id,
            doc.user_id,
            status="failed",
            error_message="Processing stopped without finishing. Add the document again.",
        )
        fixed += 1
    return {"failed_orphaned_documents": fixed}


ADMIN_HOOKS = AdminHooks(reset=(_reset_documents,), orphans=(_fix_stuck_documents,))
"""The library's parts of nuclear reset and fix orphans."""
