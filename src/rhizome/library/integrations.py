"""Requests for the integrations, shared by the command line and the HTTP API: queue an
Obsidian export or sync, store a Readwise export and queue its import, the state of a
user's vault and conflicts. Every id a user sends is checked against that user here (and
again by the handler)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from rhizome.errors import InvalidInputError, NotFoundError
from rhizome.jobs.client import enqueue
from rhizome.jobs.model import Job
from rhizome.jobs.store import SqlJobStore
from rhizome.library.readwise import MAX_FILE_BYTES, ReadwiseRepo, parse_export
from rhizome.library.repo import Library
from rhizome.library.vault import Vault, VaultRepo, sha256, split_note
from rhizome.storage import Storage

MAX_VERSION_CHARS = 300_000


def _owned(store: SqlJobStore, user_id: str, ids: list[str] | None) -> list[str] | None:
    if not ids:
        return None
    library = Library(store)
    return list(dict.fromkeys(library.get_document(d, user_id).id for d in ids))


def request_obsidian_export(
    store: SqlJobStore, user_id: str, document_ids: list[str] | None = None
) -> Job:
    """Queue an ``obsidian_export`` of some documents (None: every ready one)."""
    VaultRepo(store).require_settings(user_id)
    ids = _owned(store, user_id, document_ids)
    one = ids[0] if ids and len(ids) == 1 else None
    [job] = enqueue(
        store,
        "obsidian_export",
        {"document_ids": ids},
        user_id=user_id,
        entity_type="document" if one else None,
        entity_id=one,
    )
    return job


def request_obsidian_sync(
    store: SqlJobStore,
    user_id: str,
    *,
    document_ids: list[str] | None = None,
    resolve: list[tuple[str, str]] | None = None,
) -> Job:
    """Queue an ``obsidian_sync`` (optionally resolving conflicts: ``(document, keep)``
    with keep ``vault`` or ``library``). A plain sync of the whole vault joins one that is
    already waiting or running."""
    VaultRepo(store).require_settings(user_id)
    ids = _owned(store, user_id, document_ids)
    library = Library(store)
    resolutions = []
    for doc_id, keep in resolve or []:
        keep = keep.removeprefix("keep-")
        if keep not in ("vault", "library"):
            raise InvalidInputError(
                f"Unknown resolution {keep!r}.", "Keep the vault's version or the library's."
            )
        resolutions.append({"document_id": library.get_document(doc_id, user_id).id, "keep": keep})
    plain = not ids and not resolutions
    [job] = enqueue(
        store,
        "obsidian_sync",
        {"document_ids": ids, "resolve": resolutions},
        user_id=user_id,
        dedupe_key=f"obsidian_sync:{user_id}" if plain else None,
    )
    return job


def readwise_upload_key(user_id: str, filename: str | None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    ext = ".json" if (filename or "").lower().endswith(".json") else ".csv"
    return f"readwise/{user_id}/uploads/{stamp}-{uuid.uuid4().hex[:12]}{ext}"


def request_readwise_file(
    store: SqlJobStore, storage: Storage, user_id: str, raw: bytes, filename: str | None
) -> Job:
    """Check a Readwise export (CSV or JSON), store it, and queue its import."""
    if not raw:
        raise InvalidInputError("The export is empty.", "Choose the CSV or JSON export.")
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInputError(
            f"The export is larger than {MAX_FILE_BYTES / 1e6:.0f} MB.",
            "Import through the export API (rhizome readwise import --api).",
        )
    parse_export(raw, filename)  # refuse what is not an export before anything is stored
    key = readwise_upload_key(user_id, filename)
    storage.put(key, raw)
    name = (filename or "readwise export").replace("\\", "/").rsplit("/", 1)[-1][:200]
    [job] = enqueue(store, "readwise_import", {"file_key": key, "filename": name}, user_id=user_id)
    return job


def request_readwise_api(
    store: SqlJobStore, user_id: str, *, token: str | None = None, full: bool = False
) -> Job:
    """Queue an import from the Readwise export API (storing ``token`` first if given)."""
    repo = ReadwiseRepo(store)
    if token:
        repo.save_token(user_id, token)
    elif not (repo.account(user_id) or {}).get("token"):
        raise InvalidInputError(
            "No Readwise access token is stored for you.",
            "Give it once: --token T (from readwise.io/access_token).",
        )
    [job] = enqueue(
        store,
        "readwise_import",
        {"api": True, "full": full},
        user_id=user_id,
        dedupe_key=f"readwise_api:{user_id}",
    )
    return job


def obsidian_overview(store: SqlJobStore, user_id: str) -> dict[str, Any]:
    """The user's vault settings, the notes by sync status and the open conflicts."""
    repo = VaultRepo(store)
    settings = repo.settings(user_id)
    notes = repo.notes(user_id) if settings else []
    visible: bool | None = None
    if settings is not None:
        try:
            Vault(settings).check(create=False)
            visible = True
        except InvalidInputError:
            visible = False
    return {
        "settings": settings.to_dict() if settings else None,
        "vault_visible_here": visible,
        "counts": repo.counts(user_id),
        "notes": len(notes),
        "conflicts": [st.to_dict() for st in repo.conflicts(user_id)] if settings else [],
        "problems": [st.to_dict() for st in notes if st.status in ("vault_deleted", "error")],
    }


