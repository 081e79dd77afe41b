"""Shared by ``detect_connections`` and ``reprocess_connections``: run the connection
engines for one document against the rest of the user's library and store the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rhizome.library.repo import Library
from rhizome.pipeline.connect import ChunkView, Weights, detect_connections


def find_for_document(
    library: Library,
    document_id: str,
    user_id: str,
    *,
    weights: Weights | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """The connections of one document's chunks to the rest of the library."""
    rows = library.library_chunks(user_id)
    new = [_view(r) for r in rows if r["document_id"] == document_id]
    rest = [_view(r) for r in rows if r["document_id"] != document_id]
    if not new or not rest:
        return []
    found = detect_connections(new, rest, weights=weights or Weights(), progress=progress)
    return [
        {
            "source_chunk_id": f.source_chunk_id,
            "target_chunk_id": f.target_chunk_id,
            "source_document_id": f.source_document_id,
            "target_document_id": f.target_document_id,
            "scores": f.scores,
            "combined": f.combined,
            "reason": f.reason,
        }
        for f in found
    ]


def _view(row: dict[str, Any]) -> ChunkView:
    return ChunkView(
        id=row["id"],
        document_id=row["document_id"],
        text=row["text"],
        embedding=row["embedding"],
        document_title=row.get("document_title") or "",
    )
