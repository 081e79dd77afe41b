"""Merge the engines' findings into scored connections; ``detect_connections`` runs all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping, Sequence

from rhizome.pipeline.connect.concepts import (
    ConceptIndex,
    extract_concepts,
    quote,
    rank_concepts,
    surface_forms,
)
from rhizome.pipeline.connect.contradiction import contradiction_engine
from rhizome.pipeline.connect.index import VectorIndex
from rhizome.pipeline.connect.model import (
    ENGINES,
    ChunkView,
    FoundConnection,
    Progress,
    Weights,
    build_index,
    concept_index_for,
    unique_chunks,
)
from rhizome.pipeline.connect.semantic import DEFAULT_SEMANTIC_THRESHOLD, semantic_engine
from rhizome.pipeline.connect.thematic import thematic_engine

__all__ = ["combine", "combined_score", "detect_connections"]


def _semantic_reason(
    score: float,
    source: ChunkView,
    target: ChunkView,
    ci: ConceptIndex | None,
    cache: MutableMapping[str, set[str]] | None = None,
    forms: dict[str, dict[str, str]] | None = None,
) -> str:
    def concepts(chunk: ChunkView) -> set[str]:
        if cache is None:
            return extract_concepts(chunk.text)
        found = cache.get(chunk.id)
        if found is None:
            found = cache[chunk.id] = extract_concepts(chunk.text)
        return found

    shared = concepts(source) & concepts(target)
    text = f"similar content (cosine {score:.2f})"
    if shared:
        named = rank_concepts(shared, ci, limit=3)
        if forms is None:
            surface = surface_forms(source.text)
        elif source.id in forms:
            surface = forms[source.id]
        else:
            surface = forms[source.id] = surface_forms(source.text)
        text += f"; shared concepts {quote(named, surface)}"
    return text


def combine(
    chunks: Mapping[str, ChunkView],
    *,
    semantic: Iterable[tuple[str, str, float]] = (),
    contradiction: Iterable[tuple[str, str, float, str]] = (),
    thematic: Iterable[tuple[str, str, float, str]] = (),
    new_ids: Iterable[str] = (),
    weights: Weights = Weights(),
    min_combined: float = 0.15,
    concepts_index: ConceptIndex | None = None,
    concepts_cache: MutableMapping[str, set[str]] | None = None,
) -> list[FoundConnection]:
    """One :class:`FoundConnection` per chunk pair, kept if ``combined >= min_combined``.

    ``combined`` is the **weighted mean over the engines that judged the pair** (those
    that reported a score for it; an engine with weight 0 judges nothing):
    ``sum(w[e] * s[e]) / sum(w[e])`` over those engines. A pair found only by the semantic
    engine at cosine 0.68 scores 0.68, whatever the other weights, so scores are
    comparable across pairs found by one, two or three engines (:func:`combined_score`).
    ``scores`` holds the judging engines only.

    ``chunks`` maps every id the engines mention to its view. Pairs are directed from a
    new chunk to a library chunk; a pair between two new chunks (several new documents at
    once) is reported once. Never within a document, never a chunk with itself. Order:
    combined desc, then source id, then target id. ``concepts_cache`` keeps each chunk's
    concept strings between calls (a worker's in-memory library).
    """
    fresh = set(new_ids)
    forms: dict[str, dict[str, str]] = {}
    merged: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}

    def put(engine: str, source: str, target: str, score: float, reason: str) -> None:
        if source == target or source not in chunks or target not in chunks:
            return
        if chunks[source].document_id == chunks[target].document_id:
            return
        key = (source, target)
        if key not in merged and (target, source) in merged and {source, target} <= fresh:
            key = (target, source)
        slot = merged.setdefault(key, {})
        if engine not in slot or score > slot[engine][0]:
            slot[engine] = (score, reason)

    for source, target, score in semantic:
        put("semantic", source, target, score, "")
    for source, target, score, reason in contradiction:
        put("contradiction", source, target, score, reason)
    for source, target, score, reason in thematic:
        put("thematic", source, target, score, reason)

    found: list[FoundConnection] = []
    for (source, target), slot in merged.items():
        scores = {
            engine: round(slot[engine][0], 6)
            for engine in ENGINES
            if engine in slot and weights.of(engine) > 0
        }
        combined = combined_score(scores, weights)
        if combined is None or combined < min_combined:
            continue
        parts: list[tuple[float, str]] = []
        for engine in ENGINES:
            if engine not in scores:
                continue
            reason = slot[engine][1]
            if engine == "semantic":
                reason = _semantic_reason(
                    scores[engine],
                    chunks[source],
                    chunks[target],
                    concepts_index,
                    concepts_cache,
                    forms,
                )
            parts.append((weights.of(engine) * scores[engine], reason))
        parts.sort(key=lambda p: -p[0])
        found.append(
            FoundConnection(
                source_chunk_id=source,
                target_chunk_id=target,
                source_document_id=chunks[source].document_id,
                target_document_id=chunks[target].document_id,
                scores=scores,
                combined=combined,
                reason="; ".join(r for _, r in parts if r),
            )
        )
    found.sort(key=lambda c: (-c.combined, c.source_chunk_id, c.target_chunk_id))
    return found


def combined_score(scores: Mapping[str, float], weights: Weights = Weights()) -> float | None:
    """The weighted mean of the scores of the engines that judged a pair (the keys of
    ``scores`` with a positive weight), rounded to 6 places; None when none did.

    >>> combined_score({"semantic": 0.68})
    0.68
    >>> combined_score({"semantic": 0.8, "contradiction": 0.5})  # (0.25*0.8 + 0.4*0.5) / 0.65
    0.615385
    """
    judged = [(weights.of(e), float(s)) for e, s in scores.items() if e in ENGINES]
    total = sum(w for w, _ in judged if w > 0)
    if total <= 0:
        return None
    return round(sum(w * s for w, s in judged if w > 0) / total, 6)


def detect_connections(
    new: Sequence[ChunkView],
    library: Sequence[ChunkView],
    *,
    weights: Weights = Weights(),
    top_k: int = 5,
    min_combined: float = 0.15,
    index: VectorIndex | None = None,
    progress: Progress | None = None,
    concepts_index: ConceptIndex | None = None,
    semantic_threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
) -> list[FoundConnection]:
    """Run the three engines for the ``new`` chunks against ``library`` and combine them.

    ``library`` may include the new chunks (they are de-duplicated by id). Pass ``index``
    (a :class:`VectorIndex` of the library) and ``concepts_index`` to reuse them across
    calls; both are read, never modified. An engine whose weight is 0 is skipped.
    """
    pool = unique_chunks(library, new)
    chunks = list(pool.values())
    if index is None:
        index = build_index(chunks)
    if concepts_index is None and (weights.contradiction > 0 or weights.thematic > 0):
        concepts_index = concept_index_for(chunks)
    semantic = (
        semantic_engine(new, index, top_k=top_k, threshold=semantic_threshold, progress=progress)
        if weights.semantic > 0
        else []
    )
    contradiction = (
        contradiction_engine(
            new, chunks, index=index, concepts_index=concepts_index, top_k=top_k, progress=progress
        )
        if weights.contradiction > 0
        else []
    )
    thematic = (
        thematic_engine(
            new, chunks, index=index, concepts_index=concepts_index, top_k=top_k, progress=progress
        )
        if weights.thematic > 0
        else []
    )
    return combine(
        pool,
        semantic=semantic,
        contradiction=contradiction,
        thematic=thematic,
        new_ids=[c.id for c in new],
        weights=weights,
        min_combined=min_combined,
        concepts_index=concepts_index,
    )
