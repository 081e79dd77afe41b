"""``/api/documents``: the library (with each document's latest job), uploads (checked
against the one table of accepted file types), web pages and pasted text, a document with
its chunks, connections and jobs, its markdown, and deleting it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from rhizome.errors import InvalidInputError, RhizomeError
from rhizome.library import Library
from rhizome.library.ingest import add_bytes, add_text, add_url
from rhizome.library.repo import DocumentNotFoundError
from rhizome.pipeline.filetypes import ACCEPTED_LIST
from rhizome.web.api.common import Computed, Model, Text, cached, on_the_clock
from rhizome.web.errors import NotAvailableError, PayloadTooLargeError, UnsupportedTypeError
from rhizome.web.readcache import LIBRARY_NEUTRAL_TYPES, Scope
from rhizome.web.security import RequestTooLarge
from rhizome.web.services.documents import (
    check_upload,
    delete_document,
    document_bundle,
    document_markdown,
    latest_jobs,
)
from rhizome.web.state import StateDep, UserDep, WebState, clean_text, safe_filename
from rhizome.web.views import document_view, job_summary

router = APIRouter(tags=["documents"])

MAX_FILES = 20


class UrlRequest(Model):
    url: Annotated[Text, Field(min_length=1, max_length=4000)]
    title: Annotated[Text, Field(min_length=1, max_length=500)] | None = None


class TextRequest(Model):
    text: Annotated[Text, Field(min_length=1, max_length=900_000)]
    title: Annotated[Text, Field(min_length=1, max_length=500)] | None = None


@router.get("/documents", summary="The library (newest first)", response_model=dict[str, Any])
async def list_documents(
    state: StateDep,
    user: UserDep,
    status: Literal["pending", "processing", "ready", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    def compute() -> Computed:
        docs = Library(state.store).list_documents(user, status=status, limit=limit, offset=offset)
        latest = latest_jobs(state.store, [d.id for d in docs], user)
        answer = {
            "documents": [document_view(d, latest.get(d.id)) for d in docs],
            "limit": limit,
            "offset": offset,
        }
        return answer, False, None

    key = ("documents", user, status, limit, offset)
    return await cached(state, key, Scope(user, ignore=LIBRARY_NEUTRAL_TYPES), compute)


UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": f"{ACCEPTED_LIST} files.",
                        },
                        "title": {"type": "string", "maxLength": 500},
                    },
                }
            }
        },
    }
}


def _require_processing(state: WebState) -> None:
    if "process_document" not in state.registry:
        raise NotAvailableError(
            "Document processing is not available on this server.",
            "The process_document job type is not registered; update Rhizome.",
        )


@router.post(
    "/documents",
    status_code=201,
    summary="Upload documents (several files; each becomes a processing job)",
    openapi_extra=UPLOAD_SCHEMA,
)
async def upload_documents(request: Request, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Each file is checked as ``rhizome add`` checks it (the accepted file types and the
    bytes themselves); the first one refused refuses the whole upload (415) and adds
    nothing."""
    _require_processing(state)
    limit = state.max_upload_bytes
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=20, max_part_size=64 * 1024)
    except (RhizomeError, RequestTooLarge):
        raise
    except Exception as exc:  # a malformed multipart body
        raise InvalidInputError(
            f"Could not read the upload: {exc}.",
            "Send multipart/form-data with files in fields named 'files'.",
        ) from None
    try:
        files = [f for f in form.getlist("files") if not isinstance(f, str)]
        if not files:
            raise InvalidInputError(
                "No files in the upload.", "Send one or more files in fields named 'files'."
            )
        title_field = form.get("title")
        title = None
        if isinstance(title_field, str) and title_field.strip():
            title = clean_text(title_field.strip()[:500], "title")
        payloads: list[tuple[str | None, bytes, str | None]] = []
        for f in files:
            name = safe_filename(f.filename)
            if f.size is not None and f.size > limit:
                raise PayloadTooLargeError(
                    f"{name or 'A file'} is {f.size / 1e6:.1f} MB; the limit is "
                    f"{limit / 1e6:.1f} MB.",
                    "Split the document or raise the limit.",
                )
            data = await f.read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLargeError(
                    f"{name or 'A file'} is larger than the {limit / 1e6:.1f} MB limit.",
                    "Split the document or raise the limit.",
                )
            if not data:
                raise InvalidInputError(
                    f"{name or 'The upload'} is empty.", "Choose a non-empty file."
                )
            ctype = clean_text(f.content_type, "content type") if f.content_type else None
            try:
                check_upload(name, data, ctype)
            except InvalidInputError as exc:
                prefix = f"{name}: " if name else ""
                raise UnsupportedTypeError(prefix + exc.message, exc.hint) from None
            payloads.append((name, data, ctype))
    finally:
        await form.close()

    def add_all() -> list[dict[str, Any]]:
        out = []
        for name, data, ctype in payloads:
            added = add_bytes(
                state.store,
                state.storage,
                data,
                filename=name,
                user_id=user,
                title=title if len(payloads) == 1 else None,
                content_type=ctype,
                max_bytes=limit,
            )
            out.append(
                {
                    "document": document_view(added.document, added.job),
                    "job": job_summary(state.registry, added.job, added.document.title),
                }
            )
        return out

    return {"documents": await run_in_threadpool(add_all)}


@router.post("/documents/url", status_code=201, summary="Add a web page")
def add_document_url(state: StateDep, user: UserDep, body: UrlRequest) -> dict[str, Any]:
    _require_processing(state)
    added = add_url(state.store, body.url.strip(), user_id=user, title=body.title)
    return {
        "document": document_view(added.document, added.job),
        "job": job_summary(state.registry, added.job, added.document.title),
    }


@router.post("/documents/text", status_code=201, summary="Add pasted text")
def add_document_text(state: StateDep, user: UserDep, body: TextRequest) -> dict[str, Any]:
    _require_processing(state)
    if not body.text.strip():
        raise InvalidInputError("The text is empty.", "Paste some text.")
    added = add_text(state.store, state.storage, body.text, user_id=user, title=body.title)
    return {
        "document": document_view(added.document, added.job),
        "job": job_summary(state.registry, added.job, added.document.title),
    }


@router.get(
    "/documents/{document_id}", summary="A document with chunks", response_model=dict[str, Any]
)
async def get_document(state: StateDep, user: UserDep, document_id: str) -> Response:
    def compute() -> Computed:
        bundle = document_bundle(
            state.store, state.registry, document_id, user, storage=state.storage
        )
        return bundle, on_the_clock(bundle["jobs"]), None

    key = ("document", user, document_id)
    return await cached(state, key, Scope(user, ignore=LIBRARY_NEUTRAL_TYPES), compute)


@router.get(
    "/documents/{document_id}/content",
    summary="The document's markdown",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}}},
)
def document_content(state: StateDep, user: UserDep, document_id: str) -> Response:
    doc = Library(state.store).get_document(document_id, user)
    text = document_markdown(state.storage, doc)
    if text is None:
        raise DocumentNotFoundError(
            f"Document {doc.id} has no markdown yet (status: {doc.status}).",
            "Wait for its processing job to finish.",
        )
    return Response(text, media_type="text/markdown; charset=utf-8")


@router.delete(
    "/documents/{document_id}",
    summary="Delete a document, its chunks, connections, jobs and storage",
)
def remove_document(state: StateDep, user: UserDep, document_id: str) -> dict[str, Any]:
    return delete_document(state.store, state.storage, document_id, user).to_dict()
