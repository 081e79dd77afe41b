"""The concept index a worker keeps for its whole library is updated in place (a segment
per added batch, dead rows for removed chunks, flattened again once worn): every look-up
answers exactly as an index built from scratch over the same chunks."""

from __future__ import annotations

import random

import pytest

from rhizome.pipeline.connect import ConceptIndex, concepts
from rhizome.pipeline.connect.concepts import hashed_concepts

WORDS = [f"word{i}" for i in range(300)] + ["entropy", "coral reef", "whale", "harpoon"]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(60))


def _hits(ci: ConceptIndex, wanted: list[int], mentions: int) -> list[tuple[str, str, int, int]]:
    return [
        (h.chunk_id, h.document_id, h.concept, h.count)
        for h in ci.find(wanted, min_mentions=mentions)
    ]


@pytest.mark.parametrize("sorted_from", [0, 10**9])  # big segments by binary search, or not
def test_updates_in_place_answer_like_a_fresh_index(
    sorted_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(concepts, "_SORTED_SEGMENT", sorted_from)
    rng = random.Random(7)
    docs = {f"d{d}": [(f"d{d}#{i}", f"d{d}", _text(rng)) for i in range(20)] for d in range(30)}
    index = ConceptIndex()
    for name in list(docs)[:20]:
        index.add(docs[name])
    wanted = [int(x) for x in hashed_concepts(["entropy whale word1 word2 word3 harpoon"])[0][0]]
    index.find(wanted)  # the flat view exists from now on and is kept up to date
    for _ in range(60):
        name = rng.choice(list(docs))
        roll = rng.random()
        if roll < 0.4:
            index.remove_document(name)
        elif roll < 0.8:
            index.add(docs[name])
        else:  # one chunk's text replaced
            chunk_id, doc, _ = rng.choice(docs[name])
            index.add([(chunk_id, doc, _text(rng))])
        fresh = ConceptIndex()
        fresh._rows = dict(index._rows)
        fresh._doc_chunks = index._doc_chunks
        for mentions in (1, 2):
            assert _hits(index, wanted, mentions) == _hits(fresh, wanted, mentions)


def test_vector_index_removals_in_place_keep_order_and_sums() -> None:
    """Rows removed in place (runs of kept rows moved down): the ids keep their insertion
    order, every vector and document stays right, centroids follow."""
    import numpy as np

    from rhizome.pipeline.connect import VectorIndex

    rng = np.random.default_rng(1)
    pick = random.Random(1)
    index = VectorIndex(8)
    ref: dict[str, tuple[str, np.ndarray]] = {}
    counter = 0
    for _ in range(300):
        roll = pick.random()
        if roll < 0.5 or not ref:
            n, doc = pick.randint(1, 6), f"d{pick.randint(0, 9)}"
            ids = [f"c{counter + i}" for i in range(n)]
            counter += n
            vectors = rng.standard_normal((n, 8)).astype(np.float32)
            index.add(ids, [doc] * n, vectors)
            for chunk_id, v in zip(ids, vectors, strict=True):
                ref[chunk_id] = (doc, v / np.linalg.norm(v))
        elif roll < 0.75:
            doc = f"d{pick.randint(0, 9)}"
            index.remove_document(doc)
            ref = {k: v for k, v in ref.items() if v[0] != doc}
        else:
            some = pick.sample(list(ref), min(3, len(ref)))
            index.remove(some)
            ref = {k: v for k, v in ref.items() if k not in some}
        assert index.ids == list(ref) and len(index) == len(ref)
        for chunk_id, (doc, v) in ref.items():
            assert np.allclose(index.vector(chunk_id), v, atol=1e-6)
            assert index.document_of(chunk_id) == doc
        for doc in {d for d, _ in ref.values()}:
            total = np.stack([v for d, v in ref.values() if d == doc]).astype(np.float64).sum(0)
            centroid = index.centroid(doc)
            assert centroid is not None
            assert np.allclose(centroid, total / np.linalg.norm(total), atol=1e-5)


def test_search_with_a_floor_is_exact() -> None:
    """Above a floor, the vector index sorts only the scores that pass it (when few do):
    the answer is the exact top-k of a brute force, ties by insertion order."""
    import numpy as np

    from rhizome.pipeline.connect import VectorIndex

    rng = np.random.default_rng(3)
    for _ in range(20):
        n, dim = int(rng.integers(50, 3000)), 16
        matrix = rng.standard_normal((n, dim)).astype(np.float32)
        docs = [f"d{i % 37}" for i in range(n)]
        index = VectorIndex.from_arrays([f"c{i}" for i in range(n)], docs, matrix)
        index._block_bytes = int(rng.integers(4096, 200_000))  # several row blocks
        queries = rng.standard_normal((int(rng.integers(1, 40)), dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        floor, k = float(rng.uniform(0.3, 0.8)), int(rng.integers(1, 12))
        own = [f"d{int(x)}" for x in rng.integers(0, 37, len(queries))]
        got = index.search(queries, k, query_document_ids=own, min_score=floor)
        unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        for q, hits in enumerate(got):
            scores = unit @ queries[q]
            best = sorted(
                (-float(scores[i]), i) for i in range(n) if docs[i] != own[q] and scores[i] >= floor
            )[:k]
            assert [h[0] for h in hits] == [f"c{i}" for _, i in best]
