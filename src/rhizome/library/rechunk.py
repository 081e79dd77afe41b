"""Replacing a document's markdown (an Obsidian edit) in one transactional swap, with
highlight recovery and connection remapping.

:func:`swap_content` does all the work that can fail *before* anything changes: chunk the
new markdown, embed the chunks (reusing the vectors of chunks whose text did not change),
place every highlight again (:mod:`rhizome.library.highlight_match`) and work out where
the user's decided connections go. Then, in **one database transaction**, the old chunks
are replaced by the new ones, the highlights and connections are updated and the caller's
own rows (the sync state) are written. Any error before the commit rolls everything back:
the old chunks, highlights, connections and ``content.md`` stay as they were.

``content.md`` (and ``chunks.json``, ``manifest.json``) change after the commit: the new
markdown is first staged as ``content.next.md`` and the document row marks it pending in
the same transaction; :func:`finish_content` moves it into place and clears the mark. A
crash in between is rolled forward by the next :func:`finish_content` (a sync calls it
first), so storage always ends up matching the database.

**Connection remapping.** A decided connection whose passage text survived moves to the
new chunk with the same text. A validated or starred one whose passage changed moves to
the new chunk with the most similar embedding: silently at cosine ≥ 0.95
(``remap_status='moved'``), flagged at 0.85 to 0.95 (``review``), and below that kept on the
nearest chunk but marked ``lost`` with its old passage (``remap_text``). Rejections are
keyed by content (``connection_rejections``) and need no remapping. The other connections
go with the old chunks; the caller queues a ``detect_connections`` to find them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

from rhizome.errors import InvalidInputError
from rhizome.jobs.model import parse_time
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.base import Tx
from rhizome.jobs.store.queries import load_queries
from rhizome.library.connections import ConnectionDetail, text_key
from rhizome.library.highlight_match import Matcher, OffsetMap, spans_of, surroundings
from rhizome.library.highlights import Highlight, dumps
from rhizome.library.model import Chunk, Document, encode_vector
from rhizome.library.portability import chunks_json
from rhizome.library.repo import Library
from rhizome.storage import Storage

MOVE_SILENTLY = 0.95
"""A validated connection moves to a chunk this similar without a flag."""
MOVE_FLAGGED = 0.85
"""Down to this similarity it moves, flagged for review; below, it is marked lost."""
EMBED_BATCH = 16
STAGED = "content.next.md"
PENDING_KEY = "pending_content"


@dataclass
class SwapResult:
    chunks: int = 0
    embedded: int = 0
    reused_embeddings: int = 0
    highlights: dict[str, int] = field(
        default_factory=lambda: {"matched": 0, "needs_review": 0, "unmatched": 0}
    )
    highlight_details: list[dict[str, Any]] = field(default_factory=list)
    connections: dict[str, int] = field(
        default_factory=lambda: {"kept": 0, "moved": 0, "review": 0, "lost": 0, "dropped": 0}
    )
    content_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "embedded": self.embedded,
            "reused_embeddings": self.reused_embeddings,
            "highlights": dict(self.highlights),
            "highlight_details": list(self.highlight_details),
            "connections": dict(self.connections),
            "content_sha256": self.content_sha256,
        }


@dataclass
class _Plan:
    rows: list[dict[str, Any]]
    vectors: np.ndarray
    highlight_updates: list[dict[str, Any]]
    result: SwapResult
    model: str


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _chunk(content: str) -> list[dict[str, Any]]:
    from rhizome.config import load_settings
    from rhizome.handlers.process_document import MAX_CHUNK_CHARS, ProcessInput
    from rhizome.pipeline.chunk import chunk_markdown

    settings = load_settings()
    defaults = ProcessInput(document_id="-")
    words = len(content.split())
    if words > settings.max_document_words:
        raise InvalidInputError(
            f"The note has {words:,} words; the limit is {settings.max_document_words:,}.",
            "Split it, or raise RHIZOME_MAX_DOCUMENT_WORDS.",
        )
    pieces = chunk_markdown(
        content, max_words=defaults.max_words, overlap_words=defaults.overlap_words
    )
    if len(pieces) > settings.max_document_chunks:
        raise InvalidInputError(
            f"The note makes {len(pieces):,} chunks; the limit is "
            f"{settings.max_document_chunks:,}.",
            "Split it, or raise RHIZOME_MAX_DOCUMENT_CHUNKS.",
        )
    if any(len(p.text) > MAX_CHUNK_CHARS for p in pieces):
        raise InvalidInputError(
            "The note holds a passage without a break between words that is too long to be "
            "readable text.",
            "Check the note for pasted binary data.",
        )
    return [
        {
            "index": p.index,
            "text": p.text,
            "start": p.start,
            "end": p.end,
            "token_count": p.token_count,
            "heading_path": p.heading_path,
        }
        for p in pieces
    ]


def _embedding_model(storage: Storage, folder: str) -> str | None:
    try:
        manifest = json.loads(storage.get(f"{folder}/manifest.json"))
    except (FileNotFoundError, ValueError):
        return None
    model = manifest.get("embedding_model") if isinstance(manifest, dict) else None
    return str(model) if model else None


def _plan(
    store: SqlJobStore,
    storage: Storage,
    doc: Document,
    user_id: str,
    old_content: str,
    new_content: str,
    progress: Callable[[str], None] | None,
) -> _Plan:
    from rhizome.pipeline.embed import get_embedder

    library = Library(store)
    pieces = _chunk(new_content)
    if not pieces:
        raise InvalidInputError(
            "The note has no text: it would empty the document.",
            "Restore the note's text, or delete the document in Rhizome if that is what you want.",
        )
    old_chunks = library.list_chunks(doc.id, user_id)
    embedder = get_embedder()
    reuse: dict[str, np.ndarray] = {}
    if _embedding_model(storage, doc.storage_folder) == embedder.name:
        for c in old_chunks:
            if c.embedding is not None and c.embedding_model in (None, embedder.name):
                reuse.setdefault(text_key(c.text), c.embedding)
    result = SwapResult(chunks=len(pieces), content_sha256=_sha(new_content))
    vectors: list[np.ndarray | None] = [reuse.get(text_key(p["text"])) for p in pieces]
    missing = [i for i, v in enumerate(vectors) if v is None]
    result.reused_embeddings = len(pieces) - len(missing)
    for n in range(0, len(missing), EMBED_BATCH):
        batch = missing[n : n + EMBED_BATCH]
        embedded = embedder.embed([pieces[i]["text"][:8000] for i in batch])
        for i, vec in zip(batch, embedded, strict=True):
            vectors[i] = np.asarray(vec, dtype=np.float32)
        result.embedded += len(batch)
        if progress is not None:
            progress(f"Embedding chunk {min(n + EMBED_BATCH, len(missing)):,} of {len(missing):,}")
    matrix = np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
    rows = [
        {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "document_id": doc.id,
            "chunk_index": int(p["index"]),
            "text": p["text"],
            "heading_path": json.dumps(list(p["heading_path"]), ensure_ascii=False),
            "start_offset": int(p["start"]),
            "end_offset": int(p["end"]),
            "token_count": int(p["token_count"]),
        }
        for p in pieces
    ]
    updates = _recover_highlights(store, doc, user_id, old_content, new_content, rows, result)
    return _Plan(
        rows=rows, vectors=matrix, highlight_updates=updates, result=result, model=embedder.name
    )


def _recover_highlights(
    store: SqlJobStore,
    doc: Document,
    user_id: str,
    old_content: str,
    new_content: str,
    rows: list[dict[str, Any]],
    result: SwapResult,
) -> list[dict[str, Any]]:
    from rhizome.library.highlights import Highlights

    highlights = Highlights(store).find(user_id, doc.id, limit=1_000_000)
    if not highlights:
        return []
    spans = [(str(r["id"]), int(r["start_offset"]), int(r["end_offset"])) for r in rows]
    matcher = Matcher(new_content, [(s, e) for _, s, e in spans])
    mapping = OffsetMap(old_content, new_content) if old_content else None
    updates: list[dict[str, Any]] = []
    for h in highlights:
        expected = before = after = None
        if (
            mapping is not None
            and h.start is not None
            and h.end is not None
            and 0 <= h.start < h.end <= len(old_content)
            and (old_content[h.start : h.end] == h.text or h.status == "needs_review")
        ):
            expected = mapping(h.start)
            before, after = surroundings(old_content, h.start, h.end)
        found = matcher.find(h.text, expected=expected, before=before, after=after)
        updates.append(_highlight_update(h, found, new_content, spans))
        result.highlights[found.status] += 1
        result.highlight_details.append(
            {
                "id": h.id,
                "status": found.status,
                "method": found.method,
                "confidence": round(found.confidence, 3),
                "reason": found.reason,
            }
        )
    return updates


def _highlight_update(
    h: Highlight, found: Any, content: str, spans: Sequence[tuple[str, int, int]]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": h.id,
        "user_id": h.user_id,
        "start_offset": h.start,
        "end_offset": h.end,
        "text": h.text,
        "original_text": None,
        "status": found.status,
        "match_method": found.method,
        "confidence": round(float(found.confidence), 4),
        "match_reason": found.reason,
        "chunk_ids": dumps([]),
        "chunk_id": None,
    }
    if found.status == "unmatched" or found.start is None:
        return row  # offsets untouched, the reason kept
    ids = spans_of(spans, found.start, found.end)
    row.update(start_offset=found.start, end_offset=found.end, chunk_ids=dumps(ids))
    row["chunk_id"] = ids[0] if ids else None
    passage = content[found.start : found.end]
    if found.status == "matched":
        if passage != h.text:
            row["original_text"] = h.text
            row["text"] = passage
    else:
        row["match_reason"] = (
            f"a similar passage was found (similarity {found.confidence:.2f}): accept or reject it"
        )
    return row


def _remap(
    tx: Tx,
    doc_id: str,
    user_id: str,
    old_vectors: dict[str, np.ndarray],
    rows: list[dict[str, Any]],
    vectors: np.ndarray,
    result: SwapResult,
    decided: list[dict[str, Any]],
) -> None:
    """Re-create the decided connections on the new chunks (see the module doc)."""
    by_text: dict[str, str] = {}
    for r in rows:
        by_text.setdefault(text_key(r["text"]), str(r["id"]))
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.where(norms == 0, 1, norms)[:, None]
    texts = [r["text"] for r in rows]
    now = datetime.now(UTC)

    def nearest(old_chunk_id: str, old_text: str) -> tuple[str, float]:
        vec = old_vectors.get(old_chunk_id)
        if vec is not None and len(vec) == unit.shape[1]:
            v = np.asarray(vec, dtype=np.float32)
            v = v / (np.linalg.norm(v) or 1.0)
            sims = unit @ v
            j = int(np.argmax(sims))
            return str(rows[j]["id"]), float(sims[j])
        best = process.extractOne(old_text, texts, scorer=fuzz.ratio)
        if best is None:
            return str(rows[0]["id"]), 0.0
        return str(rows[int(best[2])]["id"]), float(best[1]) / 100.0

    for raw in decided:
        conn = ConnectionDetail.from_row(raw)
        keep_close = conn.validated or conn.starred
        source, target = conn.source_chunk_id, conn.target_chunk_id
        score = 1.0
        moved_text: str | None = None
        lost = False
        for side in ("source", "target"):
            if getattr(conn, f"{side}_document_id") != doc_id:
                continue
            old_id = getattr(conn, f"{side}_chunk_id")
            old_text = getattr(conn, f"{side}_text")
            same = by_text.get(text_key(old_text))
            if same is not None:
                new_id = same
            elif keep_close:
                new_id, sim = nearest(old_id, old_text)
                score = min(score, sim)
                moved_text = old_text
            else:
                lost = True
                break
            if side == "source":
                source = new_id
            else:
                target = new_id
        if lost or source == target:
            result.connections["dropped"] += 1
            continue
        status = None
        if moved_text is not None:
            status = "moved" if score >= MOVE_SILENTLY else "review"
            if score < MOVE_FLAGGED:
                status = "lost"
        params = {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "source_chunk_id": source,
            "target_chunk_id": target,
            "source_document_id": conn.source_document_id,
            "target_document_id": conn.target_document_id,
            "engine_scores": conn.engine_scores,
            "combined_score": conn.combined_score,
            "reason": conn.reason,
            "validated": conn.validated,
            "starred": conn.starred,
            "rejected": conn.rejected,
            "decided_at": parse_time(conn.decided_at) or now,
            "found_at": None,
        }
        if tx.run("conn_insert", params) != 1:
            result.connections["dropped"] += 1
            continue
        if status is None:
            result.connections["kept"] += 1
            continue
        result.connections[status] += 1
        tx.run(
            "sync_mark_remap",
            {
                "user_id": user_id,
                "id": params["id"],
                "remap_status": status,
                "remap_score": round(score, 4),
                "remap_text": moved_text,
            },
        )


def swap_content(
    store: SqlJobStore,
    storage: Storage,
    document_id: str,
    user_id: str,
    new_content: str,
    *,
    in_transaction: Callable[[Tx, SwapResult], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SwapResult:
    """Make ``new_content`` the document's markdown: re-chunk, re-embed, recover the
    highlights and remap the decided connections in one transaction (see the module doc).
    ``in_transaction(tx, result)`` runs inside that transaction just before the commit
    (the caller's own rows); an error there rolls everything back too."""
    library = Library(store)
    doc = library.get_document(document_id, user_id)
    finish_content(store, storage, doc.id, user_id)  # a crashed earlier swap first
    doc = library.get_document(document_id, user_id)
    try:
        old_content = storage.get(f"{doc.storage_folder}/content.md").decode("utf-8")
    except FileNotFoundError:
        old_content = ""
    plan = _plan(store, storage, doc, user_id, old_content, new_content, progress)
    old_vectors = {
        c.id: c.embedding for c in library.list_chunks(doc.id, user_id) if c.embedding is not None
    }
    staged = f"{doc.storage_folder}/{STAGED}"
    storage.put(staged, new_content.encode("utf-8"))
    queries = load_queries(store.dialect, "rhizome.library")
    result = plan.result
    try:
        with store.transaction(queries) as tx:
            tx.one("conn_lock_user", {"user_id": user_id})  # it inserts connections
            decided = tx.all(
                "conn_decided_of_document", {"document_id": doc.id, "user_id": user_id}
            )
            tx.run("delete_chunks", {"document_id": doc.id, "user_id": user_id})
            for n in range(0, len(plan.rows), 500):
                tx.many("insert_chunk", plan.rows[n : n + 500])
            tx.many(
                "set_embedding",
                [
                    {
                        "id": r["id"],
                        "user_id": user_id,
                        "embedding": encode_vector(v),
                        "model": plan.model,
                    }
                    for r, v in zip(plan.rows, plan.vectors, strict=True)
                ],
            )
            _remap(tx, doc.id, user_id, old_vectors, plan.rows, plan.vectors, result, decided)
            for update in plan.highlight_updates:
                tx.run("sync_update_highlight", update)
            tx.run(
                "conn_touch_content",
                {"document_id": doc.id, "user_id": user_id, "changed_at": datetime.now(UTC)},
            )
            tx.one(
                "update_document",
                {
                    "id": doc.id,
                    "user_id": user_id,
                    "status": "ready",
                    "title": None,
                    "author": None,
                    "word_count": len(new_content.split()),
                    "page_count": None,
                    "chunk_count": len(plan.rows),
                    "error_message": None,
                    "clear_error": True,
                    "metadata": {PENDING_KEY: result.content_sha256},
                },
            )
            if in_transaction is not None:
                in_transaction(tx, result)
    except BaseException:
        with contextlib.suppress(Exception):  # the staged copy is only read after a commit
            storage.delete(staged)
        raise
    finish_content(store, storage, doc.id, user_id)
    return result


def finish_content(
    store: SqlJobStore,
    storage: Storage,
    document_id: str,
    user_id: str,
    *,
    doc: Document | None = None,
) -> bool:
    """Move a committed swap's staged markdown into ``content.md`` and rewrite
    ``chunks.json`` and ``manifest.json`` from the database; True when there was one.
    Idempotent: safe to call at any time (a sync calls it for each changed note).
    ``doc``: the document's row, when the caller just read it."""
    library = Library(store)
    if doc is None or doc.id != document_id:
        doc = library.get_document(document_id, user_id)
    pending = doc.metadata.get(PENDING_KEY)
    staged = f"{doc.storage_folder}/{STAGED}"
    if not pending:
        return False
    try:
        raw = storage.get(staged)
    except FileNotFoundError:
        raw = None
    if raw is not None and hashlib.sha256(raw).hexdigest() == pending:
        storage.put(f"{doc.storage_folder}/content.md", raw)
    chunks = library.list_chunks(doc.id, user_id)
    _write_outputs(storage, doc, chunks, str(pending))
    library.update_document(doc.id, user_id, metadata={PENDING_KEY: None})
    if raw is not None:
        storage.delete(staged)
    return True


def _write_outputs(storage: Storage, doc: Document, chunks: list[Chunk], sha: str) -> None:
    from rhizome.pipeline.embed import get_embedder

    folder = doc.storage_folder
    storage.put(f"{folder}/chunks.json", chunks_json(doc.id, chunks))
    try:
        manifest = json.loads(storage.get(f"{folder}/manifest.json"))
        if not isinstance(manifest, dict):
            manifest = {}
    except (FileNotFoundError, ValueError):
        manifest = {"version": "1.0", "document_id": doc.id, "files": []}
    manifest.update(
        chunk_count=len(chunks),
        content_sha256=sha,
        embedding_model=get_embedder().name,
        updated_at=datetime.now(UTC).isoformat(),
    )
    files = set(manifest.get("files") or []) | {"content.md", "chunks.json", "manifest.json"}
    manifest["files"] = sorted(files)
    storage.put(f"{folder}/manifest.json", json.dumps(manifest, indent=1).encode())
