"""Obsidian export and two-way sync: the work of one document or one note (the handlers
``obsidian_export`` and ``obsidian_sync`` run it one pause-safe step at a time).

**Export** writes a document's note, its Highlights and Connections notes and its
``.rhizome/`` files (:mod:`rhizome.library.vault` has the layout), each only when its
bytes changed. A note edited in the vault since the last sync is never overwritten by an
export: it is reported (``vault_changed``) and left to the sync.

**Sync** compares each known note with its sync state (size and modification time first,
then the hash; unchanged notes are not read) and each document with its library
signature (no storage read unless it changed):

* only the vault changed → the note's body (frontmatter stripped) becomes the document's
  markdown in one transactional swap (:func:`rhizome.library.rechunk.swap_content`:
  re-chunk, re-embed, highlight recovery, connection remapping), and a
  ``detect_connections`` job is queued for the rest;
* only the library changed → the note is exported again;
* both changed → a **conflict**: nothing is overwritten, the note stays as the user wrote
  it and the library keeps its version, until the user keeps one of them
  (``keep-vault``/``keep-library``; the vault version overwritten by ``keep-library`` is
  saved under ``.rhizome/`` first);
* a new note under ``Documents/`` → a new document for the pipeline; a deleted note →
  reported, the document is never deleted.

Every step records its result on the note's sync state row together with the job and the
step number, in the same transaction as its effects, so a step redone after a crash
returns what it did the first time instead of doing it twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from rhizome.errors import InvalidInputError, NotFoundError
from rhizome.jobs.model import short_job_id
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.base import Tx
from rhizome.library.connections import Curation
from rhizome.library.highlights import Highlights
from rhizome.library.model import Document
from rhizome.library.rechunk import SwapResult, finish_content, swap_content
from rhizome.library.repo import Library
from rhizome.library.vault import (
    CONNECTIONS_SUFFIX,
    DOCUMENTS,
    HIGHLIGHTS_SUFFIX,
    META_FOLDER,
    NoteState,
    UnsafePathError,
    Vault,
    VaultRepo,
    VaultSettings,
    json_file,
    library_sig,
    name_of_note,
    note_name,
    note_paths,
    note_tags,
    render_connections,
    render_highlights,
    render_note,
    save_note_state,
    sha256,
    split_note,
    suffixed,
)
from rhizome.storage import Storage

MAX_CONNECTIONS_IN_NOTE = 500
_NAMESPACE = uuid.UUID("6f0b7c5e-2f7e-4d8b-9a55-0b5d1c1a2e71")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    """What one export or sync job shares between its steps (rebuilt after a resume)."""

    store: SqlJobStore
    storage: Storage
    user_id: str
    job_id: str
    settings: VaultSettings
    vault: Vault
    repo: VaultRepo
    progress: Callable[[str], None] | None = None
    _names: dict[str, str | None] | None = None
    _note_of: dict[str, str] | None = None

    @classmethod
    def open(cls, store: SqlJobStore, storage: Storage, user_id: str, job_id: str) -> Context:
        repo = VaultRepo(store)
        settings = repo.require_settings(user_id)
        vault = Vault(settings)
        vault.check()
        return cls(store, storage, user_id, job_id, settings, vault, repo)

    def _load_names(self) -> None:
        self._names, self._note_of = {}, {}
        for st in self.repo.notes(self.user_id):
            name = name_of_note(st.note_path)
            self._names[name.lower()] = st.document_id
            if st.document_id is not None:
                self._note_of[st.document_id] = name

    @property
    def names(self) -> dict[str, str | None]:
        """``{lower-case note name: document id}`` of the names in use (read once)."""
        if self._names is None:
            self._load_names()
        assert self._names is not None
        return self._names

    @property
    def note_of(self) -> dict[str, str]:
        """``{document id: note name}`` of the documents that have a note (read once)."""
        if self._note_of is None:
            self._load_names()
        assert self._note_of is not None
        return self._note_of

    def done_before(self, note_path: str, item: int) -> dict[str, Any] | None:
        """The recorded result when this job already did step ``item`` on this note."""
        st = self.repo.note_at(self.user_id, note_path)
        if st is not None and st.last_job_id == self.job_id and st.last_item == item:
            return st.last_result
        return None


# --- export --------------------------------------------------------------------------------------


def _content(storage: Storage, doc: Document) -> str:
    try:
        return storage.get(f"{doc.storage_folder}/content.md").decode("utf-8")
    except FileNotFoundError:
        raise InvalidInputError(
            f"The document {doc.title!r} has no markdown in storage.",
            "Process it again (`rhizome docs show`), then export.",
        ) from None


def _name_for(ctx: Context, doc: Document) -> str:
    """A new note name for a document (its title, or with a stable suffix when taken by
    another document, in the database or on disk)."""
    base = note_name(doc.title)
    owner = ctx.names.get(base.lower(), doc.id)
    name = base
    if owner not in (doc.id,):
        name = suffixed(base, doc.id)
    else:
        raw = ctx.vault.read(note_paths(base)["note"])
        if raw is not None:
            fields, _ = split_note(raw.decode("utf-8", "replace"))
            if str(fields.get("id") or "") != doc.id:
                name = suffixed(base, doc.id)
    ctx.names[name.lower()] = doc.id
    ctx.note_of[doc.id] = name
    return name


def _source(doc: Document) -> str | None:
    return doc.source_url or doc.source_type


def document_files(
    ctx: Context, doc: Document, name: str, content: str
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """``(main note, derived files)`` of a document, by path."""
    library = Library(ctx.store)
    paths = note_paths(name)
    tags = note_tags({"tags": doc.metadata.get("tags")})
    main = {
        paths["note"]: render_note(
            document_id=doc.id,
            title=doc.title,
            author=doc.author,
            source=_source(doc),
            tags=tags,
            content=content,
        )
    }
    chunks = library.list_chunks(doc.id, ctx.user_id)
    derived: dict[str, bytes] = {
        f"{paths['meta']}/chunks.json": json_file(
            {"document_id": doc.id, "chunks": [c.to_dict() for c in chunks]}
        )
    }
    try:
        meta = json.loads(ctx.storage.get(f"{doc.storage_folder}/metadata.json"))
    except (FileNotFoundError, ValueError):
        meta = doc.to_dict()
    derived[f"{paths['meta']}/metadata.json"] = json_file(meta)
    if ctx.settings.export_highlights:
        items = [
            h.to_dict() for h in Highlights(ctx.store).find(ctx.user_id, doc.id, limit=100_000)
        ]
        headings = {c.id: c.heading_path for c in chunks}
        derived[paths["highlights"]] = render_highlights(
            name=name, document_id=doc.id, title=doc.title, highlights=items, headings=headings
        )
        derived[f"{paths['meta']}/highlights.json"] = json_file(items)
    if ctx.settings.export_connections:
        page = Curation(ctx.store).search(
            ctx.user_id, document_id=doc.id, limit=MAX_CONNECTIONS_IN_NOTE
        )
        conns = [c.to_dict() for c in page.items]
        derived[paths["connections"]] = render_connections(
            name=name, document_id=doc.id, connections=conns, names=ctx.note_of
        )
        derived[f"{paths['meta']}/connections.json"] = json_file(conns)
    return main, derived


def _write_all(vault: Vault, files: dict[str, bytes]) -> tuple[int, int]:
    written = unchanged = 0
    for rel, data in files.items():
        if vault.write(rel, data):
            written += 1
        else:
            unchanged += 1
    return written, unchanged


def export_document(
    ctx: Context,
    document_id: str,
    item: int,
    *,
    overwrite_vault: bool = False,
    wrap: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Export one document (see the module doc); the step's result (``wrap`` turns it
    into the result recorded, for a sync step that exports)."""
    library = Library(ctx.store)
    try:
        doc = library.get_document(document_id, ctx.user_id)
    except NotFoundError:
        return {"document_id": document_id, "status": "missing", "message": "deleted meanwhile"}
    state = ctx.repo.note_of_document(ctx.user_id, doc.id)
    if (
        state is not None
        and state.last_job_id == ctx.job_id
        and state.last_item == item
        and state.last_result is not None
    ):
        return state.last_result  # this job did this step before a crash
    if doc.status != "ready":
        return {
            "document_id": doc.id,
            "title": doc.title,
            "status": "skipped",
            "message": f"the document is {doc.status}, not ready",
        }
    if finish_content(ctx.store, ctx.storage, doc.id, ctx.user_id, doc=doc):
        doc = library.get_document(doc.id, ctx.user_id)
    content = _content(ctx.storage, doc)
    try:
        name = name_of_note(state.note_path) if state is not None else _name_for(ctx, doc)
        note_path = note_paths(name)["note"]
        main, derived = document_files(ctx, doc, name, content)
        vault_changed = False
        if state is not None and not overwrite_vault:
            current = ctx.vault.read(note_path)
            if current is not None and (
                sha256(current) != state.vault_hash or state.status == "conflict"
            ):
                vault_changed = True
        written, unchanged = _write_all(ctx.vault, derived)
        if not vault_changed:
            w, u = _write_all(ctx.vault, main)
            written, unchanged = written + w, unchanged + u
    except UnsafePathError as exc:  # a symlink in the vault that leads outside: not followed
        return {
            "document_id": doc.id,
            "title": doc.title,
            "status": "refused",
            "message": exc.message,
        }
    status = "vault_changed" if vault_changed else ("written" if written else "unchanged")
    result: dict[str, Any] = {
        "document_id": doc.id,
        "title": doc.title,
        "note": note_path,
        "link": ctx.vault.link(note_path),
        "status": status,
        "files_written": written,
        "files_unchanged": unchanged,
    }
    if vault_changed:
        result["message"] = (
            "the note was edited in the vault since the last sync: not overwritten "
            "(run `rhizome obsidian sync`)"
        )
    if wrap is not None:
        result = wrap(result)
    _record_export(
        ctx, doc, note_path, content, main[note_path], item, result, state, vault_changed
    )
    return result


