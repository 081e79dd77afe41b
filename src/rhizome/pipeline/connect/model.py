"""The plain data the connection engines take and return."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: ENGINES and Weights are read by job registration
    import numpy as np
    import numpy.typing as npt

    from rhizome.pipeline.connect.concepts import ConceptIndex
    from rhizome.pipeline.connect.index import VectorIndex

__all__ = [
    "ENGINES",
    "ChunkView",
    "FoundConnection",
    "Progress",
    "Weights",
    "build_index",
    "concept_index_for",
]

ENGINES = ("semantic", "contradiction", "thematic")

Progress = Callable[[str, int, int], None]
"""progress(engine_name, done, total)"""


@dataclass
class ChunkView:
    """What the engines need of a chunk: ids, text and its normalised embedding."""

    id: str
    document_id: str
    text: str
    embedding: npt.NDArray[np.float32]
    document_title: str = ""


@dataclass
class FoundConnection:
    source_chunk_id: str
    target_chunk_id: str
    source_document_id: str
    target_document_id: str
    scores: dict[str, float] = field(default_factory=dict)
    combined: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class Weights:
    """Weights of the engines in the combined score (seed defaults)."""

    semantic: float = 0.25
    contradiction: float = 0.40
    thematic: float = 0.35

    def __post_init__(self) -> None:
        for name in ENGINES:
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"weight {name!r} must be >= 0, got {value!r}")

    def of(self, engine: str) -> float:
        return float(getattr(self, engine))


def unique_chunks(*groups: Iterable[ChunkView]) -> dict[str, ChunkView]:
    """id -> chunk over several groups; a later group wins on a repeated id."""
    out: dict[str, ChunkView] = {}
    for group in groups:
        for chunk in group:
            out[chunk.id] = chunk
    return out


def build_index(chunks: Sequence[ChunkView]) -> VectorIndex:
    """A :class:`VectorIndex` over chunk views (the embeddings are copied once)."""
    import numpy as np

    from rhizome.pipeline.connect.index import VectorIndex

    if not chunks:
        return VectorIndex()
    matrix = np.stack([np.asarray(c.embedding, dtype=np.float32) for c in chunks])
    return VectorIndex.from_arrays([c.id for c in chunks], [c.document_id for c in chunks], matrix)


def concept_index_for(chunks: Sequence[ChunkView]) -> ConceptIndex:
    """A :class:`ConceptIndex` over chunk views."""
    from rhizome.pipeline.connect.concepts import ConceptIndex

    return ConceptIndex.from_texts((c.id, c.document_id, c.text) for c in chunks)


def embeddings_of(chunks: Sequence[ChunkView]) -> npt.NDArray[np.float32]:
    import numpy as np

    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(c.embedding, dtype=np.float32) for c in chunks])


def report(progress: Progress | None, engine: str, done: int, total: int) -> None:
    if progress is not None:
        progress(engine, done, total)
