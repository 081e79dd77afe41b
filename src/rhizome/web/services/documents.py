"""Document operations of the web layer that span the library, the jobs and storage:
a document with its chunks, connections and jobs, the latest job of each document,
document titles for job lists, deleting a document, its markdown, and the upload check."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rhizome.errors import InvalidInputError, RhizomeError
from rhizome.jobs.events import Change
from rhizome.jobs.model import Job, JobFilter
from rhizome.jobs.registry import Registry
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Document, Library
from rhizome.library.admin import delete_document as library_delete_document
from rhizome.pipeline.extract import detect_type
from rhizome.storage import Storage
from rhizome.web.services.connections import document_connections
from rhizome.web.views import chunk_view, document_view, job_summary

log = logging.getLogger("rhizome.web.documents")

CONTENT_FILE = "content.md"
MAX_TITLE_SCAN = 20_000
"""At most this many documents are looked at when a job search matches document titles."""


def document_jobs(store: SqlJobStore, document_id: str, user_id: str) -> list[Job]:
    """The document's jobs, newest first."""
    f = JobFilter(user_id=user_id, entity_type="document", entity_ids=(document_id,))
    return store.search_jobs(f, limit=1000)


def latest_jobs(store: SqlJobStore, document_ids: list[str], user_id: str) -> dict[str, Job]:
    """The newest job of each document."""
    if not document_ids:
        return {}
    return store.latest_jobs("document", document_ids, user_id)


class TitleCache:
    """Document titles for job lists and live updates, cached for a few seconds."""

    def __init__(self, store: SqlJobStore, ttl: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl
        self._titles: dict[tuple[str, str], tuple[float, str | None]] = {}

    def title(self, document_id: str, user_id: str) -> str | None:
        now = time.monotonic()
        key = (document_id, user_id)
        cached = self._titles.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        try:
            title: str | None = Library(self.store).get_document(document_id, user_id).title
        except RhizomeError:
            title = None
        if len(self._titles) > 10_000:
            self._titles.clear()
        self._titles[key] = (now, title)
        return title

    def observe(self, changes: Iterable[Change] | None) -> None:
        """Called by the change feed before the answer caches: a document's job changed
        (it may have renamed it), so its title is read again (None: forget every title)."""
        if changes is None:
            self.clear()
            return
        for change in changes:
            job = change.job
            if job is not None and job.entity_type == "document" and job.entity_id:
                self._titles.pop((job.entity_id, job.user_id), None)

    def clear(self) -> None:
        self._titles.clear()

    def of_job(self, job: Job) -> str | None:
        """The title of the document a job works on (None for other jobs)."""
        if job.entity_type == "document" and job.entity_id:
            return self.title(job.entity_id, job.user_id)
        return None

    def of_jobs(self, jobs: list[Job]) -> dict[str, str]:
        """``{job id: document title}`` for the jobs that work on a document."""
        out: dict[str, str] = {}
        for job in jobs:
            title = self.of_job(job)
            if title:
                out[job.id] = title
        return out


def documents_titled(store: SqlJobStore, user_id: str, text: str) -> tuple[str, ...]:
    """Ids of the user's documents whose title contains ``text`` (case-insensitive): their
    jobs match a job search for it (:attr:`JobFilter.q_entity_ids`)."""
    needle = text.casefold()
    docs = Library(store).list_documents(user_id, limit=MAX_TITLE_SCAN)
    return tuple(d.id for d in docs if needle in d.title.casefold())


def document_bundle(
    store: SqlJobStore,
    registry: Registry,
    document_id: str,
    user_id: str,
    *,
    chunk_limit: int | None = None,
    connection_limit: int = 500,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """A document with its chunks (the first ``chunk_limit``; ``chunk_total`` says how
    many), connections (with both passages, the other documents' titles and the detection
    state; at most ``connection_limit``) and jobs, as JSON views; with ``storage``, also
    ``has_content`` (whether its markdown is written)."""
    library = Library(store)
    doc = library.get_document(document_id, user_id)
    chunks = library.list_chunks(doc.id, user_id)
    jobs = document_jobs(store, doc.id, user_id)
    shown = chunks if chunk_limit is None else chunks[:chunk_limit]
    return {
        "document": document_view(doc, jobs[0] if jobs else None),
        "chunks": [chunk_view(c) for c in shown],
        "chunk_total": len(chunks),
        # connections (best first), rejected_connections, connection_counts, detection
        **document_connections(store, doc.id, user_id, limit=connection_limit),
        "jobs": [job_summary(registry, j, doc.title) for j in jobs],
        **({} if storage is None else {"has_content": has_markdown(storage, doc)}),
    }


def document_chunks(
    store: SqlJobStore, document_id: str, user_id: str, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of the document's chunks (in order) and how many it has."""
    chunks = Library(store).list_chunks(document_id, user_id)
    return [chunk_view(c) for c in chunks[offset : offset + limit]], len(chunks)


def markdown_preview(text: str, limit: int) -> tuple[str, bool]:
    """The start of a markdown text, cut at a paragraph break before ``limit`` characters
    (so no block is cut in half), and whether it was cut."""
    if len(text) <= limit:
        return text, False
    cut = text.rfind("\n\n", 0, limit)
    return text[: cut if cut > limit // 2 else limit], True


@dataclass
class DeletedDocument:
    document: Document
    deleted_jobs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"document": self.document.to_dict(), "deleted_jobs": self.deleted_jobs}


def delete_document(
    store: SqlJobStore, storage: Storage, document_id: str, user_id: str
) -> DeletedDocument:
    """Delete a document completely (DESIGN §9): its jobs with their checkpoints and
    timelines (running ones lose their row and stop at their next write), the document
    row with its chunks and connections, and its storage folder. The work is the
    library's ``delete_document``; this reports which jobs went with it."""
    doc = Library(store).get_document(document_id, user_id)  # 404 for another user's
    jobs = [j.id for j in document_jobs(store, doc.id, user_id)]
    deleted = library_delete_document(store, storage, doc.id, user_id)
    return DeletedDocument(deleted, jobs)


def has_markdown(storage: Storage, doc: Document) -> bool:
    """Whether the document's markdown is written (without reading it)."""
    try:
        return storage.exists(f"{doc.storage_folder}/{CONTENT_FILE}")
    except (OSError, RhizomeError):
        return False


def document_markdown(storage: Storage, doc: Document) -> str | None:
    """The document's markdown (``content.md``), or None before processing wrote it."""
    key = f"{doc.storage_folder}/{CONTENT_FILE}"
    try:
        return storage.get(key).decode("utf-8", errors="replace")
    except (OSError, KeyError, RhizomeError):  # not written yet, or unreadable
        return None


def check_upload(filename: str | None, data: bytes, content_type: str | None) -> str:
    """The source type of an uploaded file, or :class:`InvalidInputError` saying why it is
    refused: the same decision (and message) as ``rhizome add`` and the extraction, from
    the one table of accepted file types (:mod:`rhizome.pipeline.filetypes`)."""
    if not data:
        raise InvalidInputError(f"{filename or 'The upload'} is empty.", "Choose a non-empty file.")
    return detect_type(data, filename, content_type)