def _record_export(
    ctx: Context,
    doc: Document,
    note_path: str,
    content: str,
    note: bytes,
    item: int,
    result: dict[str, Any],
    state: NoteState | None,
    vault_changed: bool,
) -> None:
    row = ctx.repo.document_row(ctx.user_id, doc.id) or {}
    derived = ctx.repo.derived_sigs(ctx.user_id, doc.id).get(doc.id)
    new = NoteState(
        user_id=ctx.user_id,
        note_path=note_path,
        document_id=doc.id,
        status="synced",
        derived_sig=derived,
        last_job_id=ctx.job_id,
        last_item=item,
        last_result=result,
        synced_at=_now(),
    )
    if vault_changed and state is not None:
        new.status = state.status
        new.vault_hash, new.body_hash = state.vault_hash, state.body_hash
        new.vault_mtime_ns, new.vault_size = state.vault_mtime_ns, state.vault_size
        new.library_sig, new.message = state.library_sig, result.get("message")
        new.synced_at = state.synced_at
    else:
        stat = ctx.vault.stat(note_path)
        new.vault_hash = sha256(note)
        new.vault_mtime_ns, new.vault_size = stat if stat else (None, None)
        new.body_hash = sha256(content)
        new.library_sig = library_sig(row)
    ctx.repo.save(new, replaces=state.note_path if state is not None else None)


