"""Document operations of the web layer that span the library, the jobs and storage."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from rhizome.errors import RhizomeError
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Document, Library
from rhizome.library.admin import delete_document as library_delete_document
from rhizome.storage import Storage
from rhizome.web.queries import document_jobs

log = logging.getLogger("rhizome.web.documents")

CONTENT_FILE = "content.md"


class _HasStore(Protocol):
    @property
    def store(self) -> SqlJobStore: ...


@dataclass
class DeletedDocument:
    document: Document
    deleted_jobs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"document": self.document.to_dict(), "deleted_jobs": self.deleted_jobs}


def delete_document(
    app_or_store: SqlJobStore | _HasStore,
    storage: Storage,
    document_id: str,
    user_id: str,
) -> DeletedDocument:
    """Delete a document completely (DESIGN §9): its jobs with their checkpoints and
    timelines (running ones lose their row and stop at their next write), the document
    row with its chunks and connections, and its storage folder. The work is the
    library's ``delete_document``; this reports which jobs went with it."""
    store = app_or_store if isinstance(app_or_store, SqlJobStore) else app_or_store.store
    doc = Library(store).get_document(document_id, user_id)  # 404 for another user's
    jobs = [j.id for j in document_jobs(store, doc.id, user_id)]
    deleted = library_delete_document(store, storage, doc.id, user_id)
    return DeletedDocument(deleted, jobs)


def document_markdown(storage: Storage, doc: Document) -> str | None:
    """The document's markdown (``content.md``), or None before processing wrote it."""
    key = f"{doc.storage_folder}/{CONTENT_FILE}"
    try:
        return storage.get(key).decode("utf-8", errors="replace")
    except (OSError, KeyError, RhizomeError):  # not written yet, or unreadable
        return None
