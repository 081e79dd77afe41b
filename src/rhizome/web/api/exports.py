"""``/api/exports``, ``/api/imports`` and ``/api/admin/storage-scan``: the library leaves
the machine as one ZIP and comes back whole.

* ``POST /api/exports`` queues an ``export_documents`` job; ``GET
  /api/exports/{job_id}/download`` streams its ZIP (authorized like every request; on S3
  storage it redirects to a presigned URL valid for 24 h).
* ``POST /api/imports/uploads`` stores a ZIP (checked: a readable export, no unsafe
  entries); ``POST /api/imports`` imports an upload, an earlier export or a document folder
  already in storage. When documents already have chunks and no strategy is given, no job
  is created: the answer is 409 with the conflict report.
* ``GET /api/admin/storage-scan`` compares storage folders with the database.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import Field

from rhizome.errors import IllegalTransitionError, InvalidInputError, RhizomeError
from rhizome.jobs.model import Job, JobStatus
from rhizome.library.portability import (
    STRATEGY_HELP,
    ImportConflictError,
    ZipSource,
    request_export,
    request_import,
    save_upload,
    scan_storage,
)
from rhizome.web.api.common import Model
from rhizome.web.errors import PayloadTooLargeError
from rhizome.web.security import RequestTooLarge
from rhizome.web.state import StateDep, UserDep, WebState, safe_filename
from rhizome.web.views import job_summary

router = APIRouter(tags=["import and export"])

DocumentId = Annotated[str, Field(min_length=1, max_length=64)]
SIGNED_TTL = timedelta(hours=24)


class ExportRequest(Model):
    document_ids: Annotated[list[DocumentId], Field(max_length=100_000)] | None = None
    """The documents to export; leave out for the whole library."""
    include_connections: bool = True
    include_highlights: bool = True
    sync_storage: bool = False
    """Also rewrite each document's chunks.json in storage from the database."""


class ImportRequest(Model):
    upload: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    """The ``key`` of a ZIP stored by ``POST /api/imports/uploads``."""
    export_job_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """Or an earlier export of this user."""
    document_id: DocumentId | None = None
    """Or a document folder already in storage (the storage scan's ``missing_from_db``)."""
    strategy: Literal["skip", "replace", "merge_smart"] | None = None
    regenerate_embeddings: bool = False
    reprocess_connections: bool = False


def _export_job(state: WebState, user: str, job_id: str) -> Job:
    job = state.store.get(job_id, user_id=user)
    if job.job_type != "export_documents":
        raise InvalidInputError(f"Job {job.id} is not an export.", "Give an export job's id.")
    return job


def _export_path(job: Job) -> str:
    path = (job.output_data or {}).get("path")
    if job.status is not JobStatus.COMPLETED or not isinstance(path, str):
        raise IllegalTransitionError(
            f"Export {job.id} has not finished (status: {job.status.value}).",
            "Wait for the export job to complete, then download it.",
        )
    return path


@router.post("/exports", status_code=201, summary="Export documents (or the library) to a ZIP")
def create_export(state: StateDep, user: UserDep, body: ExportRequest) -> dict[str, Any]:
    job = request_export(
        state.store,
        user,
        body.document_ids,
        connections=body.include_connections,
        highlights=body.include_highlights,
        sync_storage=body.sync_storage,
    )
    return {"job": job_summary(state.registry, job)}


@router.get("/exports", summary="Exports, newest first, with their download links")
def list_exports(
    state: StateDep, user: UserDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> dict[str, Any]:
    jobs = state.store.list_jobs(user_id=user, job_types=["export_documents"], limit=limit)
    return {
        "exports": [
            {"job": job_summary(state.registry, j), "output": j.output_data or None} for j in jobs
        ]
    }


@router.get(
    "/exports/{job_id}/download",
    summary="The ZIP of a finished export (streamed; on S3 a redirect to a presigned URL)",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The ZIP"},
        307: {"description": "On S3 storage: a presigned URL, valid for 24 h"},
    },
)
def download_export(state: StateDep, user: UserDep, job_id: str) -> Response:
    job = _export_job(state, user, job_id)
    key = _export_path(job)
    if not state.storage.exists(key):
        raise IllegalTransitionError(
            f"The ZIP of export {job.id} is no longer in storage.", "Export again."
        )
    signed = state.storage.signed_url(key, SIGNED_TTL)
    if signed:
        return RedirectResponse(signed, status_code=307)
    name = key.rsplit("/", 1)[-1]
    opened = state.storage.open_read(key)
    fh = opened.__enter__()
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)

    def body() -> Iterator[bytes]:
        try:
            while block := fh.read(1024 * 1024):
                yield block
        finally:
            opened.__exit__(None, None, None)

    return StreamingResponse(
        body(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(size),
        },
    )


UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A ZIP made by an export.",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/imports/uploads",
    status_code=201,
    summary="Store an export ZIP to import (checked, not imported yet)",
    openapi_extra=UPLOAD_SCHEMA,
)
async def upload_import(request: Request, state: StateDep, user: UserDep) -> dict[str, Any]:
    """The ZIP is checked (a readable export without unsafe entries) and kept for a day;
    import it with ``POST /api/imports`` and its ``key``."""
    limit = state.security.max_upload_request_bytes
    try:
        form = await request.form(max_files=1, max_fields=5, max_part_size=64 * 1024)
    except (RhizomeError, RequestTooLarge):
        raise
    except Exception as exc:  # a malformed multipart body
        raise InvalidInputError(
            f"Could not read the upload: {exc}.", "Send the ZIP in a field named 'file'."
        ) from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidInputError(
                "No file in the upload.", "Send the ZIP in a field named 'file'."
            )
        name = safe_filename(upload.filename) or "import.zip"
        with tempfile.TemporaryDirectory(prefix="rhizome-upload-") as tmp:
            path = os.path.join(tmp, "upload.zip")
            size = 0
            with open(path, "wb") as out:
                while block := await upload.read(1024 * 1024):
                    size += len(block)
                    if size > limit:
                        raise PayloadTooLargeError(
                            f"{name} is larger than the {limit / 1e6:,.0f} MB upload limit.",
                            "Import large archives with `rhizome import FILE`.",
                        )
                    out.write(block)
            if not size:
                raise InvalidInputError(f"{name} is empty.", "Choose an export ZIP.")

            def check_and_store() -> dict[str, Any]:
                with open(path, "rb") as fh:
                    source = ZipSource(fh, name)
                    try:
                        docs = [
                            {"id": e.id, "title": e.title, "chunks": e.chunk_count}
                            for e in source.manifest.documents
                        ]
                        exported_at = source.exported_at
                    finally:
                        source.close()
                key = save_upload(state.storage, user, path)
                return {
                    "key": key,
                    "name": name,
                    "size": size,
                    "exported_at": exported_at,
                    "documents": docs,
                }

            stored = await run_in_threadpool(check_and_store)
    finally:
        await form.close()
    return {"upload": stored}


@router.post(
    "/imports",
    status_code=201,
    summary="Import an uploaded ZIP, an earlier export or a storage folder",
    responses={
        409: {
            "description": "Documents already have chunks and no strategy was given: the "
            "conflict report (no job was created)"
        }
    },
)
def create_import(state: StateDep, user: UserDep, body: ImportRequest) -> Response:
    sources = [body.upload, body.export_job_id, body.document_id]
    if sum(s is not None for s in sources) != 1:
        raise InvalidInputError(
            "Name exactly one source: upload, export_job_id or document_id.",
            "Upload the ZIP first (POST /api/imports/uploads), then send its key as upload.",
        )
    zip_key: str | None = body.upload
    delete_source = body.upload is not None
    if body.export_job_id is not None:
        zip_key = _export_path(_export_job(state, user, body.export_job_id))
    try:
        job, plan = request_import(
            state.store,
            state.storage,
            user,
            zip_key=zip_key,
            document_id=body.document_id,
            strategy=body.strategy,
            regenerate_embeddings=body.regenerate_embeddings,
            reprocess_connections=body.reprocess_connections,
            delete_source=delete_source,
        )
    except ImportConflictError as exc:
        return JSONResponse(
            {
                "error": {"type": "ImportConflict", "message": exc.message, "hint": exc.hint},
                "conflict": exc.report,
            },
            status_code=409,
        )
    return JSONResponse(
        {"job": job_summary(state.registry, job), "plan": plan.to_dict()}, status_code=201
    )


@router.get("/imports/strategies", summary="The import strategies, explained")
def strategies() -> dict[str, Any]:
    return {"strategies": STRATEGY_HELP, "recommended_when_counts_match": "merge_smart"}


@router.get(
    "/admin/storage-scan",
    tags=["admin"],
    summary="Storage folders against the database: healthy, missing_from_db, "
    "missing_from_storage, out_of_sync",
)
def storage_scan(state: StateDep, user: UserDep) -> dict[str, Any]:
    return {"action": "scan-storage", "result": scan_storage(state.store, state.storage, user)}