# --- sync: the scan ---------------------------------------------------------------------------


@dataclass
class Scan:
    items: list[dict[str, Any]]
    unchanged: int = 0
    conflicts_open: int = 0
    deleted_known: int = 0
    processing: int = 0
    failed: int = 0
    touched: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _is_generated(name: str) -> bool:
    stem = name[:-3] if name.endswith(".md") else name
    return stem.endswith((HIGHLIGHTS_SUFFIX, CONNECTIONS_SUFFIX))


def scan(
    ctx: Context,
    *,
    document_ids: Sequence[str] | None = None,
    resolve: dict[str, str] | None = None,
) -> Scan:
    """What a sync has to do: one item per note that changed on either side (or is new,
    deleted, in conflict, or to resolve). Unchanged notes are neither read nor listed."""
    resolve = resolve or {}
    only = set(document_ids) if document_ids else None
    states = ctx.repo.notes(ctx.user_id)
    derived = (
        ctx.repo.derived_sigs(ctx.user_id)
        if ctx.settings.export_highlights or ctx.settings.export_connections
        else {}
    )
    out = Scan(items=[])
    touches: list[NoteState] = []
    known = {st.note_path for st in states}
    for st in states:
        doc_id = st.document_id
        if only is not None and doc_id not in only:
            continue
        if doc_id is None:
            if st.status != "error":
                out.items.append({"action": "library_deleted", "note_path": st.note_path})
            continue
        if st.document.get("doc_status") == "failed":
            out.failed += 1  # its processing failed: nothing to sync until it is fixed
            continue
        if st.document.get("doc_status") != "ready":
            out.processing += 1
            continue
        keep = resolve.get(doc_id)
        stat = ctx.vault.stat(st.note_path)
        if stat is None:
            if keep == "library":
                out.items.append(_item("resolve", st, keep=keep))
            elif st.status != "vault_deleted":
                out.items.append(_item("deleted", st))
            else:
                out.deleted_known += 1
            continue
        vault_changed = False
        body_only = False
        vault_hash = st.vault_hash
        if stat != (st.vault_mtime_ns, st.vault_size) or st.status == "vault_deleted":
            raw = ctx.vault.read(st.note_path) or b""
            vault_hash = sha256(raw)
            if vault_hash != st.vault_hash:
                _, body = split_note(raw.decode("utf-8", "replace"))
                if sha256(body) == st.body_hash:
                    body_only = True  # the frontmatter changed, not the text
                else:
                    vault_changed = True
            else:
                st.vault_mtime_ns, st.vault_size = stat
                if st.status == "vault_deleted":  # the same note is back
                    st.status, st.message = "synced", None
                touches.append(st)
        library_changed = False
        sig = library_sig(st.document)
        if sig != st.library_sig:
            doc = Library(ctx.store).get_document(doc_id, ctx.user_id)
            finish_content(ctx.store, ctx.storage, doc.id, ctx.user_id)
            try:
                current = ctx.storage.get(f"{doc.storage_folder}/content.md")
            except FileNotFoundError:
                current = b""
            if sha256(current) != st.body_hash:
                library_changed = True
            else:
                st.library_sig = sig
                if st not in touches:
                    touches.append(st)
        if keep is not None and (st.status == "conflict" or (vault_changed and library_changed)):
            out.items.append(_item("resolve", st, keep=keep, seen=vault_hash))
        elif vault_changed and library_changed:
            if st.status == "conflict":
                out.conflicts_open += 1
            out.items.append(_item("conflict", st, seen=vault_hash))
        elif vault_changed:
            out.items.append(_item("vault", st, seen=vault_hash))
        elif library_changed:
            out.items.append(_item("library", st))
        elif body_only:
            out.items.append(_item("frontmatter", st, seen=vault_hash))
        elif derived.get(doc_id) != st.derived_sig and (
            ctx.settings.export_highlights or ctx.settings.export_connections
        ):
            out.items.append(_item("derived", st))
        elif st.status == "conflict":
            out.items.append(_item("settled", st))
        else:
            out.unchanged += 1
    if touches:
        with ctx.store.transaction(ctx.repo.queries) as tx:
            for st in touches:
                save_note_state(tx, st)
        out.touched = len(touches)
    if only is None:
        out.items.extend(_new_notes(ctx, known))
    return out


