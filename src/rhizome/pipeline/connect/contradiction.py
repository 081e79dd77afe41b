"""Contradiction detection: two claims about the same concepts with opposing stance.

Each chunk is split into sentences ("claims"). A claim has its concepts and, per stance
axis (amount: increase/decrease, rise/fall ...; quality: safe/dangerous ...; truth:
true/false ...; attitude: support/oppose ...), an effective pole, flipped by a negation
shortly before the stance word ("does *not* increase", "*no longer* rises"). Two claims
oppose when they share concepts and hold opposite poles on an axis (or, without stance
words, when one is the negation of the other). Score = strength x concept overlap
(IDF-weighted Dice), so generic shared words count little.

Only pairs the vector index finds semantically close are compared, which keeps the
engine fast (the expensive part is one matrix multiply) and its precision reasonable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from rhizome.pipeline.connect.concepts import (
    NEGATORS,
    STANCE_LEXICON,
    ConceptIndex,
    extract_concepts,
    quote,
    rank_concepts,
    surface_forms,
    tokens,
    word_set,
)
from rhizome.pipeline.connect.index import Neighbor, VectorIndex
from rhizome.pipeline.connect.model import (
    ChunkView,
    Progress,
    build_index,
    concept_index_for,
    embeddings_of,
    report,
    unique_chunks,
)

__all__ = ["Claim", "analyze", "compare_claims", "contradiction_engine"]

_SENTENCE = re.compile("(?<=[.!?])[\"'\u201d\u2019)\\]]*\\s+|\n+")
_CLAUSE = re.compile(
    "[,;:()]|\\s[-\u2013\u2014]\\s|\\b(?:but|however|although|though|whereas|while|yet|instead)\\b",
    re.I,
)
_AUX = word_set(
    "do does did is are was were be been has have had will would can could may might "
    "should must shall"
)
_NEGATION_WINDOW = 4
_SAME_WORD_STRENGTH = 1.0  # "increases" vs "does not increase"
_ANTONYM_STRENGTH = 0.85  # "increases" vs "decreases"
_NEGATION_ONLY_STRENGTH = 0.6  # "contains X" vs "does not contain X"
_NEGATION_ONLY_MIN_OVERLAP = 0.6
_MIN_SHARED = 2  # one shared word ("thought", "kill") is too little to call a contradiction


@dataclass(frozen=True)
class Stance:
    pole: int  # +1 / -1 after negation
    lemma: str
    phrase: str  # surface words, e.g. "does not increase"


@dataclass(frozen=True)
class Claim:
    text: str
    concepts: frozenset[str]
    stances: dict[str, Stance]
    negated: bool


def _clause_stances(words: list[str]) -> tuple[dict[str, list[Stance]], bool]:
    found: dict[str, list[Stance]] = {}
    negated = False
    for i, word in enumerate(words):
        if word in NEGATORS:
            negated = True
        entries = STANCE_LEXICON.get(word)
        if not entries:
            continue
        window = range(max(0, i - _NEGATION_WINDOW), i)
        negators = [j for j in window if words[j] in NEGATORS]
        fail_to = any(
            words[j] in ("fail", "fails", "failed") and j + 1 < i and words[j + 1] == "to"
            for j in window
        )
        flip = (len(negators) + (1 if fail_to else 0)) % 2 == 1
        start = negators[0] if negators else i
        if negators and start > 0 and (words[start] == "n't" or words[start - 1] in _AUX):
            start -= 1  # "doesn't increase", "does not increase"
        phrase = " ".join(w for w in words[start : i + 1] if w != "n't")
        for axis, pole, lemma in entries:
            found.setdefault(axis, []).append(Stance(-pole if flip else pole, lemma, phrase))
    return found, negated


def analyze(text: str) -> list[Claim]:
    """Split a chunk into claims with their concepts and stances."""
    claims: list[Claim] = []
    for sentence in _SENTENCE.split(text):
        if not sentence.strip():
            continue
        per_axis: dict[str, list[Stance]] = {}
        negated = False
        for clause in _CLAUSE.split(sentence):
            found, clause_negated = _clause_stances(tokens(clause))
            negated = negated or clause_negated
            for axis, items in found.items():
                per_axis.setdefault(axis, []).extend(items)
        stances: dict[str, Stance] = {}
        for axis, items in per_axis.items():
            total = sum(s.pole for s in items)
            if total:
                pole = 1 if total > 0 else -1
                stances[axis] = next(s for s in items if s.pole == pole)
        claims.append(
            Claim(sentence.strip(), frozenset(extract_concepts(sentence)), stances, negated)
        )
    return claims


@dataclass(frozen=True)
class Opposition:
    score: float
    shared: frozenset[str]
    phrases: tuple[str, str]


def compare_claims(a: Claim, b: Claim, weight: Callable[[str], float]) -> Opposition | None:
    """How strongly claim ``b`` opposes claim ``a`` (``None`` if it does not)."""
    shared = a.concepts & b.concepts
    if len(shared) < _MIN_SHARED:
        return None
    wa = sum(weight(c) for c in a.concepts)
    wb = sum(weight(c) for c in b.concepts)
    ws = sum(weight(c) for c in shared)
    overlap = 2 * ws / (wa + wb) if wa + wb > 0 else 0.0
    best: tuple[float, tuple[str, str]] | None = None
    for axis in sorted(a.stances.keys() & b.stances.keys()):
        sa, sb = a.stances[axis], b.stances[axis]
        if sa.pole == sb.pole:
            continue
        strength = _SAME_WORD_STRENGTH if sa.lemma == sb.lemma else _ANTONYM_STRENGTH
        if best is None or strength > best[0]:
            best = (strength, (sa.phrase, sb.phrase))
    if (
        best is None
        and not a.stances
        and not b.stances
        and a.negated != b.negated
        and overlap >= _NEGATION_ONLY_MIN_OVERLAP
    ):
        best = (_NEGATION_ONLY_STRENGTH, ("", ""))
    if best is None:
        return None
    return Opposition(best[0] * overlap, shared, best[1])


def contradiction_engine(
    new: Sequence[ChunkView],
    library: Sequence[ChunkView],
    *,
    index: VectorIndex | None = None,
    concepts_index: ConceptIndex | None = None,
    top_k: int = 5,
    candidates: int = 10,
    min_similarity: float = 0.3,
    min_score: float = 0.3,
    progress: Progress | None = None,
    pool: Mapping[str, ChunkView] | None = None,
    claims: MutableMapping[str, list[Claim]] | None = None,
    hits: Callable[[Sequence[ChunkView]], list[list[Neighbor]]] | None = None,
) -> list[tuple[str, str, float, str]]:
    """``(source_chunk_id, target_chunk_id, score 0..1, reason)`` per opposing pair.

    Candidates are each new chunk's ``candidates`` nearest chunks of other documents with
    cosine >= ``min_similarity``; of those, pairs whose best opposing claim pair scores
    >= ``min_score`` are kept, ``top_k`` per new chunk.

    ``pool`` (id -> chunk, the library and the new chunks; instead of ``library``) and
    ``claims`` (a cache of each chunk's claims, kept by the caller between calls) let a
    worker that keeps its library in memory skip the per-call work; ``hits`` (as for
    :func:`~rhizome.pipeline.connect.semantic_engine`) shares one search between engines.
    """
    total = len(new)
    report(progress, "contradiction", 0, total)
    if pool is None:
        pool = unique_chunks(library, new)
    if total == 0 or len(pool) < 2:
        report(progress, "contradiction", total, total)
        return []
    if index is None:
        index = build_index(list(pool.values()))
    if concepts_index is None:
        concepts_index = concept_index_for(list(pool.values()))
    rarity_cache: dict[str, float] = {}

    def weight(concept: str) -> float:
        value = rarity_cache.get(concept)
        if value is None:
            value = rarity_cache[concept] = max(0.05, concepts_index.rarity(concept))
        return value

    claims_cache: MutableMapping[str, list[Claim]] = {} if claims is None else claims

    def claims_of(chunk: ChunkView) -> list[Claim]:
        found = claims_cache.get(chunk.id)
        if found is None:
            found = claims_cache[chunk.id] = analyze(chunk.text)
        return found

    results: list[tuple[str, str, float, str]] = []
    step = 64
    for start in range(0, total, step):
        batch = new[start : start + step]
        if hits is None:
            neighbours = index.search(
                embeddings_of(batch),
                candidates,
                query_document_ids=[c.document_id for c in batch],
                min_score=min_similarity,
            )
        else:
            neighbours = [
                [n for n in near if n[2] >= min_similarity][:candidates] for near in hits(batch)
            ]
        for chunk, near in zip(batch, neighbours, strict=True):
            own = claims_of(chunk)
            found: list[tuple[float, str, str]] = []
            for target_id, _doc, _sim in near:
                target = pool.get(target_id)
                if target is None or target_id == chunk.id:
                    continue
                best: Opposition | None = None
                for a in own:
                    for b in claims_of(target):
                        if not (a.stances or a.negated or b.stances or b.negated):
                            continue
                        opposition = compare_claims(a, b, weight)
                        if opposition and (best is None or opposition.score > best.score):
                            best = opposition
                if best is None or best.score < min_score:
                    continue
                forms = surface_forms(chunk.text)
                named = rank_concepts(best.shared, concepts_index, limit=2)
                how = (
                    f"'{best.phrases[0]}' vs '{best.phrases[1]}'"
                    if best.phrases[0]
                    else "one claim negates the other"
                )
                reason = f"opposing stance on {quote(named, forms)}: {how}"
                found.append((round(min(1.0, best.score), 6), target_id, reason))
            found.sort(key=lambda f: (-f[0], f[1]))
            results.extend((chunk.id, t, s, r) for s, t, r in found[:top_k])
        report(progress, "contradiction", min(total, start + step), total)
    return results
