"""Reads and writes of the library tables, through the job store's connections."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rhizome.errors import NotFoundError
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.queries import load_queries
from rhizome.library.model import (
    Chunk,
    Connection,
    Document,
    encode_vector,
    legacy_embedding_model,
)

if TYPE_CHECKING:  # numpy is imported where vectors are made (not by a starting worker)
    import numpy as np


class DocumentNotFoundError(NotFoundError):
    default_hint = "List documents with `rhizome docs list` to find a valid id."


def document_folder(user_id: str, document_id: str) -> str:
    return f"documents/{user_id}/{document_id}"


class Library:
    def __init__(self, store: SqlJobStore) -> None:
        self.store = store
        self.queries = load_queries(store.dialect, "rhizome.library")

    # --- documents -------------------------------------------------------------------------

    def create_document(
        self,
        *,
        user_id: str,
        title: str,
        source_type: str,
        source_path: str | None = None,
        source_url: str | None = None,
        author: str | None = None,
        document_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Document:
        doc_id = document_id or str(uuid.uuid4())
        with self.store.transaction(self.queries) as tx:
            row = tx.one(
                "insert_document",
                {
                    "id": doc_id,
                    "user_id": user_id,
                    "title": title,
                    "author": author,
                    "source_type": source_type,
                    "source_path": source_path,
                    "source_url": source_url,
                    "storage_folder": document_folder(user_id, doc_id),
                    "metadata": metadata or {},
                },
            )
        assert row is not None
        return Document.from_row(row)

    def get_document(self, document_id: str, user_id: str) -> Document:
        doc_id = _check_id(document_id)
        with self.store.session(self.queries) as s:
            row = s.one("get_document", {"id": doc_id, "user_id": user_id})
        if row is None:
            raise DocumentNotFoundError(f"No document with id {document_id}.")
        return Document.from_row(row)

    def owns_chunk(self, chunk_id: str, user_id: str) -> bool:
        """Whether the chunk exists and is the user's (the API's check of job inputs)."""
        try:
            checked = str(uuid.UUID(str(chunk_id)))
        except ValueError:
            return False
        with self.store.session(self.queries) as s:
            return s.one("chunk_owned", {"id": checked, "user_id": user_id}) is not None

    def list_documents(
        self, user_id: str, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Document]:
        with self.store.session(self.queries) as s:
            rows = s.all(
                "list_documents",
                {"user_id": user_id, "status": status, "limit": limit, "offset": offset},
            )
        return [Document.from_row(r) for r in rows]

    def update_document(
        self,
        document_id: str,
        user_id: str,
        *,
        status: str | None = None,
        title: str | None = None,
        author: str | None = None,
        word_count: int | None = None,
        page_count: int | None = None,
        chunk_count: int | None = None,
        error_message: str | None = None,
        clear_error: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Document:
        with self.store.transaction(self.queries) as tx:
            row = tx.one(
                "update_document",
                {
                    "id": _check_id(document_id),
                    "user_id": user_id,
                    "status": status,
                    "title": title,
                    "author": author,
                    "word_count": word_count,
                    "page_count": page_count,
                    "chunk_count": chunk_count,
                    "error_message": error_message,
                    "clear_error": clear_error,
                    "metadata": metadata,
                },
            )
        if row is None:
            raise DocumentNotFoundError(f"No document with id {document_id}.")
        return Document.from_row(row)

    def delete_document(self, document_id: str, user_id: str) -> Document:
        """Delete the document row; chunks and connections go with it (cascade)."""
        with self.store.transaction(self.queries) as tx:
            row = tx.one("delete_document", {"id": _check_id(document_id), "user_id": user_id})
        if row is None:
            raise DocumentNotFoundError(f"No document with id {document_id}.")
        return Document.from_row(row)

    def stuck_documents(self, user_id: str | None = None) -> list[Document]:
        with self.store.session(self.queries) as s:
            return [Document.from_row(r) for r in s.all("stuck_documents", {"user_id": user_id})]

    def unfinished_documents(self, user_id: str | None = None) -> list[Document]:
        with self.store.session(self.queries) as s:
            rows = s.all("unfinished_documents", {"user_id": user_id})
        return [Document.from_row(r) for r in rows]

    # --- chunks --------------------------------------------------------------------------------

    def replace_chunks(
        self, document_id: str, user_id: str, chunks: Sequence[dict[str, Any]]
    ) -> list[Chunk]:
        """Idempotent: the document's chunks are exactly ``chunks`` afterwards (a re-run
        after a crash never duplicates). Each dict: index, text, start, end, token_count,
        heading_path, and optionally id. Connections of old chunks go with them, except
        the ones the user decided on (validated, starred, rejected) whose passages
        survive: they are re-attached to the new chunks with the same text."""
        from rhizome.library.connections import reattach_decisions, remember_decisions

        rows = [
            {
                "id": c.get("id") or str(uuid.uuid4()),
                "user_id": user_id,
                "document_id": document_id,
                "chunk_index": int(c["index"]),
                "text": c["text"],
                # JSON text: both dialects store it as JSON (PostgreSQL casts to jsonb)
                "heading_path": json.dumps(list(c.get("heading_path") or []), ensure_ascii=False),
                "start_offset": int(c["start"]),
                "end_offset": int(c["end"]),
                "token_count": int(c["token_count"]),
            }
            for c in chunks
        ]
        with self.store.transaction(self.queries) as tx:
            decided = remember_decisions(tx, document_id, user_id)
            tx.run("delete_chunks", {"document_id": document_id, "user_id": user_id})
            for part in _parts(rows, 500):
                tx.many("insert_chunk", part)
            reattach_decisions(tx, decided, document_id, user_id, rows)
        return [
            Chunk(
                id=r["id"],
                document_id=document_id,
                user_id=user_id,
                index=r["chunk_index"],
                text=r["text"],
                start=r["start_offset"],
                end=r["end_offset"],
                token_count=r["token_count"],
                heading_path=json.loads(r["heading_path"]),
            )
            for r in rows
        ]

    def set_embeddings(
        self,
        user_id: str,
        chunk_ids: Sequence[str],
        vectors: np.ndarray,
        *,
        model: str | None = None,
    ) -> None:
        """Store the chunks' vectors with the name of the model (and precision) that made
        them (``Embedder.name``; None: guessed from the vector size, see
        :func:`legacy_embedding_model`); connection detection never mixes two models."""
        if model is None and len(vectors):
            import numpy as np

            model = legacy_embedding_model(np.asarray(vectors).shape[-1])
        with self.store.transaction(self.queries) as tx:
            tx.many(
                "set_embedding",
                [
                    {"id": cid, "user_id": user_id, "embedding": encode_vector(vec), "model": model}
                    for cid, vec in zip(chunk_ids, vectors, strict=True)
                ],
            )

    def list_chunks(self, document_id: str, user_id: str) -> list[Chunk]:
        with self.store.session(self.queries) as s:
            rows = s.all("list_chunks", {"document_id": _check_id(document_id), "user_id": user_id})
        return [Chunk.from_row(r) for r in rows]

    def library_chunks(
        self, user_id: str, *, exclude_document: str | None = None
    ) -> list[dict[str, Any]]:
        """Every embedded chunk of the user's library (id, document_id, text, embedding,
        document_title), for connection detection."""
        from rhizome.library.model import decode_vector

        with self.store.session(self.queries) as s:
            rows = s.all("library_chunks", {"user_id": user_id, "exclude": exclude_document})
        for r in rows:
            r["id"] = str(r["id"])
            r["document_id"] = str(r["document_id"])
            r["embedding"] = decode_vector(r["embedding"])
        return rows

    # --- connections -------------------------------------------------------------------------

    def replace_connections(
        self,
        document_id: str,
        user_id: str,
        connections: Iterable[dict[str, Any]],
        *,
        keep_validated: bool = True,
    ) -> int:
        """Replace the document's connections (both directions) by ``connections`` (dicts
        with the chunk and document ids, ``scores``, ``combined``, ``reason``), keeping the
        user's decisions: validated and starred connections always stay, rejected ones
        too with ``keep_validated`` (see :meth:`Curation.save_detection`). Returns how many
        connections were given."""
        from rhizome.library.connections import Curation

        given = list(connections)
        mode = "smart" if keep_validated else "all"
        Curation(self.store).save_detection(document_id, user_id, given, mode=mode)
        return len(given)

    def list_connections(self, document_id: str, user_id: str) -> list[Connection]:
        with self.store.session(self.queries) as s:
            rows = s.all(
                "list_connections", {"document_id": _check_id(document_id), "user_id": user_id}
            )
        return [Connection.from_row(r) for r in rows]

    def count_connections(self, document_id: str, user_id: str) -> int:
        with self.store.session(self.queries) as s:
            row = s.one("count_connections", {"document_id": document_id, "user_id": user_id})
        return int(row["n"]) if row else 0

    def validate_connection(self, connection_id: str, user_id: str, value: bool = True) -> None:
        with self.store.transaction(self.queries) as tx:
            row = tx.one(
                "validate_connection",
                {"id": _check_id(connection_id), "user_id": user_id, "value": value},
            )
        if row is None:
            raise DocumentNotFoundError(f"No connection with id {connection_id}.")


def _parts(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _check_id(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise DocumentNotFoundError(f"{value!r} is not a document id.") from None