def _item(action: str, st: NoteState, **extra: Any) -> dict[str, Any]:
    return {"action": action, "note_path": st.note_path, "document_id": st.document_id, **extra}


def _new_notes(ctx: Context, known: set[str]) -> list[dict[str, Any]]:
    """Notes under ``Documents/`` that the sync state does not know."""
    items: list[dict[str, Any]] = []
    for entry in sorted(ctx.vault.listdir(DOCUMENTS), key=lambda e: e.name):
        name = entry.name
        if name.startswith("."):
            continue
        if entry.is_dir():
            rel = f"{DOCUMENTS}/{name}/{name}.md"
        elif name.endswith(".md") and not _is_generated(name):
            rel = f"{DOCUMENTS}/{name}"
        else:
            continue
        if rel in known:
            continue
        try:
            raw = ctx.vault.read(rel)
        except InvalidInputError as exc:  # a symlink that leads outside: refused, reported
            items.append({"action": "refused", "note_path": rel, "message": exc.message})
            continue
        if raw is None:
            continue
        fields, _ = split_note(raw.decode("utf-8", "replace"))
        if fields.get("rhizome_generated"):
            continue
        items.append({"action": "new", "note_path": rel, "claimed_id": _uuid(fields.get("id"))})
    return items


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value))) if value else None
    except ValueError:
        return None


# --- sync: one step -------------------------------------------------------------------------------


