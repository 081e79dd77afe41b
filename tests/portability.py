"""Helpers of the export/import tests: libraries (from the corpus, or synthetic for speed),
a snapshot of everything a round trip must bring back, and archive surgery."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.context import is_checkpoint_key
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.worker import Worker, WorkerConfig
from rhizome.library import Library
from rhizome.library.highlights import Highlights
from rhizome.library.ingest import add_bytes
from rhizome.library.portability import chunks_json
from rhizome.storage import Storage
from tests.conftest import CORPUS

CORPUS_FILES = (
    CORPUS / "pdf" / "pdflatex-4-pages.pdf",
    CORPUS / "epub" / "wasteland.epub",
    CORPUS / "html" / "lemire.me.json.html",
)


def run_worker(store: SqlJobStore, storage: Storage) -> None:
    config = WorkerConfig(concurrency=2, burst=True, poll_seconds=0.05, heartbeat_seconds=0.5)
    Worker(store, storage, load_builtin_handlers(), config).run()


def corpus_library(store: SqlJobStore, storage: Storage, user: str = "local") -> list[str]:
    """The PDF, EPUB and HTML corpus documents, processed (hash embedder), each with a
    highlight, and connections between them of which one is validated."""
    ids = [
        add_bytes(store, storage, f.read_bytes(), filename=f.name, user_id=user).document.id
        for f in CORPUS_FILES
    ]
    run_worker(store, storage)
    library = Library(store)
    for doc_id in ids:
        assert library.get_document(doc_id, user).status == "ready", doc_id
    decorate(store, storage, ids, user)
    return ids


def decorate(store: SqlJobStore, storage: Storage, ids: list[str], user: str = "local") -> None:
    """A highlight on every document; connections between consecutive documents (the
    first of each pair validated by the user)."""
    library = Library(store)
    highlights = Highlights(store)
    for n, doc_id in enumerate(ids):
        doc = library.get_document(doc_id, user)
        content = storage.get(f"{doc.storage_folder}/content.md").decode("utf-8")
        chunk = library.list_chunks(doc_id, user)[-1]
        start = chunk.start + 1
        highlights.create(
            doc_id,
            user,
            text=content[start : start + 25],
            start=start,
            end=start + 25,
            content=content,
            note=f"note {n}",
            color="green",
            tags=["kept"],
        )
    for a, b in itertools.pairwise(ids):
        ca, cb = library.list_chunks(a, user), library.list_chunks(b, user)
        library.replace_connections(
            a,
            user,
            [
                {
                    "source_chunk_id": ca[i].id,
                    "target_chunk_id": cb[i].id,
                    "source_document_id": a,
                    "target_document_id": b,
                    "scores": {"semantic": 0.5 + i / 10},
                    "combined": 0.5 + i / 10,
                    "reason": f"pair {i}",
                }
                for i in range(min(2, len(ca), len(cb)))
            ],
        )
        first = min(library.list_connections(a, user), key=lambda c: c.combined_score)
        library.validate_connection(first.id, user)


def synthetic_library(
    store: SqlJobStore,
    storage: Storage,
    n: int,
    *,
    user: str = "local",
    chunks: int = 5,
    words: int = 60,
    seed: int = 7,
) -> list[str]:
    """``n`` ready documents written straight to the database and storage the way
    ``process_document`` leaves them (no extraction: fast), with highlights and
    connections."""
    rng = np.random.default_rng(seed)
    library = Library(store)
    ids: list[str] = []
    for i in range(n):
        paragraphs = [
            f"Paragraph {j} of document {i}. " + " ".join(f"w{i}x{j}y{k}" for k in range(words))
            for j in range(chunks)
        ]
        content = f"# Document {i}\n\n" + "\n\n".join(paragraphs) + "\n"
        doc = library.create_document(
            user_id=user,
            title=f"Document {i}",
            source_type="text",
            metadata={"filename": f"doc{i}.txt", "title_given": True},
        )
        folder = doc.storage_folder
        storage.put(f"{folder}/source.txt", content.encode())
        storage.put(f"{folder}/content.md", content.encode())
        pieces = []
        for j, p in enumerate(paragraphs):
            start = content.index(p)
            pieces.append(
                {
                    "index": j,
                    "text": p,
                    "start": start,
                    "end": start + len(p),
                    "token_count": len(p.split()),
                    "heading_path": [f"Document {i}"],
                }
            )
        stored = library.replace_chunks(doc.id, user, pieces)
        vectors = rng.standard_normal((len(stored), 16)).astype("float32")
        library.set_embeddings(user, [c.id for c in stored], vectors)
        saved = library.list_chunks(doc.id, user)
        storage.put(f"{folder}/chunks.json", chunks_json(doc.id, saved))
        meta = {"version": "1.0", "document_id": doc.id, "title": doc.title, "source_type": "text"}
        storage.put(f"{folder}/metadata.json", json.dumps(meta).encode())
        storage.put(
            f"{folder}/manifest.json",
            json.dumps(
                {"version": "1.0", "document_id": doc.id, "chunk_count": len(saved)}
            ).encode(),
        )
        library.update_document(
            doc.id, user, status="ready", chunk_count=len(saved), word_count=len(content.split())
        )
        ids.append(doc.id)
    decorate(store, storage, ids, user)
    return ids


def snapshot(store: SqlJobStore, storage: Storage, user: str = "local") -> dict[str, Any]:
    """Everything an export/import round trip must bring back, comparable with ``==``."""
    library = Library(store)
    docs = sorted(library.list_documents(user, limit=100_000), key=lambda d: d.id)
    out: dict[str, Any] = {"documents": {}, "chunks": {}, "highlights": {}, "connections": {}}
    for d in docs:
        out["documents"][d.id] = (
            d.title,
            d.author,
            d.source_type,
            d.status,
            d.chunk_count,
            d.word_count,
            d.page_count,
            json.dumps(d.metadata, sort_keys=True),
        )
        out["chunks"][d.id] = [
            (
                c.id,
                c.index,
                c.text,
                c.start,
                c.end,
                c.token_count,
                tuple(c.heading_path),
                json.dumps(c.enrichment, sort_keys=True),
                None if c.embedding is None else tuple(round(float(x), 6) for x in c.embedding),
            )
            for c in library.list_chunks(d.id, user)
        ]
        out["highlights"][d.id] = sorted(
            (
                h.id,
                h.start,
                h.end,
                h.text,
                h.note,
                h.color,
                tuple(h.tags),
                h.status,
                tuple(h.chunk_ids),
            )
            for h in Highlights(store).find(user, d.id)
        )
        out["connections"][d.id] = sorted(
            (
                c.id,
                c.source_chunk_id,
                c.target_chunk_id,
                c.user_validated,
                round(c.combined_score, 6),
                json.dumps(c.engine_scores, sort_keys=True),
                c.reason,
            )
            for c in library.list_connections(d.id, user)
        )
    out["files"] = files(storage, user)
    return out


def files(storage: Storage, user: str = "local") -> dict[str, str]:
    """SHA-256 of every file of the user's document folders (checkpoints left out)."""
    return {
        key: hashlib.sha256(storage.get(key)).hexdigest()
        for key in storage.list(f"documents/{user}")
        if not is_checkpoint_key(key)
    }


