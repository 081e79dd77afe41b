"""``export_documents``: one document, many, or the whole library → one ZIP in storage.

Stages (✓ pause-safe): collect ✓, documents ✓ (a checkpoint per document written),
finalize. Each document is written as a *part* (a small ZIP of its files, streamed from
storage) in the job's own folder, ``jobs/{job_id}/parts/``; finalize streams the parts
into one archive, ``exports/{user}/rhizome-export-{date}-{job_id}.zip``, with the
top-level ``manifest.json`` (see :mod:`rhizome.library.portability`). Nothing is ever
held in memory whole, and the parts go with the job's checkpoints when it completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field

from rhizome.errors import InvalidInputError
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import HOUR, Stage, registry
from rhizome.library.repo import DocumentNotFoundError, Library

# The library code behind this job is imported when it runs, not when the job type is
# registered: a starting worker imports this module.

STAGES = (
    Stage("collect", "Collecting documents", 0, 3),
    Stage("documents", "Writing documents", 3, 92),
    Stage("finalize", "Writing the ZIP", 92, 100, pause_safe=False),
)
SIGNED_URL_TTL = timedelta(hours=24)
MAX_DOCUMENTS = 100_000


class ExportInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_ids: list[str] | None = Field(None, max_length=MAX_DOCUMENTS)
    """The documents to export; None: every ready document of the user."""
    include_connections: bool = True
    include_highlights: bool = True
    sync_storage: bool = False
    """Also rewrite each document's chunks.json in storage from the database (the storage
    scan's re-export of an out-of-sync document)."""