def apply(ctx: Context, item: dict[str, Any], n: int) -> dict[str, Any]:
    """Do one item of a scan (see the module doc) and return its result."""
    note_path = str(item["note_path"])
    done = ctx.done_before(note_path, n)
    if done is not None:
        if done.get("direction") == "vault → library" and "detect_connections_job" not in done:
            st = ctx.repo.note_at(ctx.user_id, note_path)
            if st is not None:  # the swap was committed, its follow-ups maybe not
                return _after_swap(ctx, st, n, done)
        return done
    action = item["action"]
    base: dict[str, Any] = {"note": note_path, "document_id": item.get("document_id")}
    if action == "refused":
        return {**base, "status": "refused", "message": item.get("message")}
    if action == "new":
        return _apply_new(ctx, item, n, base)
    st = ctx.repo.note_at(ctx.user_id, note_path)
    if st is None:
        return {**base, "status": "skipped", "message": "the note's state is gone"}
    title = st.document.get("title")
    base["title"] = title
    if action == "library_deleted":
        result = {
            **base,
            "status": "library_deleted",
            "message": "the document was deleted in Rhizome; the note was kept",
        }
        return _record(ctx, st, n, result, status="error", message=result["message"])
    if action == "deleted":
        result = {
            **base,
            "status": "deleted",
            "message": "the note was deleted in the vault; the document was kept "
            "(export it again to restore the note)",
        }
        return _record(ctx, st, n, result, status="vault_deleted", message=result["message"])
    if action == "conflict":
        return _conflict(ctx, st, n, base)
    if action in ("library", "derived"):
        return _export_step(ctx, st, n, base, action)
    if action == "settled":
        result = {**base, "status": "unchanged", "message": "the conflict no longer holds"}
        return _record(ctx, st, n, result, status="synced", message=None)
    if action == "frontmatter":
        return _apply_frontmatter(ctx, st, n, base)
    if action == "vault":
        return _apply_vault(ctx, st, n, base)
    if action == "resolve":
        if item.get("keep") == "vault":
            result = _apply_vault(ctx, st, n, base, resolved=True)
        else:
            result = _keep_library(ctx, st, n, base)
        return result
    raise InvalidInputError(f"Unknown sync action {action!r}.", "Run the sync again.")


def _conflict(ctx: Context, st: NoteState, n: int, base: dict[str, Any]) -> dict[str, Any]:
    result = {
        **base,
        "status": "conflict",
        "message": "the note and the document both changed since the last sync; "
        "nothing was overwritten: keep the vault's or the library's version",
        "link": ctx.vault.link(st.note_path),
    }
    return _record(ctx, st, n, result, status="conflict", message=result["message"])


def _library_changed(ctx: Context, st: NoteState) -> bool:
    assert st.document_id is not None
    row = ctx.repo.document_row(ctx.user_id, st.document_id) or {}
    if library_sig(row) == st.library_sig:
        return False
    doc = Library(ctx.store).get_document(st.document_id, ctx.user_id)
    finish_content(ctx.store, ctx.storage, doc.id, ctx.user_id)
    try:
        current = ctx.storage.get(f"{doc.storage_folder}/content.md")
    except FileNotFoundError:
        return True
    return sha256(current) != st.body_hash


def _record(
    ctx: Context,
    st: NoteState,
    n: int,
    result: dict[str, Any],
    *,
    status: str,
    message: str | None,
) -> dict[str, Any]:
    st.status, st.message = status, message
    st.last_job_id, st.last_item, st.last_result = ctx.job_id, n, result
    ctx.repo.save(st)
    return result


def _export_step(
    ctx: Context, st: NoteState, n: int, base: dict[str, Any], action: str
) -> dict[str, Any]:
    assert st.document_id is not None

    def wrap(out: dict[str, Any]) -> dict[str, Any]:
        if out.get("status") not in ("written", "unchanged"):
            return out
        status = "changed" if action == "library" else "refreshed"
        direction = "library → vault" if action == "library" else "highlights and connections"
        return {**base, **out, "status": status, "direction": direction}

    current = ctx.vault.read(st.note_path)
    if current is not None and sha256(current) != st.vault_hash:
        return _conflict(ctx, st, n, base)  # edited in the vault since the scan
    return export_document(ctx, st.document_id, n, overwrite_vault=True, wrap=wrap)


