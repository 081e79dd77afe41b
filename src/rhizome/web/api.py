"""The JSON HTTP API (``/api/...``): jobs, queue, admin actions, documents, job types,
workers. Every call is scoped to the requesting user; errors are
``{"error": {"type", "message", "hint"}}`` with a 4xx status (see ``errors.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rhizome.errors import InvalidInputError, RhizomeError
from rhizome.jobs.admin import Admin, Selection
from rhizome.jobs.client import enqueue
from rhizome.jobs.model import Job
from rhizome.library import Library
from rhizome.library.ingest import add_bytes, add_text, add_url, guess_type
from rhizome.web import display, queries
from rhizome.web.documents import delete_document, document_markdown
from rhizome.web.errors import NotAvailableError, PayloadTooLargeError, UnsupportedTypeError
from rhizome.web.queries import JobFilter
from rhizome.web.security import RequestTooLarge
from rhizome.web.state import (
    StateDep,
    UserDep,
    WebState,
    clean_json,
    clean_text,
    safe_filename,
)
from rhizome.web.views import (
    chunk_view,
    connection_view,
    document_view,
    job_detail,
    job_summary,
    worker_view,
)

router = APIRouter(prefix="/api")

MAX_IDS = 10_000
MAX_FILES = 20


# --- request models -----------------------------------------------------------------------


def _text(value: str) -> str:
    try:
        return clean_text(value)
    except InvalidInputError as exc:
        raise ValueError(exc.message) from None


def _json_obj(value: dict[str, Any]) -> dict[str, Any]:
    try:
        clean_json(value)
    except InvalidInputError as exc:
        raise ValueError(exc.message) from None
    return value


def _run_at(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not (2000 <= value.year <= 9000):
        raise ValueError("run_at must be between the years 2000 and 9000")
    return value.astimezone(UTC)


Text = Annotated[str, AfterValidator(_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_obj)]
JobTypeName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")]
StatusName = display.StatusFilter


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnqueueRequest(_Model):
    type: JobTypeName = Field(description="A registered job type (GET /api/job-types).")
    input: JsonObject = Field(default_factory=dict, description="The job type's input.")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first.")
    dedupe_key: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    max_retries: int | None = Field(None, ge=0, le=100)
    run_at: Annotated[datetime | None, AfterValidator(_run_at)] = Field(
        None, description="Not before this time (UTC if no offset)."
    )
    count: int = Field(1, ge=1, le=1000, description="How many identical jobs to enqueue.")


class RestartRequest(_Model):
    restart: bool = Field(
        False, description="Start from the beginning (drops the checkpoint) instead of resuming."
    )


class PauseRequest(_Model):
    reason: Annotated[Text, Field(min_length=1, max_length=500)] = "paused by user"


class FilterModel(_Model):
    type: list[JobTypeName] = Field(default_factory=list, max_length=50)
    status: list[StatusName] = Field(default_factory=list, max_length=20)
    stage: Annotated[Text, Field(min_length=1, max_length=100)] | None = None
    q: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    include_hidden: bool = False


class BulkRequest(_Model):
    action: Literal["pause", "resume", "cancel", "retry", "delete", "force_fail"]
    ids: list[UUID] | None = Field(None, max_length=MAX_IDS, description="Explicit jobs.")
    filter: FilterModel | None = Field(None, description="Or every job matching a filter.")
    all: bool = Field(False, description="Or every job of the user (needs no ids/filter).")
    restart: bool = Field(False, description="For resume/retry: from the beginning.")


class QueueRequest(_Model):
    type: JobTypeName | None = Field(None, description="One job type; omit for the whole queue.")
    reason: Annotated[Text, Field(min_length=1, max_length=500)] = "queue paused"
    pause_running: bool = Field(
        False, description="Also ask running jobs to pause at their next safe point."
    )


class QueueResumeRequest(_Model):
    type: JobTypeName | None = None


class ConfirmRequest(_Model):
    confirm: bool = Field(False, description="Must be true: this action cannot be undone.")


class UrlRequest(_Model):
    url: Annotated[Text, Field(min_length=1, max_length=4000)]
    title: Annotated[Text, Field(min_length=1, max_length=500)] | None = None


class TextRequest(_Model):
    text: Annotated[Text, Field(min_length=1, max_length=900_000)]
    title: Annotated[Text, Field(min_length=1, max_length=500)] | None = None


# --- helpers ----------------------------------------------------------------------------------


def _split(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def build_filter(
    state: WebState,
    *,
    types: list[str] | None = None,
    statuses: list[str] | None = None,
    stage: str | None = None,
    q: str | None = None,
    include_hidden: bool = False,
) -> JobFilter:
    """Validate filter values (unknown type/status → 422 with the valid ones)."""
    types = _split(types or [])
    statuses = _split(statuses or [])
    known = state.known_types()
    bad = [t for t in types if t not in known]
    if bad:
        raise InvalidInputError(
            f"Unknown job type {bad[0]!r}.", "Use one of: " + ", ".join(sorted(known)) + "."
        )
    bad = [s for s in statuses if s not in display.STATUS_FILTERS]
    if bad:
        raise InvalidInputError(
            f"Unknown status {bad[0]!r}.", "Use one of: " + ", ".join(display.STATUS_FILTERS) + "."
        )
    if stage is not None:
        stage = clean_text(stage, "stage").strip() or None
    if q is not None:
        q = clean_text(q, "search text").strip() or None
    return JobFilter(
        types=tuple(dict.fromkeys(types)),
        statuses=tuple(dict.fromkeys(statuses)),
        stage=stage,
        q=q,
        exclude_types=() if include_hidden else state.hidden_types(),
    )


def _admin(state: WebState, user: str) -> Admin:
    return Admin(state.store, state.storage, user)


def _job_out(state: WebState, job: Job) -> dict[str, Any]:
    return {"job": job_summary(state.registry, job)}


def _title_for(state: WebState, job: Job) -> str | None:
    if job.entity_type == "document" and job.entity_id:
        return state.broadcaster.document_title(job.entity_id, job.user_id)
    return None


# --- jobs -------------------------------------------------------------------------------------

FilterQuery = Annotated[
    list[str],
    Query(
        max_length=50,
        description="Repeat or comma-separate values; any of them matches.",
    ),
]


@router.get("/jobs", tags=["jobs"], summary="List and filter jobs (newest first)")
def list_jobs(
    state: StateDep,
    user: UserDep,
    type: FilterQuery = [],  # noqa: B006  (FastAPI copies defaults)
    status: FilterQuery = [],  # noqa: B006
    stage: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text search.")] = None,
    include_hidden: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    f = build_filter(
        state, types=type, statuses=status, stage=stage, q=q, include_hidden=include_hidden
    )
    page = queries.search_jobs(state.store, f, user_id=user, limit=limit, offset=offset)
    counts = queries.facets(state.store, f, user_id=user)
    return {
        "jobs": [job_summary(state.registry, j, page.document_titles.get(j.id)) for j in page.jobs],
        "total": counts.total,
        "limit": limit,
        "offset": offset,
        "counts": counts.to_dict(),
    }


@router.post("/jobs", tags=["jobs"], status_code=201, summary="Enqueue jobs")
def create_jobs(state: StateDep, user: UserDep, body: EnqueueRequest) -> dict[str, Any]:
    jobs = enqueue(
        state.store,
        body.type,
        body.input,
        count=body.count,
        priority=body.priority,
        user_id=user,
        dedupe_key=body.dedupe_key,
        run_at=body.run_at,
        max_retries=body.max_retries,
        types=state.registry,
    )
    return {"jobs": [job_summary(state.registry, j) for j in jobs]}


@router.post("/jobs/bulk", tags=["jobs"], summary="Pause/resume/cancel/retry/delete many jobs")
def bulk(state: StateDep, user: UserDep, body: BulkRequest) -> dict[str, Any]:
    if body.ids:
        selection = Selection(ids=[str(i) for i in body.ids])
    elif body.filter is not None:
        f = build_filter(
            state,
            types=list(body.filter.type),
            statuses=list(body.filter.status),
            stage=body.filter.stage,
            q=body.filter.q,
            include_hidden=body.filter.include_hidden,
        )
        if not (f.types or f.statuses or f.stage or f.q):
            raise InvalidInputError(
                "An empty filter selects every job.", 'Pass "all": true to mean that.'
            )
        ids = queries.job_ids(state.store, f, user_id=user, limit=100_000)
        if not ids:
            return {"action": body.action, "done": [], "skipped": {}, "count": 0}
        selection = Selection(ids=ids)
    elif body.all:
        selection = Selection(everything=True)
    else:
        raise InvalidInputError("No jobs selected.", 'Pass ids, a filter, or "all": true.')
    result = _admin(state, user).bulk(body.action, selection, restart=body.restart)
    return result.to_dict()


@router.get("/jobs/{job_id}", tags=["jobs"], summary="One job with stages, timeline, worker")
def get_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    job = state.store.get(job_id, user)
    worker = None
    if job.worker_id:
        worker = next((w for w in state.store.list_workers() if w.id == job.worker_id), None)
    return {
        "job": job_detail(
            state.registry,
            job,
            document_title=_title_for(state, job),
            events=state.store.events(job.id),
            worker=worker,
        )
    }


@router.get("/jobs/{job_id}/events", tags=["jobs"], summary="A job's timeline")
def job_events(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    job = state.store.get(job_id, user)
    return {"events": [e.to_dict() for e in state.store.events(job.id)]}


@router.post("/jobs/{job_id}/pause", tags=["jobs"], summary="Pause (at the next safe point)")
def pause_job(
    state: StateDep, user: UserDep, job_id: str, body: PauseRequest | None = None
) -> dict[str, Any]:
    reason = body.reason if body else "paused by user"
    return _job_out(state, _admin(state, user).pause(job_id, reason))


@router.post("/jobs/{job_id}/resume", tags=["jobs"], summary="Resume a paused job")
def resume_job(
    state: StateDep, user: UserDep, job_id: str, body: RestartRequest | None = None
) -> dict[str, Any]:
    restart = body.restart if body else False
    return _job_out(state, _admin(state, user).resume(job_id, restart=restart))


@router.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a job")
def cancel_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    return _job_out(state, _admin(state, user).cancel(job_id))


@router.post("/jobs/{job_id}/retry", tags=["jobs"], summary="Retry a failed or cancelled job")
def retry_job(
    state: StateDep, user: UserDep, job_id: str, body: RestartRequest | None = None
) -> dict[str, Any]:
    restart = body.restart if body else False
    return _job_out(state, _admin(state, user).retry(job_id, restart=restart))


@router.post("/jobs/{job_id}/force-fail", tags=["admin"], summary="Mark a stuck job failed")
def force_fail_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    return _job_out(state, _admin(state, user).force_fail(job_id))


@router.post(
    "/jobs/{job_id}/cancel-and-delete", tags=["admin"], summary="Cancel, then delete a job"
)
def cancel_and_delete_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    job = _admin(state, user).cancel_and_delete(job_id)
    return {"deleted": job.id}


@router.delete("/jobs/{job_id}", tags=["jobs"], summary="Delete a job and its checkpoints")
def delete_job(state: StateDep, user: UserDep, job_id: str) -> dict[str, Any]:
    job = _admin(state, user).delete(job_id)
    return {"deleted": job.id}


# --- queue and job types ------------------------------------------------------------------------


@router.get("/queue", tags=["queue"], summary="Queue and job-type pause state")
def queue_state(state: StateDep, user: UserDep) -> dict[str, Any]:
    controls = state.store.queue_controls()
    return {
        "paused": bool(controls.get("*", {}).get("paused")),
        "controls": controls,
    }


@router.post("/queue/pause", tags=["queue"], summary="Stop claiming (all jobs, or one type)")
def pause_queue(state: StateDep, user: UserDep, body: QueueRequest | None = None) -> dict[str, Any]:
    body = body or QueueRequest()
    if body.type is not None and body.type not in state.known_types():
        raise InvalidInputError(f"Unknown job type {body.type!r}.")
    result = _admin(state, user).pause_queue(
        body.type, reason=body.reason, pause_running=body.pause_running
    )
    return {"queue": queue_state(state, user), "paused_jobs": result.to_dict()}


@router.post("/queue/resume", tags=["queue"], summary="Claim again (all, or one type)")
def resume_queue(
    state: StateDep, user: UserDep, body: QueueResumeRequest | None = None
) -> dict[str, Any]:
    job_type = body.type if body else None
    if job_type is not None and job_type not in state.known_types():
        raise InvalidInputError(f"Unknown job type {job_type!r}.")
    _admin(state, user).resume_queue(job_type)
    return {"queue": queue_state(state, user)}


@router.get("/job-types", tags=["queue"], summary="Job types with labels, icons and stages")
def job_types(state: StateDep) -> dict[str, Any]:
    out = []
    for t in display.all_types(state.registry, include_hidden=True):
        item = t.to_dict()
        if t.registered:
            described = state.registry.get(t.name).describe()
            item.update(
                {
                    "description": described["description"],
                    "stages": described["stages"],
                    "input_schema": described["input_schema"],
                }
            )
        out.append(item)
    return {"job_types": out}


@router.get("/workers", tags=["queue"], summary="Registered workers and their heartbeats")
def workers(state: StateDep) -> dict[str, Any]:
    return {"workers": [worker_view(w) for w in state.store.list_workers()]}


# --- admin actions (DESIGN §9) ------------------------------------------------------------------


def _confirmed(body: ConfirmRequest | None, what: str) -> None:
    if body is None or not body.confirm:
        raise InvalidInputError(
            f"{what} cannot be undone and needs confirmation.",
            'Send {"confirm": true} to go ahead.',
        )


@router.post("/admin/clear-completed", tags=["admin"], summary="Delete completed jobs")
def clear_completed(state: StateDep, user: UserDep) -> dict[str, Any]:
    return {"deleted": _admin(state, user).clear_completed()}


@router.post("/admin/clear-failed", tags=["admin"], summary="Delete failed jobs")
def clear_failed(state: StateDep, user: UserDep) -> dict[str, Any]:
    return {"deleted": _admin(state, user).clear_failed()}


@router.post("/admin/stop-all", tags=["admin"], summary="Force-fail every active job")
def stop_all(state: StateDep, user: UserDep, body: ConfirmRequest | None = None) -> dict[str, Any]:
    _confirmed(body, "Stopping all processing")
    return {"stopped": _admin(state, user).stop_all()}


@router.post("/admin/clear-all", tags=["admin"], summary="Fix orphans, delete every job")
def clear_all(state: StateDep, user: UserDep, body: ConfirmRequest | None = None) -> dict[str, Any]:
    _confirmed(body, "Clearing all jobs")
    return _admin(state, user).clear_all()


@router.post(
    "/admin/nuclear-reset",
    tags=["admin"],
    summary="Delete every job, checkpoint and document still processing",
)
def nuclear_reset(
    state: StateDep, user: UserDep, body: ConfirmRequest | None = None
) -> dict[str, Any]:
    _confirmed(body, "A nuclear reset")
    return _admin(state, user).nuclear_reset()  # the library's hook removes its documents


@router.post("/admin/fix-orphans", tags=["admin"], summary="Release and clean up orphans")
def fix_orphans(state: StateDep, user: UserDep) -> dict[str, Any]:
    return _admin(state, user).fix_orphans()


# --- documents -----------------------------------------------------------------------------------


@router.get("/documents", tags=["documents"], summary="The library (newest first)")
def list_documents(
    state: StateDep,
    user: UserDep,
    status: Literal["pending", "processing", "ready", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    docs = Library(state.store).list_documents(user, status=status, limit=limit, offset=offset)
    latest = latest_jobs(state, [d.id for d in docs], user)
    return {
        "documents": [document_view(d, latest.get(d.id)) for d in docs],
        "limit": limit,
        "offset": offset,
    }


def latest_jobs(state: WebState, doc_ids: list[str], user: str) -> dict[str, Job]:
    if not doc_ids:
        return {}
    page = queries.search_jobs(
        state.store, JobFilter(entity_ids=tuple(doc_ids)), user_id=user, limit=5000
    )
    latest: dict[str, Job] = {}
    for job in page.jobs:  # newest first
        if job.entity_id and job.entity_id not in latest:
            latest[job.entity_id] = job
    return latest


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
                            "description": "PDF, EPUB, HTML, Markdown or text files.",
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


def _sniff_ok(filename: str | None, data: bytes) -> bool:
    if guess_type(filename) != "unknown":
        return True
    head = data[:65536]
    if head.startswith((b"%PDF", b"PK\x03\x04")):
        return True
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            head[:-4].decode("utf-8")
            return len(head) == 65536
        except UnicodeDecodeError:
            return False


@router.post(
    "/documents",
    tags=["documents"],
    status_code=201,
    summary="Upload documents (several files; each becomes a processing job)",
    openapi_extra=UPLOAD_SCHEMA,
)
async def upload_documents(request: Request, state: StateDep, user: UserDep) -> dict[str, Any]:
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
            if not _sniff_ok(name, data):
                raise UnsupportedTypeError(
                    f"{name or 'The file'} is not a PDF, EPUB, HTML, Markdown or text file.",
                    "Upload one of the supported formats.",
                )
            ctype = f.content_type
            payloads.append((name, data, clean_text(ctype, "content type") if ctype else None))
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


@router.post("/documents/url", tags=["documents"], status_code=201, summary="Add a web page")
def add_document_url(state: StateDep, user: UserDep, body: UrlRequest) -> dict[str, Any]:
    _require_processing(state)
    added = add_url(state.store, body.url.strip(), user_id=user, title=body.title)
    return {
        "document": document_view(added.document, added.job),
        "job": job_summary(state.registry, added.job, added.document.title),
    }


@router.post("/documents/text", tags=["documents"], status_code=201, summary="Add pasted text")
def add_document_text(state: StateDep, user: UserDep, body: TextRequest) -> dict[str, Any]:
    _require_processing(state)
    if not body.text.strip():
        raise InvalidInputError("The text is empty.", "Paste some text.")
    added = add_text(state.store, state.storage, body.text, user_id=user, title=body.title)
    return {
        "document": document_view(added.document, added.job),
        "job": job_summary(state.registry, added.job, added.document.title),
    }


def document_bundle(state: WebState, document_id: str, user: str) -> dict[str, Any]:
    library = Library(state.store)
    doc = library.get_document(document_id, user)
    chunks = library.list_chunks(doc.id, user)
    connections = library.list_connections(doc.id, user)
    titles: dict[str, str] = {doc.id: doc.title}
    for c in connections:
        for other in (c.source_document_id, c.target_document_id):
            if other not in titles:
                try:
                    titles[other] = library.get_document(other, user).title
                except RhizomeError:
                    titles[other] = "(deleted document)"
    index = {c.id: c.index for c in chunks}
    jobs = queries.document_jobs(state.store, doc.id, user)
    return {
        "document": document_view(doc, jobs[0] if jobs else None),
        "chunks": [chunk_view(c) for c in chunks],
        "connections": sorted(
            (connection_view(c, doc.id, titles, index) for c in connections),
            key=lambda c: -float(c["combined_score"]),
        ),
        "jobs": [job_summary(state.registry, j, doc.title) for j in jobs],
    }


@router.get("/documents/{document_id}", tags=["documents"], summary="A document with chunks")
def get_document(state: StateDep, user: UserDep, document_id: str) -> dict[str, Any]:
    bundle = document_bundle(state, document_id, user)
    doc = Library(state.store).get_document(document_id, user)
    bundle["has_content"] = document_markdown(state.storage, doc) is not None
    return bundle


@router.get(
    "/documents/{document_id}/content",
    tags=["documents"],
    summary="The document's markdown",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}}},
)
def document_content(state: StateDep, user: UserDep, document_id: str) -> Response:
    doc = Library(state.store).get_document(document_id, user)
    text = document_markdown(state.storage, doc)
    if text is None:
        from rhizome.library.repo import DocumentNotFoundError

        raise DocumentNotFoundError(
            f"Document {doc.id} has no markdown yet (status: {doc.status}).",
            "Wait for its processing job to finish.",
        )
    return Response(text, media_type="text/markdown; charset=utf-8")


@router.delete(
    "/documents/{document_id}",
    tags=["documents"],
    summary="Delete a document, its chunks, connections, jobs and storage",
)
def remove_document(state: StateDep, user: UserDep, document_id: str) -> dict[str, Any]:
    return delete_document(state.store, state.storage, document_id, user).to_dict()
