"""Thematic bridges: an uncommon concept central to two documents on different topics.

A concept bridges documents D and E when

- it is one of the ``keyphrases`` most characteristic concepts of *both* documents
  (mentions x document rarity, i.e. TF-IDF; a word used in passing is never one),
- it is uncommon across the library: normalised IDF over *documents*
  ``ln(D/df)/ln(D) >= min_rarity`` (0.45: in at most ~D**0.55 of D documents, e.g.
  3 of 10, 63 of 2,000) — document-level, so a concept that fills one long book
  still counts as rare,
  mentioned at least ``min_mentions`` times in each document, and not general English
  (``system``, ``data``, month names ...),
- and the documents' overall topics differ (cosine of their embedding centroids
  < ``max_topic_similarity``).

Example: "entropy" joins a thermodynamics text and an information-theory text; "system"
does not. Each new chunk that mentions a bridging concept is linked to the chunk of the
other document that mentions it most. Score = ``1 - prod(1 - document rarity)`` over
the bridging concepts the two chunks share.

Found through the concept index (a few keyphrases per document, looked up in one
vectorised pass), not the vector index: the point is to link chunks that embeddings do
*not* find close.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rhizome.pipeline.connect.concepts import (
    ConceptIndex,
    concept_id,
    extract_concepts,
    generic_ids,
    is_generic,
    quote,
    rank_concepts,
    surface_forms,
)
from rhizome.pipeline.connect.index import VectorIndex
from rhizome.pipeline.connect.model import (
    ChunkView,
    Progress,
    build_index,
    concept_index_for,
    report,
    unique_chunks,
)

__all__ = ["thematic_engine"]


def _with_chunks(ci: ConceptIndex | None, chunks: Sequence[ChunkView]) -> ConceptIndex:
    """The given concept index, or a new one, holding ``chunks`` too (never mutated)."""
    if ci is None:
        return concept_index_for(chunks)
    missing = [c for c in chunks if c.id not in ci]
    if not missing:
        return ci
    extended = ci.copy()
    extended.add((c.id, c.document_id, c.text) for c in missing)
    return extended


def _bridge_score(rarities: Iterable[float]) -> float:
    miss = 1.0
    for r in rarities:
        miss *= 1.0 - r
    return 1.0 - miss


def thematic_engine(
    new: Sequence[ChunkView],
    library: Sequence[ChunkView],
    *,
    index: VectorIndex | None = None,
    concepts_index: ConceptIndex | None = None,
    top_k: int = 5,
    keyphrases: int = 15,
    min_rarity: float = 0.45,
    min_mentions: int = 2,
    max_topic_similarity: float = 0.6,
    progress: Progress | None = None,
    pool: Mapping[str, ChunkView] | None = None,
    concepts_cache: MutableMapping[str, set[str]] | None = None,
    run_cache: MutableMapping[str, Any] | None = None,
) -> list[tuple[str, str, float, str]]:
    """``(source_chunk_id, target_chunk_id, score 0..1, reason)``: at most ``top_k`` per
    new chunk, one chunk per other document.

    ``pool`` (id -> chunk, the library and the new chunks, all of them in
    ``concepts_index``; instead of ``library``) and ``concepts_cache`` (each chunk's
    concept strings, kept by the caller between calls) let a worker that keeps its
    library in memory skip the per-call work. ``run_cache`` keeps the document-level
    results (keyphrases, bridges, topic similarities) between calls over batches of the
    same new chunks against an unchanged library."""
    total = len(new)
    report(progress, "thematic", 0, total)
    indexed = pool is not None and concepts_index is not None
    if pool is None:
        pool = unique_chunks(library, new)
    if total == 0 or len(pool) < 2:
        report(progress, "thematic", total, total)
        return []
    if index is None:
        index = build_index(list(pool.values()))
    ci = _with_chunks(concepts_index, list(new) if indexed else list(pool.values()))
    generic = generic_ids()
    run: MutableMapping[str, Any] = {} if run_cache is None else run_cache
    key_cache: dict[str, dict[int, int]] = run.setdefault("keys", {})

    def keys_of(doc: str) -> dict[int, int]:
        if doc not in key_cache:
            key_cache[doc] = ci.keyphrases(
                doc,
                keyphrases,
                min_rarity=min_rarity,
                min_mentions=min_mentions,
                exclude=generic,
            )
        return key_cache[doc]

    centroids: dict[str, npt.NDArray[np.float32] | None] = run.setdefault("centroids", {})

    def centroid(doc: str) -> npt.NDArray[np.float32] | None:
        if doc not in centroids:
            found = index.centroid(doc)
            if found is None:
                vectors = [c.embedding for c in pool.values() if c.document_id == doc]
                if vectors:
                    mean = np.mean(np.stack(vectors), axis=0)
                    norm = float(np.linalg.norm(mean))
                    found = (mean / norm if norm > 0 else mean).astype(np.float32)
            centroids[doc] = found
        return centroids[doc]

    def topic_similarity(a: str, b: str) -> float:
        ca, cb = centroid(a), centroid(b)
        return 1.0 if ca is None or cb is None else float(ca @ cb)

    # 1. Document-level bridges of each new document: shared keyphrases, other topics.
    #    bridges[D][E] = {concept: {chunk of E: mentions}}
    bridges: dict[str, dict[str, dict[int, dict[str, int]]]] = run.setdefault("bridges", {})
    topics: dict[tuple[str, str], float] = run.setdefault("topics", {})
    for doc in sorted({c.document_id for c in new} - bridges.keys()):
        mine = keys_of(doc)
        found: dict[str, dict[int, dict[str, int]]] = {}
        if mine:
            occurrences: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
            for hit in ci.find(mine, min_mentions=min_mentions, exclude_document=doc):
                occurrences[hit.document_id].append((hit.concept, hit.chunk_id, hit.count))
            for other in sorted(occurrences):
                shared = mine.keys() & keys_of(other).keys()
                if not shared:
                    continue
                similarity = topic_similarity(doc, other)
                if similarity >= max_topic_similarity:
                    continue
                topics[(doc, other)] = similarity
                per_concept: dict[int, dict[str, int]] = defaultdict(dict)
                for concept, chunk_id, count in occurrences[other]:
                    if concept in shared:
                        per_concept[concept][chunk_id] = count
                found[other] = dict(per_concept)
        bridges[doc] = found

    strings: MutableMapping[str, set[str]] = {} if concepts_cache is None else concepts_cache
    rarities: dict[str | int, float] = run.setdefault("rarities", {})

    def rarity(concept: str | int) -> float:
        found = rarities.get(concept)
        if found is None:
            found = rarities[concept] = ci.document_rarity(concept)
        return found

    def concepts_of(chunk: ChunkView) -> set[str]:
        if chunk.id not in strings:
            strings[chunk.id] = extract_concepts(chunk.text)
        return strings[chunk.id]

    # 2. Chunk level: each new chunk that mentions a bridging concept -> the chunk of the
    #    other document that mentions those concepts most.
    results: list[tuple[str, str, float, str]] = []
    for done, chunk in enumerate(new, start=1):
        own = set(ci.ids_of(chunk.id).tolist())
        candidates: list[tuple[float, str, set[int]]] = []
        for per_concept in bridges.get(chunk.document_id, {}).values():
            concepts_here = own & per_concept.keys()
            if not concepts_here:
                continue
            weight: dict[str, int] = defaultdict(int)
            for concept in concepts_here:
                for target_id, count in per_concept[concept].items():
                    weight[target_id] += count
            target_id = min(weight, key=lambda t: (-weight[t], t))
            with_target = {c for c in concepts_here if target_id in per_concept[c]}
            score = _bridge_score(rarity(c) for c in with_target)
            candidates.append((score, target_id, with_target))
        candidates.sort(key=lambda c: (-c[0], c[1]))
        forms: dict[str, str] | None = None
        kept = 0
        for _score, target_id, hashed in candidates:
            if kept >= top_k:
                break
            target = pool[target_id]
            # Confirm on the real strings: a hash collision never makes a bridge.
            real = sorted(
                c
                for c in concepts_of(chunk) & concepts_of(target)
                if concept_id(c) in hashed and not is_generic(c)
            )
            if not real:
                continue
            kept += 1
            score = _bridge_score(rarity(c) for c in real)
            if forms is None:
                forms = surface_forms(chunk.text)
            similarity = topics[(chunk.document_id, target.document_id)]
            reason = (
                f"thematic bridge via {quote(rank_concepts(real, ci, limit=3), forms)}: "
                f"a key concept of both documents, uncommon in the library, across "
                f"different topics (topic similarity {similarity:.2f})"
            )
            results.append((chunk.id, target_id, round(min(1.0, score), 6), reason))
        if done % 64 == 0 or done == total:
            report(progress, "thematic", done, total)
    return results