def export_key(user_id: str, job_id: str, created: datetime | None) -> str:
    """Where the finished ZIP goes: named with the date and the job id, so two exports
    never overwrite each other."""
    day = (created or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")
    return f"exports/{user_id}/rhizome-export-{day}-{job_id}.zip"


@registry.job_type(
    "export_documents",
    label="Export",
    icon="download",
    stages=STAGES,
    input_model=ExportInput,
    owned={"document_ids": "document"},  # checked by the API before it enqueues
    time_limit_seconds=2 * HOUR,  # a 1,000-document library: minutes
)
def export_documents(ctx: JobContext, data: ExportInput) -> dict[str, Any]:
    """Write documents with their files, chunks, embeddings, highlights and connections
    into one ZIP."""
    from rhizome.library.archive import join_parts
    from rhizome.library.portability import (
        ExportOptions,
        ManifestDocument,
        export_document,
        export_manifest,
        write_back,
    )

    user = ctx.job.user_id
    library = Library(ctx.store)
    scratch = f"jobs/{ctx.job.id}"
    options = ExportOptions(
        connections=data.include_connections, highlights=data.include_highlights
    )

    def collect() -> dict[str, Any]:
        if data.document_ids:
            ids = list(dict.fromkeys(library.get_document(d, user).id for d in data.document_ids))
        else:
            docs = library.list_documents(user, status="ready", limit=MAX_DOCUMENTS)
            ids = [d.id for d in reversed(docs)]  # oldest first
        if not ids:
            raise InvalidInputError(
                "There is nothing to export: the library has no ready documents.",
                "Add documents and wait for their processing to finish.",
            )
        payload = json.dumps(ids).encode()
        ctx.storage.put(f"{scratch}/documents.json", payload)
        ctx.progress(fraction=1.0, details=f"{len(ids):,} documents", force=True)
        return {"count": len(ids), "sha256": hashlib.sha256(payload).hexdigest()}

    collected = ctx.run_stage("collect", collect)
    total = int(collected["count"])

    def document_ids() -> list[str]:
        payload = ctx.storage.get(f"{scratch}/documents.json")
        if hashlib.sha256(payload).hexdigest() != collected["sha256"]:
            raise InvalidInputError(
                "The export's list of documents changed in storage.",
                "Restart the export from the beginning.",
            )
        ids: list[str] = json.loads(payload)
        return ids

    def write_documents() -> dict[str, int]:
        ids = document_ids()
        cursor = ctx.cursor("written", start={"n": 0, "bytes": 0, "missing": 0})
        state = dict(cursor.value)
        with tempfile.TemporaryDirectory(prefix="rhizome-export-") as tmp:
            part_path = os.path.join(tmp, "part.zip")
            while state["n"] < total:
                n = state["n"]
                name = f"{scratch}/parts/{n:06d}"
                try:
                    entry = export_document(
                        ctx.store, ctx.storage, user, ids[n], part_path, options
                    )
                except DocumentNotFoundError:  # deleted since the export started
                    ctx.storage.put(f"{name}.json", b'{"missing": true}')
                    state = {**state, "n": n + 1, "missing": state["missing"] + 1}
                else:
                    ctx.storage.put_file(f"{name}.zip", part_path)
                    ctx.storage.put(f"{name}.json", entry.model_dump_json().encode())
                    if data.sync_storage:
                        write_back(ctx.store, ctx.storage, user, entry.id)
                    size = sum(f.size for f in entry.files)
                    state = {**state, "n": n + 1, "bytes": state["bytes"] + size}
                    ctx.progress(
                        fraction=(n + 1) / total,
                        details=f"Document {n + 1:,} of {total:,} · {entry.title or entry.id}",
                        documents=n + 1,
                        total=total,
                    )
                cursor.save(state)  # after the part is in storage
        return {k: int(v) for k, v in state.items()}

    written = ctx.run_stage("documents", write_documents)

    def finalize() -> dict[str, Any]:
        entries: list[ManifestDocument] = []
        for n in range(total):
            raw = json.loads(ctx.storage.get(f"{scratch}/parts/{n:06d}.json"))
            if not raw.get("missing"):
                entries.append(ManifestDocument.model_validate(raw))
        if not entries:
            raise InvalidInputError(
                "Every document of the export was deleted while it ran.", "Export again."
            )
        key = export_key(user, ctx.job.id, ctx.job.created_at)
        manifest = export_manifest(entries, job_id=ctx.job.id, options=options)
        with tempfile.TemporaryDirectory(prefix="rhizome-export-") as tmp:
            out_path = os.path.join(tmp, "export.zip")

            def parts() -> Iterator[BinaryIO]:
                for n in range(total):
                    name = f"{scratch}/parts/{n:06d}.zip"
                    if ctx.storage.exists(name):
                        with ctx.storage.open_read(name) as part:
                            yield part  # read to its end before the next one opens
                    if n % 10 == 0 or n == total - 1:
                        ctx.progress(
                            fraction=(n + 1) / total,
                            details=f"Joining document {n + 1:,} of {total:,}",
                        )

            with open(out_path, "wb") as out:
                join_parts(parts(), out, [("manifest.json", manifest)])
            digest = hashlib.sha256()
            with open(out_path, "rb") as fh:
                while block := fh.read(1024 * 1024):
                    digest.update(block)
            size = os.path.getsize(out_path)
            ctx.storage.put_file(key, out_path)
        signed = ctx.storage.signed_url(key, SIGNED_URL_TTL)
        return {
            "path": key,
            "size": size,
            "sha256": digest.hexdigest(),
            "documents": len(entries),
            "missing_documents": int(written.get("missing", 0)),
            "chunks": sum(e.chunk_count for e in entries),
            "highlights": sum(e.highlight_count for e in entries),
            "connections": sum(e.connection_count for e in entries),
            "files_bytes": int(written.get("bytes", 0)),
            "download_url": f"/api/exports/{ctx.job.id}/download",
            "signed_url": signed,
            "signed_url_expires_at": (datetime.now(UTC) + SIGNED_URL_TTL).isoformat()
            if signed
            else None,
        }

    result: dict[str, Any] = ctx.run_stage("finalize", finalize)
    return result