def _apply_frontmatter(ctx: Context, st: NoteState, n: int, base: dict[str, Any]) -> dict[str, Any]:
    raw = ctx.vault.read(st.note_path) or b""
    fields, _ = split_note(raw.decode("utf-8", "replace"))
    assert st.document_id is not None
    tags = note_tags(fields)
    Library(ctx.store).update_document(st.document_id, ctx.user_id, metadata={"tags": tags})
    stat = ctx.vault.stat(st.note_path)
    st.vault_hash = sha256(raw)
    st.vault_mtime_ns, st.vault_size = stat if stat else (None, None)
    row = ctx.repo.document_row(ctx.user_id, st.document_id) or {}
    st.library_sig = library_sig(row)
    result = {
        **base,
        "status": "unchanged",
        "message": "only the frontmatter changed",
        "tags": tags,
    }
    return _record(ctx, st, n, result, status="synced", message=None)


def _apply_vault(
    ctx: Context, st: NoteState, n: int, base: dict[str, Any], *, resolved: bool = False
) -> dict[str, Any]:
    """The note's body becomes the document's markdown (one transactional swap)."""
    assert st.document_id is not None
    raw = ctx.vault.read(st.note_path)
    if raw is None:
        gone = {**base, "status": "deleted", "message": "the note disappeared"}
        return _record(ctx, st, n, gone, status="vault_deleted", message=gone["message"])
    _, body = split_note(raw.decode("utf-8", "replace"))
    if not body.strip():
        empty = {
            **base,
            "status": "error",
            "message": "the note is empty: not applied (the document keeps its text)",
        }
        return _record(ctx, st, n, empty, status="error", message=empty["message"])
    if not resolved and _library_changed(ctx, st):
        return _conflict(ctx, st, n, base)  # the library changed since the scan
    stat = ctx.vault.stat(st.note_path)
    result: dict[str, Any] = {
        **base,
        "status": "resolved" if resolved else "changed",
        "direction": "vault → library",
    }
    if resolved:
        result["kept"] = "vault"

    def record(tx: Tx, swap: SwapResult) -> None:
        row = tx.one("vault_document_row", {"user_id": ctx.user_id, "document_id": st.document_id})
        result.update(
            chunks=swap.chunks,
            embedded=swap.embedded,
            reused_embeddings=swap.reused_embeddings,
            highlights=dict(swap.highlights),
            highlight_details=swap.highlight_details[:200],
            connections=dict(swap.connections),
        )
        st.status, st.message = "synced", None
        st.vault_hash = sha256(raw)
        st.vault_mtime_ns, st.vault_size = stat if stat else (None, None)
        st.body_hash = sha256(body)
        st.library_sig = library_sig(row or {})
        st.last_job_id, st.last_item, st.last_result = ctx.job_id, n, result
        st.synced_at = _now()
        save_note_state(tx, st)

    try:
        swap_content(
            ctx.store,
            ctx.storage,
            st.document_id,
            ctx.user_id,
            body,
            in_transaction=record,
            progress=ctx.progress,
        )
    except InvalidInputError as exc:
        failed = {**base, "status": "error", "message": exc.message, "hint": exc.hint}
        return _record(ctx, st, n, failed, status="error", message=exc.message)
    return _after_swap(ctx, st, n, result)


def _after_swap(ctx: Context, st: NoteState, n: int, result: dict[str, Any]) -> dict[str, Any]:
    """The follow-ups of a committed swap (idempotent: a redone step runs them again):
    the note's tags, a ``detect_connections`` job, the derived notes."""
    from rhizome.jobs.client import enqueue

    assert st.document_id is not None
    raw = ctx.vault.read(st.note_path)
    if raw is not None:
        tags = note_tags(split_note(raw.decode("utf-8", "replace"))[0])
        if tags:
            Library(ctx.store).update_document(st.document_id, ctx.user_id, metadata={"tags": tags})
    [job] = enqueue(
        ctx.store,
        "detect_connections",
        {"document_id": st.document_id},
        user_id=ctx.user_id,
        entity_type="document",
        entity_id=st.document_id,
        dedupe_key=f"detect_connections:{st.document_id}",
    )
    result = {**result, "detect_connections_job": job.id}
    _refresh_derived(ctx, st, n, result)
    return result


