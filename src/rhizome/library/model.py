"""Typed records of the library tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rhizome.jobs.model import parse_time

if TYPE_CHECKING:  # numpy is imported where vectors are made (not by a starting worker)
    import numpy as np

DOCUMENT_STATUSES = ("pending", "processing", "ready", "failed")


def _json(value: Any, default: Any) -> Any:
    if value is None:
        return default
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


@dataclass
class Document:
    id: str
    user_id: str
    title: str
    source_type: str
    status: str
    storage_folder: str
    author: str | None = None
    source_path: str | None = None
    source_url: str | None = None
    word_count: int | None = None
    page_count: int | None = None
    chunk_count: int | None = None
    error_message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Document:
        return cls(
            id=str(row["id"]),
            user_id=row["user_id"],
            title=row["title"],
            source_type=row["source_type"],
            status=row["status"],
            storage_folder=row["storage_folder"],
            author=row.get("author"),
            source_path=row.get("source_path"),
            source_url=row.get("source_url"),
            word_count=row.get("word_count"),
            page_count=row.get("page_count"),
            chunk_count=row.get("chunk_count"),
            error_message=row.get("error_message"),
            metadata=_json(row.get("metadata"), {}),
            created_at=parse_time(row.get("created_at")),
            updated_at=parse_time(row.get("updated_at")),
        )

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("created_at", "updated_at"):
            value = out[key]
            out[key] = value.isoformat() if value else None
        return out


@dataclass
class Chunk:
    id: str
    document_id: str
    user_id: str
    index: int
    text: str
    start: int
    end: int
    token_count: int
    heading_path: list[str] = field(default_factory=list)
    embedding: np.ndarray | None = None
    embedding_model: str | None = None
    """The model (and precision) that made ``embedding`` (``Embedder.name``)."""
    enrichment: dict[str, Any] = field(default_factory=dict)
    """The enrichment fields that are set (:data:`ENRICHMENT_FIELDS`): themes, importance,
    summary, concepts, polarity (stance), domain."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Chunk:
        blob = row.get("embedding")
        return cls(
            id=str(row["id"]),
            document_id=str(row["document_id"]),
            user_id=row["user_id"],
            index=int(row["chunk_index"]),
            text=row["text"],
            start=int(row["start_offset"]),
            end=int(row["end_offset"]),
            token_count=int(row["token_count"]),
            heading_path=list(_json(row.get("heading_path"), [])),
            embedding=decode_vector(blob),
            embedding_model=row.get("embedding_model"),
            enrichment=enrichment_of(row),
        )

    def to_dict(self) -> dict[str, Any]:
        """The chunk as ``chunks.json`` (v1.0) holds it; enrichment fields only when set."""
        return {
            "id": self.id,
            "document_id": self.document_id,
            "index": self.index,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "token_count": self.token_count,
            "heading_path": self.heading_path,
            "has_embedding": self.embedding is not None,
            **self.enrichment,
        }


ENRICHMENT_FIELDS = ("themes", "importance", "summary", "concepts", "polarity", "domain")
"""Chunk fields an enrichment step (or an import with merge_smart) sets; columns of the
same names. ``polarity`` is the chunk's stance, from -1 (against) to 1 (for)."""
_JSON_ENRICHMENT = ("themes", "concepts")


def enrichment_of(row: dict[str, Any]) -> dict[str, Any]:
    """The enrichment fields of a ``chunks`` row that are set."""
    out: dict[str, Any] = {}
    for name in ENRICHMENT_FIELDS:
        value = row.get(name)
        if value is None:
            continue
        out[name] = _json(value, None) if name in _JSON_ENRICHMENT else value
    return out


@dataclass
class Connection:
    id: str
    user_id: str
    source_chunk_id: str
    target_chunk_id: str
    source_document_id: str
    target_document_id: str
    engine_scores: dict[str, float]
    combined_score: float
    reason: str | None = None
    user_validated: bool = False
    created_at: datetime | None = None
    starred: bool = False
    rejected: bool = False
    decided_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Connection:
        return cls(
            id=str(row["id"]),
            user_id=row["user_id"],
            source_chunk_id=str(row["source_chunk_id"]),
            target_chunk_id=str(row["target_chunk_id"]),
            source_document_id=str(row["source_document_id"]),
            target_document_id=str(row["target_document_id"]),
            engine_scores=_json(row.get("engine_scores"), {}),
            combined_score=float(row["combined_score"]),
            reason=row.get("reason"),
            user_validated=bool(row.get("user_validated")),
            created_at=parse_time(row.get("created_at")),
            starred=bool(row.get("starred")),
            rejected=bool(row.get("rejected")),
            decided_at=parse_time(row.get("decided_at")),
        )

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("created_at", "decided_at"):
            value = out[key]
            out[key] = value.isoformat() if value else None
        return out


def encode_vector(vector: np.ndarray) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype="<f4").tobytes()


def legacy_embedding_model(dim: int) -> str | None:
    """The model of vectors stored without a name (before library migration 0005, or in
    an older export): 384 values are all-MiniLM-L6-v2 at full precision, 256 the hash
    embedder; anything else is unknown (re-embedded by a reprocess)."""
    return {384: "all-MiniLM-L6-v2", 256: "hash-bow-256"}.get(int(dim))


def decode_vector(blob: Any) -> np.ndarray | None:
    if blob is None:
        return None
    import numpy as np

    return np.frombuffer(bytes(blob), dtype="<f4")
