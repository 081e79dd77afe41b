"""Adding sources to the library: a document row, the source in storage, and a
``process_document`` job. Used by the CLI (`rhizome add`) and the HTTP API (upload).

A file is checked before anything is written, by the same function the extraction uses
(:func:`rhizome.pipeline.extract.detect_type`, over the one table of accepted file types
in :mod:`rhizome.pipeline.filetypes`): an image, a spreadsheet or binary junk is refused
here with the message the web upload gives, not accepted and failed later."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from urllib.parse import urlparse

from rhizome.errors import InvalidInputError
from rhizome.jobs.client import enqueue
from rhizome.jobs.model import Job
from rhizome.jobs.registry import registry
from rhizome.jobs.store import SqlJobStore
from rhizome.library.model import Document
from rhizome.library.repo import Library
from rhizome.pipeline.extract import detect_type
from rhizome.pipeline.filetypes import stored_extension
from rhizome.storage import Storage

MAX_UPLOAD_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Added:
    document: Document
    job: Job


def add_bytes(
    store: SqlJobStore,
    storage: Storage,
    data: bytes,
    *,
    filename: str | None,
    user_id: str = "local",
    title: str | None = None,
    content_type: str | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> Added:
    if not data:
        raise InvalidInputError(f"{filename or 'The upload'} is empty.", "Choose a non-empty file.")
    if len(data) > max_bytes:
        raise InvalidInputError(
            f"{filename or 'The upload'} is {len(data) / 1e6:.1f} MB; the limit is "
            f"{max_bytes / 1e6:.0f} MB.",
            "Split the document or raise the limit.",
        )
    registry.get("process_document")  # fail before anything is written
    source_type = detect_type(data, filename, content_type)  # refuses what cannot be read
    ext = stored_extension(source_type, filename)
    library = Library(store)
    doc = library.create_document(
        user_id=user_id,
        title=title or (PurePath(filename).stem if filename else "Untitled"),
        source_type=source_type,
        metadata={
            "filename": filename,
            "content_type": content_type,
            "size": len(data),
            "title_given": title is not None,
        },
    )
    key = f"{doc.storage_folder}/source{ext}"
    storage.put(key, data)
    doc = library.update_document(doc.id, user_id, metadata={"source_key": key})
    job = _enqueue(
        store, doc, {"source_key": key, "filename": filename, "content_type": content_type}
    )
    return Added(doc, job)


def add_url(
    store: SqlJobStore, url: str, *, user_id: str = "local", title: str | None = None
) -> Added:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInputError(
            f"{url!r} is not a web address.", "Use a full http:// or https:// URL."
        )
    registry.get("process_document")
    library = Library(store)
    doc = library.create_document(
        user_id=user_id,
        title=title or url,
        source_type="html",
        source_url=url,
        metadata={"title_given": title is not None},
    )
    return Added(doc, _enqueue(store, doc, {"url": url}))


def add_text(
    store: SqlJobStore,
    storage: Storage,
    text: str,
    *,
    user_id: str = "local",
    title: str | None = None,
) -> Added:
    """Pasted text."""
    added = add_bytes(
        store,
        storage,
        text.encode("utf-8"),
        filename="pasted.txt",
        user_id=user_id,
        title=title or text_title(text),
        content_type="text/plain",
    )
    return added


_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`|~~)(.+?)\1")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def text_title(text: str, limit: int = 80) -> str:
    """A title for pasted text: its first line with content, without markdown markup
    (heading marks, quote and list markers, emphasis, links), cut at a word boundary."""
    for line in text.splitlines():
        plain = _LINK.sub(r"\1", _MARKUP.sub("", line))
        plain = _EMPHASIS.sub(r"\2", plain).strip(" #*_`>-=|\t")
        if plain and any(ch.isalnum() for ch in plain):
            if len(plain) <= limit:
                return plain
            cut = plain[:limit].rsplit(" ", 1)[0] or plain[:limit]
            return cut.rstrip(" ,;:.") + "…"
    return "Pasted text"


def _enqueue(store: SqlJobStore, doc: Document, source: dict[str, object]) -> Job:
    [job] = enqueue(
        store,
        "process_document",
        {"document_id": doc.id, **{k: v for k, v in source.items() if v is not None}},
        user_id=doc.user_id,
        entity_type="document",
        entity_id=doc.id,
        dedupe_key=f"process_document:{doc.id}",
    )
    return job