def _refresh_derived(ctx: Context, st: NoteState, n: int, result: dict[str, Any]) -> None:
    """After a swap: the Highlights and Connections notes (offsets moved) and
    ``.rhizome/`` files; the note itself is the user's and stays as it is."""
    assert st.document_id is not None
    library = Library(ctx.store)
    doc = library.get_document(st.document_id, ctx.user_id)
    content = _content(ctx.storage, doc)
    _, derived = document_files(ctx, doc, name_of_note(st.note_path), content)
    _write_all(ctx.vault, derived)
    fresh = ctx.repo.note_at(ctx.user_id, st.note_path)
    if fresh is not None:
        fresh.derived_sig = ctx.repo.derived_sigs(ctx.user_id, doc.id).get(doc.id)
        fresh.last_result = result
        ctx.repo.save(fresh)


def _keep_library(ctx: Context, st: NoteState, n: int, base: dict[str, Any]) -> dict[str, Any]:
    """Resolve a conflict for the library: the vault's version is saved under
    ``.rhizome/`` first, then the note is exported over it."""
    assert st.document_id is not None
    raw = ctx.vault.read(st.note_path)
    backup = None
    if raw is not None:
        folder = str(PurePosixPath(st.note_path).parent)
        backup = f"{folder}/{META_FOLDER}/conflict-{short_job_id(ctx.job_id)}-{n}.md"
        ctx.vault.write(backup, raw)

    def wrap(out: dict[str, Any]) -> dict[str, Any]:
        return {
            **base,
            **out,
            "status": "resolved",
            "kept": "library",
            "direction": "library → vault",
            "vault_backup": backup,
        }

    return export_document(ctx, st.document_id, n, overwrite_vault=True, wrap=wrap)


def _apply_new(ctx: Context, item: dict[str, Any], n: int, base: dict[str, Any]) -> dict[str, Any]:
    """A note nobody knows: a moved note (its ``id`` names a document whose note is
    gone), a note to adopt (its document has no note yet), or a new document."""
    note_path = str(item["note_path"])
    raw = ctx.vault.read(note_path)
    if raw is None:
        return {**base, "status": "skipped", "message": "the note disappeared"}
    _, body = split_note(raw.decode("utf-8", "replace"))
    stat = ctx.vault.stat(note_path)
    library = Library(ctx.store)
    claimed = item.get("claimed_id")
    doc: Document | None = None
    if claimed:
        try:
            doc = library.get_document(str(claimed), ctx.user_id)  # only the user's own
        except NotFoundError:
            doc = None
    if doc is not None:
        old = ctx.repo.note_of_document(ctx.user_id, doc.id)
        if old is not None and ctx.vault.stat(old.note_path) is None:
            return _moved(ctx, old, note_path, raw, body, stat, n, base)
        if old is None and doc.status == "ready":
            return _adopt(ctx, doc, note_path, raw, body, stat, n, base)
    if not body.strip():
        result = {**base, "status": "error", "message": "the new note is empty"}
        ctx.repo.save(
            NoteState(
                ctx.user_id,
                note_path,
                None,
                status="error",
                vault_hash=sha256(raw),
                message=result["message"],
                last_job_id=ctx.job_id,
                last_item=n,
                last_result=result,
            )
        )
        return result
    name = PurePosixPath(note_path).stem
    doc_id = str(uuid.uuid5(_NAMESPACE, f"{ctx.user_id}\x1f{ctx.job_id}\x1f{note_path}"))
    job_id = _create_document(ctx, doc_id, name, body)
    result = {
        **base,
        "document_id": doc_id,
        "title": name,
        "status": "new",
        "message": "a new document, queued for processing",
        "process_job": job_id,
    }
    ctx.names[name.lower()] = doc_id
    ctx.repo.save(
        NoteState(
            ctx.user_id,
            note_path,
            doc_id,
            status="synced",
            vault_hash=sha256(raw),
            vault_mtime_ns=stat[0] if stat else None,
            vault_size=stat[1] if stat else None,
            body_hash=sha256(body),
            library_sig=None,
            last_job_id=ctx.job_id,
            last_item=n,
            last_result=result,
            synced_at=_now(),
        )
    )
    return result