def conflict_versions(
    store: SqlJobStore, storage: Storage, user_id: str, document_id: str
) -> dict[str, Any]:
    """Both versions of a note in conflict: the library's ``content.md`` and the vault's
    note body (when the vault is visible on this machine)."""
    repo = VaultRepo(store)
    doc = Library(store).get_document(document_id, user_id)
    st = repo.note_of_document(user_id, doc.id)
    if st is None:
        raise NotFoundError(
            f"The document {doc.title!r} has no note in the vault.", "Export it first."
        )
    try:
        library_text: str | None = storage.get(f"{doc.storage_folder}/content.md").decode("utf-8")
    except FileNotFoundError:
        library_text = None
    vault_text: str | None = None
    note_missing = False
    settings = repo.settings(user_id)
    if settings is not None:
        try:
            vault = Vault(settings)
            vault.check(create=False)
            raw = vault.read(st.note_path)
            note_missing = raw is None
            if raw is not None:
                vault_text = split_note(raw.decode("utf-8", "replace"))[1]
        except InvalidInputError:
            vault_text = None
    return {
        "document_id": doc.id,
        "title": doc.title,
        "note": st.note_path,
        "status": st.status,
        "message": st.message,
        "library": (library_text or "")[:MAX_VERSION_CHARS] if library_text is not None else None,
        "vault": vault_text[:MAX_VERSION_CHARS] if vault_text is not None else None,
        "vault_missing": note_missing,
        "same": library_text is not None
        and vault_text is not None
        and sha256(library_text) == sha256(vault_text),
    }


def remapped_connections(
    store: SqlJobStore, user_id: str, limit: int = 200
) -> list[dict[str, Any]]:
    """Validated connections a sync moved to a less similar passage (``review``) or could
    not place (``lost``, with the old passage), for the user to check."""
    from rhizome.jobs.store.queries import load_queries

    with store.session(load_queries(store.dialect, "rhizome.library")) as s:
        rows = s.all("sync_remapped_connections", {"user_id": user_id, "limit": limit})
    out = []
    for r in rows:
        item = dict(r)
        for key in ("id", "source_document_id", "target_document_id"):
            item[key] = str(item[key])
        out.append(item)
    return out


def acknowledge_remap(store: SqlJobStore, user_id: str, connection_id: str) -> bool:
    """Clear a connection's remapping flag (the user checked it)."""
    from rhizome.jobs.store.queries import load_queries
    from rhizome.library.connections import Curation

    conn = Curation(store).get(connection_id, user_id)
    with store.transaction(load_queries(store.dialect, "rhizome.library")) as tx:
        return tx.run("sync_clear_remap", {"id": conn.id, "user_id": user_id}) == 1
