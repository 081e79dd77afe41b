"""Helpers of the integration tests (Obsidian, Readwise): ready documents written straight
to the database and storage the way ``process_document`` leaves them (fast), a vault."""

from __future__ import annotations

import json
from pathlib import Path

from rhizome.jobs.store import SqlJobStore
from rhizome.library.repo import Library
from rhizome.library.vault import VaultRepo
from rhizome.pipeline.chunk import chunk_markdown
from rhizome.pipeline.embed import HashEmbedder
from rhizome.storage import Storage


def ready_document(
    store: SqlJobStore,
    storage: Storage,
    title: str,
    content: str,
    *,
    user: str = "local",
    author: str | None = None,
    max_words: int = 180,
) -> str:
    """A ready document with ``content`` as its markdown, chunked and embedded (hash)."""
    library = Library(store)
    doc = library.create_document(user_id=user, title=title, source_type="markdown", author=author)
    folder = doc.storage_folder
    storage.put(f"{folder}/content.md", content.encode("utf-8"))
    pieces = chunk_markdown(content, max_words=max_words, overlap_words=0)
    chunks = library.replace_chunks(
        doc.id,
        user,
        [
            {
                "index": p.index,
                "text": p.text,
                "start": p.start,
                "end": p.end,
                "token_count": p.token_count,
                "heading_path": p.heading_path,
            }
            for p in pieces
        ],
    )
    embedder = HashEmbedder()
    library.set_embeddings(user, [c.id for c in chunks], embedder.embed([c.text for c in chunks]))
    manifest = {
        "version": "1.0",
        "document_id": doc.id,
        "embedding_model": embedder.name,
        "chunk_count": len(chunks),
        "files": ["content.md"],
    }
    storage.put(f"{folder}/manifest.json", json.dumps(manifest).encode())
    library.update_document(
        doc.id, user, status="ready", chunk_count=len(chunks), word_count=len(content.split())
    )
    return doc.id


def vault_for(store: SqlJobStore, root: Path, user: str = "local", **options: object) -> Path:
    """A vault folder under ``root``, set as the user's vault."""
    vault = root / f"vault-{user}"
    (vault / ".obsidian").mkdir(parents=True, exist_ok=True)
    VaultRepo(store).save_settings(user, vault_path=str(vault), **options)  # type: ignore[arg-type]
    return vault
