"""Semantic similarity: cosine over embeddings, top-k per new chunk, cross-document."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rhizome.pipeline.connect.index import Neighbor, VectorIndex
from rhizome.pipeline.connect.model import ChunkView, Progress, embeddings_of, report

__all__ = ["DEFAULT_SEMANTIC_THRESHOLD", "semantic_engine"]

DEFAULT_SEMANTIC_THRESHOLD = 0.55
"""For all-MiniLM-L6-v2: paragraphs on the same subject score ~0.55-0.8, unrelated
ones -0.1-0.2 (see tests/integration/test_embed_model.py)."""

_BATCH = 256


def semantic_engine(
    new: Sequence[ChunkView],
    index: VectorIndex,
    *,
    top_k: int = 5,
    threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
    progress: Progress | None = None,
    hits: Callable[[Sequence[ChunkView]], list[list[Neighbor]]] | None = None,
) -> list[tuple[str, str, float]]:
    """``(source_chunk_id, target_chunk_id, cosine)`` for each new chunk's ``top_k``
    nearest chunks of *other* documents scoring at least ``threshold``.

    The index may or may not contain the new chunks: a chunk's own document is excluded.
    Scores are cosines clipped to 0..1; order is by source (input order), score desc.

    ``hits`` (new chunks -> their nearest chunks of other documents, best first, at least
    ``top_k`` of them down to ``threshold``) lets a caller share one search between the
    engines.
    """
    total = len(new)
    report(progress, "semantic", 0, total)
    found: list[tuple[str, str, float]] = []
    if total == 0 or len(index) == 0:
        report(progress, "semantic", total, total)
        return found
    for start in range(0, total, _BATCH):
        batch = new[start : start + _BATCH]
        if hits is None:
            nearest = index.search(
                embeddings_of(batch),
                top_k,
                query_document_ids=[c.document_id for c in batch],
                min_score=threshold,
            )
        else:
            nearest = [[n for n in near if n[2] >= threshold][:top_k] for near in hits(batch)]
        for chunk, neighbours in zip(batch, nearest, strict=True):
            for target_id, _doc, score in neighbours:
                if target_id != chunk.id:
                    found.append((chunk.id, target_id, round(min(1.0, max(0.0, score)), 6)))
        report(progress, "semantic", min(total, start + _BATCH), total)
    return found