def _create_document(ctx: Context, doc_id: str, title: str, body: str) -> str | None:
    """A document for a new note (the pipeline processes it); idempotent by id."""
    from rhizome.jobs.client import enqueue

    library = Library(ctx.store)
    try:
        library.get_document(doc_id, ctx.user_id)
        exists = True
    except NotFoundError:
        exists = False
    if not exists:
        library.create_document(
            user_id=ctx.user_id,
            title=title,
            source_type="markdown",
            document_id=doc_id,
            metadata={"filename": f"{title}.md", "title_given": True, "origin": "obsidian"},
        )
    folder = f"documents/{ctx.user_id}/{doc_id}"
    key = f"{folder}/source.md"
    ctx.storage.put(key, body.encode("utf-8"))
    library.update_document(doc_id, ctx.user_id, metadata={"source_key": key})
    [job] = enqueue(
        ctx.store,
        "process_document",
        {"document_id": doc_id, "source_key": key, "filename": f"{title}.md"},
        user_id=ctx.user_id,
        entity_type="document",
        entity_id=doc_id,
        dedupe_key=f"process_document:{doc_id}",
    )
    return job.id


def _moved(
    ctx: Context,
    old: NoteState,
    note_path: str,
    raw: bytes,
    body: str,
    stat: tuple[int, int] | None,
    n: int,
    base: dict[str, Any],
) -> dict[str, Any]:
    result = {
        **base,
        "document_id": old.document_id,
        "title": old.document.get("title"),
        "status": "moved",
        "message": f"the note moved from {old.note_path}",
    }
    moved = NoteState(
        ctx.user_id,
        note_path,
        old.document_id,
        status=old.status if old.status != "vault_deleted" else "synced",
        vault_hash=old.vault_hash,
        vault_mtime_ns=None,
        vault_size=None,
        body_hash=old.body_hash,
        library_sig=old.library_sig,
        derived_sig=old.derived_sig,
        last_job_id=ctx.job_id,
        last_item=n,
        last_result=result,
        synced_at=old.synced_at,
    )
    if sha256(body) == old.body_hash:
        moved.vault_hash = sha256(raw)
        moved.vault_mtime_ns, moved.vault_size = stat if stat else (None, None)
    else:
        result["message"] += "; its text changed too: the next sync applies it"
    ctx.repo.save(moved, replaces=old.note_path)
    return result


def _adopt(
    ctx: Context,
    doc: Document,
    note_path: str,
    raw: bytes,
    body: str,
    stat: tuple[int, int] | None,
    n: int,
    base: dict[str, Any],
) -> dict[str, Any]:
    """A note that names one of the user's documents that has no note yet: linked; a
    conflict when the texts differ (there is no common version to compare with)."""
    finish_content(ctx.store, ctx.storage, doc.id, ctx.user_id)
    content = _content(ctx.storage, doc)
    same = sha256(body) == sha256(content)
    row = ctx.repo.document_row(ctx.user_id, doc.id) or {}
    result = {
        **base,
        "document_id": doc.id,
        "title": doc.title,
        "status": "adopted" if same else "conflict",
        "message": "linked to its document"
        if same
        else "this note names a document whose text differs: keep the vault's or the "
        "library's version",
    }
    ctx.repo.save(
        NoteState(
            ctx.user_id,
            note_path,
            doc.id,
            status="synced" if same else "conflict",
            vault_hash=sha256(raw) if same else None,
            vault_mtime_ns=stat[0] if stat and same else None,
            vault_size=stat[1] if stat and same else None,
            body_hash=sha256(body) if same else None,
            library_sig=library_sig(row) if same else None,
            message=None if same else result["message"],
            last_job_id=ctx.job_id,
            last_item=n,
            last_result=result,
            synced_at=_now(),
        )
    )
    return result


def sync_summary(results: Sequence[dict[str, Any]], scanned: dict[str, Any]) -> dict[str, Any]:
    """Counts of a sync's results by status, with the unchanged notes of the scan."""
    counts: dict[str, int] = {}
    for r in results:
        key = str(r.get("status") or "unknown")
        counts[key] = counts.get(key, 0) + 1
    if scanned.get("unchanged"):
        counts["unchanged"] = counts.get("unchanged", 0) + int(scanned["unchanged"])
    if scanned.get("deleted_known"):
        counts["deleted"] = counts.get("deleted", 0) + int(scanned["deleted_known"])
    for key in ("processing", "failed"):
        if scanned.get(key):
            counts[key] = int(scanned[key])
    recovery = {"matched": 0, "needs_review": 0, "unmatched": 0}
    for r in results:
        for k, v in (r.get("highlights") or {}).items():
            recovery[k] = recovery.get(k, 0) + int(v)
    return {"counts": counts, "highlight_recovery": recovery}
