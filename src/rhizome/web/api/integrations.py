"""``/api/integrations``: the Obsidian vault (settings, export, two-way sync, conflicts),
Readwise (upload an export or import through the export API, per-highlight results) and
the review queue of suggested highlight passages. Every id a request names is checked
against its user here, and again by the job handler."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from rhizome.errors import InvalidInputError, RhizomeError
from rhizome.library.integrations import (
    acknowledge_remap,
    conflict_versions,
    obsidian_overview,
    remapped_connections,
    request_obsidian_export,
    request_obsidian_sync,
    request_readwise_api,
    request_readwise_file,
)
from rhizome.library.readwise import MAX_FILE_BYTES, ReadwiseRepo
from rhizome.library.review import Review
from rhizome.library.vault import VaultRepo
from rhizome.web.api.common import Model, Text
from rhizome.web.errors import PayloadTooLargeError
from rhizome.web.security import RequestTooLarge
from rhizome.web.state import StateDep, UserDep, safe_filename
from rhizome.web.views import job_summary

router = APIRouter(prefix="/integrations", tags=["integrations"])

DocumentId = Annotated[str, Field(min_length=1, max_length=64)]
HighlightId = Annotated[str, Field(min_length=1, max_length=64)]


class VaultSettingsRequest(Model):
    vault_path: Annotated[Text, Field(min_length=1, max_length=1000)]
    """The vault folder (absolute path on the machine whose worker runs the vault jobs)."""
    subfolder: Annotated[Text, Field(max_length=300)] | None = None
    """Inside the vault; default ``Rhizome``."""
    vault_name: Annotated[Text, Field(max_length=200)] | None = None
    """The vault's name in Obsidian (for ``obsidian://`` links); default: its folder's."""
    export_highlights: bool = True
    export_connections: bool = True
    check: bool = True
    """Refuse a vault folder that does not exist on this machine."""


class ExportRequest(Model):
    document_ids: Annotated[list[DocumentId], Field(max_length=100_000)] | None = None
    """The documents to export; leave out for every ready one."""


class Resolution(Model):
    document_id: DocumentId
    keep: Literal["vault", "library"]


class SyncRequest(Model):
    document_ids: Annotated[list[DocumentId], Field(max_length=100_000)] | None = None
    resolve: Annotated[list[Resolution], Field(max_length=10_000)] = []


class ReadwiseApiRequest(Model):
    token: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """Stored for later imports (never shown again); leave out to use the stored one."""
    full: bool = False
    """Everything, not only what changed since the last import."""


class TokenRequest(Model):
    token: Annotated[str, Field(min_length=1, max_length=200)]


class ReviewRequest(Model):
    accept: Annotated[list[HighlightId], Field(max_length=10_000)] = []
    reject: Annotated[list[HighlightId], Field(max_length=10_000)] = []


def _jobs(state: Any, user: str, job_type: str, limit: int = 5) -> list[dict[str, Any]]:
    jobs = state.store.list_jobs(user_id=user, job_types=[job_type], limit=limit)
    return [{**job_summary(state.registry, j), "output": j.output_data or None} for j in jobs]


# --- Obsidian -----------------------------------------------------------------------------------


@router.get("/obsidian", summary="Vault settings, notes by sync status, conflicts, last jobs")
def obsidian(state: StateDep, user: UserDep) -> dict[str, Any]:
    return {
        **obsidian_overview(state.store, user),
        "exports": _jobs(state, user, "obsidian_export"),
        "syncs": _jobs(state, user, "obsidian_sync"),
    }


@router.put("/obsidian/settings", summary="Set the vault folder, sub-folder and what to export")
def put_settings(state: StateDep, user: UserDep, body: VaultSettingsRequest) -> dict[str, Any]:
    saved = VaultRepo(state.store).save_settings(
        user,
        vault_path=body.vault_path,
        subfolder=body.subfolder,
        vault_name=body.vault_name,
        export_highlights=body.export_highlights,
        export_connections=body.export_connections,
        check=body.check,
    )
    return {"settings": saved.to_dict()}


@router.post("/obsidian/export", status_code=201, summary="Export documents to the vault")
def obsidian_export(state: StateDep, user: UserDep, body: ExportRequest) -> dict[str, Any]:
    job = request_obsidian_export(state.store, user, body.document_ids)
    return {"job": job_summary(state.registry, job)}


@router.post("/obsidian/sync", status_code=201, summary="Sync the vault (and resolve conflicts)")
def obsidian_sync(state: StateDep, user: UserDep, body: SyncRequest) -> dict[str, Any]:
    job = request_obsidian_sync(
        state.store,
        user,
        document_ids=body.document_ids,
        resolve=[(r.document_id, r.keep) for r in body.resolve],
    )
    return {"job": job_summary(state.registry, job)}


@router.get("/obsidian/notes", summary="The notes the integration knows, with their status")
def obsidian_notes(
    state: StateDep,
    user: UserDep,
    status: Literal["synced", "conflict", "vault_deleted", "pending", "error"] | None = None,
) -> dict[str, Any]:
    notes = VaultRepo(state.store).notes(user)
    return {"notes": [n.to_dict() for n in notes if status is None or n.status == status]}


@router.get(
    "/obsidian/conflicts/{document_id}",
    summary="Both versions of a note in conflict (the vault's when visible here)",
)
def obsidian_conflict(state: StateDep, user: UserDep, document_id: str) -> dict[str, Any]:
    return {"conflict": conflict_versions(state.store, state.storage, user, document_id)}


@router.get(
    "/obsidian/remapped-connections",
    summary="Validated connections a sync moved to a less similar passage, or lost",
)
def remapped(
    state: StateDep, user: UserDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> dict[str, Any]:
    return {"connections": remapped_connections(state.store, user, limit)}


@router.post(
    "/obsidian/remapped-connections/{connection_id}/ok",
    summary="Clear a remapped connection's flag (checked)",
)
def remap_ok(state: StateDep, user: UserDep, connection_id: str) -> dict[str, Any]:
    return {"cleared": acknowledge_remap(state.store, user, connection_id)}


# --- Readwise -----------------------------------------------------------------------------------


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
                            "description": "Readwise's CSV export, or the export API's JSON.",
                        }
                    },
                }
            }
        },
    }
}


@router.get("/readwise", summary="The Readwise account (token set?) and the last imports")
def readwise(state: StateDep, user: UserDep) -> dict[str, Any]:
    repo = ReadwiseRepo(state.store)
    return {
        "account": repo.account_view(user),
        "counts": repo.counts(user),
        "imports": _jobs(state, user, "readwise_import"),
    }


@router.post(
    "/readwise/uploads",
    status_code=201,
    summary="Upload a Readwise export (CSV or JSON) and import it",
    openapi_extra=UPLOAD_SCHEMA,
)
async def readwise_upload(request: Request, state: StateDep, user: UserDep) -> dict[str, Any]:
    try:
        form = await request.form(max_files=1, max_fields=5, max_part_size=64 * 1024)
    except (RhizomeError, RequestTooLarge):
        raise
    except Exception as exc:  # a malformed multipart body
        raise InvalidInputError(
            f"Could not read the upload: {exc}.", "Send the export in a field named 'file'."
        ) from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidInputError(
                "No file in the upload.", "Send the export in a field named 'file'."
            )
        name = safe_filename(upload.filename) or "readwise-export.csv"
        chunks: list[bytes] = []
        size = 0
        while block := await upload.read(1024 * 1024):
            size += len(block)
            if size > MAX_FILE_BYTES:
                raise PayloadTooLargeError(
                    f"{name} is larger than {MAX_FILE_BYTES / 1e6:.0f} MB.",
                    "Import through the export API instead (rhizome readwise import --api).",
                )
            chunks.append(block)
        raw = b"".join(chunks)
    finally:
        await form.close()
    job = await run_in_threadpool(
        request_readwise_file, state.store, state.storage, user, raw, name
    )
    return {"job": job_summary(state.registry, job)}


@router.put("/readwise/token", summary="Store the Readwise access token")
def readwise_token(state: StateDep, user: UserDep, body: TokenRequest) -> dict[str, Any]:
    repo = ReadwiseRepo(state.store)
    repo.save_token(user, body.token)
    return {"account": repo.account_view(user)}


@router.post("/readwise/import", status_code=201, summary="Import from the Readwise export API")
def readwise_api(state: StateDep, user: UserDep, body: ReadwiseApiRequest) -> dict[str, Any]:
    job = request_readwise_api(state.store, user, token=body.token, full=body.full)
    return {"job": job_summary(state.registry, job)}


@router.get("/readwise/highlights", summary="Each imported highlight with its outcome")
def readwise_highlights(
    state: StateDep,
    user: UserDep,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["matched", "needs_review", "unmatched", "skipped"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    repo = ReadwiseRepo(state.store)
    if job_id is not None:
        job = state.store.get(job_id, user_id=user)  # the user's own job, or 404
        job_id = job.id
    return {
        "highlights": repo.items(user, job_id=job_id, status=status, limit=limit, offset=offset),
        "counts": repo.counts(user, job_id),
    }


# --- review ---------------------------------------------------------------------------------------


@router.get("/review", summary="Highlights waiting for review, with their suggested passage")
def review(
    state: StateDep,
    user: UserDep,
    document_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    queue = Review(state.store, state.storage)
    return {
        "highlights": queue.pending(user, document_id=document_id, limit=limit, offset=offset),
        "total": queue.count(user),
    }


@router.post("/review", summary="Accept or reject suggested passages")
def decide(state: StateDep, user: UserDep, body: ReviewRequest) -> dict[str, Any]:
    if not body.accept and not body.reject:
        raise InvalidInputError("Name highlights to accept or reject.", "Send accept or reject.")
    outcome = Review(state.store, state.storage).decide(
        user, accept=list(body.accept), reject=list(body.reject)
    )
    return {"review": outcome.to_dict()}