def counts(store: SqlJobStore, user: str = "local") -> dict[str, int]:
    snap = snapshot_db_only(store, user)
    return {
        k: sum(len(v) for v in snap[k].values()) for k in ("chunks", "highlights", "connections")
    }


def snapshot_db_only(store: SqlJobStore, user: str = "local") -> dict[str, Any]:
    class _NoFiles:
        def list(self, prefix: str = "") -> list[str]:
            return []

    return snapshot(store, _NoFiles(), user)  # type: ignore[arg-type]


def rewrite_zip(src: Path | bytes, changes: dict[str, bytes | None]) -> bytes:
    """The export ``src`` with entries replaced (or removed: None) and the manifest's
    sizes and hashes updated, so the archive stays a consistent export."""
    data = src if isinstance(src, bytes) else src.read_bytes()
    zin = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(zin.read("manifest.json"))
    entries = {n: zin.read(n) for n in zin.namelist() if n != "manifest.json"}
    for name, payload in changes.items():
        if payload is None:
            entries.pop(name, None)
        else:
            entries[name] = payload
    for doc in manifest["documents"]:
        prefix = doc["id"] + "/"
        doc["files"] = [
            {"name": n[len(prefix) :], "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
            for n, b in entries.items()
            if n.startswith(prefix)
        ]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, payload in entries.items():
            zout.writestr(name, payload)
        zout.writestr("manifest.json", json.dumps(manifest))
    return out.getvalue()
