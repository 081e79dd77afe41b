"""Connection engines with the model-free HashEmbedder (fast, deterministic).

``DOCS`` is also the fixture library of tests/integration/test_embed_model.py, which
repeats the key checks with the real MiniLM model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest

from rhizome.pipeline.connect import (
    ChunkView,
    ConceptIndex,
    FoundConnection,
    VectorIndex,
    Weights,
    build_index,
    combine,
    contradiction_engine,
    detect_connections,
    extract_concepts,
    semantic_engine,
    thematic_engine,
)
from rhizome.pipeline.connect.concepts import concept_id, fold, is_generic, tokens
from rhizome.pipeline.connect.contradiction import analyze, compare_claims
from rhizome.pipeline.embed import Embedder, HashEmbedder

# --- fixture documents -------------------------------------------------------------------

DOCS: dict[str, tuple[str, list[str]]] = {
    "coral-a": (
        "Why coral reefs bleach",
        [
            "Coral reefs bleach when ocean warming pushes sea surface temperatures above "
            "the summer maximum for several weeks. Stressed corals expel the symbiotic algae "
            "living in their tissues, lose their colour and turn white. Without the algae "
            "the coral starves, and a reef that stays bleached for long dies.",
            "Mass coral bleaching events on the Great Barrier Reef in 2016, 2017 and 2020 "
            "followed record marine heatwaves. Surveys found that reefs with the longest "
            "exposure to warm water lost most of their coral cover, and recovery of the "
            "reef takes a decade or more.",
            "Reef scientists warn that ocean warming makes bleaching more frequent, leaving "
            "corals too little time to recover between events. Cutting greenhouse gas "
            "emissions is the only way to slow the warming of the oceans that drives coral "
            "bleaching.",
        ],
    ),
    "coral-b": (
        "Marine heatwaves and the future of coral",
        [
            "Marine heatwaves, periods of unusually warm ocean water, are the main cause of "
            "coral bleaching worldwide. When the sea stays too warm, corals lose the algae "
            "that feed them and the reef turns white.",
            "As the climate warms, coral reefs face bleaching almost every year. Corals that "
            "bleach repeatedly have no time to recover, and bleached reefs lose the fish "
            "and invertebrates that depend on living coral.",
            "Some corals tolerate warmer water better than others, and researchers are "
            "breeding heat-tolerant corals to restore damaged reefs. Without lower "
            "emissions, ocean warming will still outpace restoration of the reefs.",
        ],
    ),
    "sourdough": (
        "Baking sourdough bread",
        [
            "A sourdough starter is a mixture of flour and water colonised by wild yeast "
            "and lactobacilli. Feed the starter daily with fresh flour until it doubles "
            "within a few hours of feeding and smells pleasantly sour.",
            "Mix the levain with bread flour, rest the dough, then add salt. Fold the dough "
            "every half hour during bulk fermentation, shape a tight loaf and proof it "
            "overnight in a floured banneton in the fridge.",
            "Bake the loaf in a preheated Dutch oven with the lid on for twenty minutes so "
            "the steam lets the crust expand, then remove the lid until the crust is deep "
            "brown. Let the bread cool before slicing.",
        ],
    ),
    "coffee-harm": (
        "Coffee and the heart",
        [
            "A large cohort study reported that coffee consumption increases the risk of "
            "heart disease. Participants who drank more than four cups a day had more "
            "cardiac events over ten years of follow-up.",
        ],
    ),
    "coffee-safe": (
        "Coffee reconsidered",
        [
            "A meta-analysis of prospective studies concluded that coffee consumption does "
            "not increase the risk of heart disease. Moderate drinkers showed no excess of "
            "cardiac events compared with people who avoid coffee.",
        ],
    ),
    "thermodynamics": (
        "The second law of thermodynamics",
        [
            "The second law of thermodynamics states that the entropy of an isolated system "
            "never decreases. Entropy is a measure of how many microscopic arrangements are "
            "compatible with the macroscopic state of the system.",
            "A heat engine turns part of the energy flowing from a hot reservoir to a cold "
            "one into work. The Carnot limit on its efficiency follows from entropy: a cycle "
            "cannot leave the total entropy lower than before.",
        ],
    ),
    "information": (
        "Shannon's information theory",
        [
            "Claude Shannon defined the entropy of a message source as the average number "
            "of bits needed to encode each symbol. Entropy is a measure of uncertainty: a "
            "fair coin toss carries one bit, a biased coin less.",
            "The source coding theorem says no lossless compression scheme can represent a "
            "message in fewer bits than its entropy. Channel capacity sets the rate at which "
            "a noisy channel can carry information reliably.",
        ],
    ),
    "grid": (
        "Running the power grid",
        [
            "The power grid is a system that must balance supply and demand every second. "
            "Operators measure the frequency of the system and dispatch energy from power "
            "stations when demand rises in the evening.",
            "Storage batteries help the system absorb solar energy at noon and release it "
            "later. The state of the grid is monitored by control software that measures "
            "load at every substation.",
        ],
    ),
    "software": (
        "Designing software systems",
        [
            "A software system is easier to change when each component hides its internal "
            "state behind a small interface. Teams measure the quality of a system by how "
            "quickly a change can be made safely.",
            "Message queues decouple the parts of a distributed system: a producer sends a "
            "message and a consumer handles it later, so the system survives when one "
            "component is slow.",
        ],
    ),
    "garden": (
        "A vegetable garden in spring",
        [
            "Start tomatoes and peppers indoors six weeks before the last frost, then plant "
            "them out in a sunny bed enriched with compost. Measure the soil moisture with "
            "a finger before watering.",
            "Rotate crops every year so that pests and diseases specific to one family do "
            "not build up in the soil. Beans fix nitrogen and leave the bed richer for the "
            "next season's cabbages.",
        ],
    ),
}

# The hash embedder matches words, not meaning: its cosines run lower than MiniLM's, so
# these tests pass it a lower semantic threshold (MiniLM uses the default 0.55).
HASH_THRESHOLD = 0.3


def make_chunks(
    embedder: Embedder, docs: dict[str, tuple[str, list[str]]] = DOCS
) -> list[ChunkView]:
    chunks: list[ChunkView] = []
    for doc, (title, texts) in docs.items():
        vectors = embedder.embed(texts)
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            chunks.append(ChunkView(f"{doc}#{i}", doc, text, vector, title))
    return chunks


def of(chunks: Sequence[ChunkView], doc: str) -> list[ChunkView]:
    return [c for c in chunks if c.document_id == doc]


def doc_pairs(found: Sequence[FoundConnection]) -> set[frozenset[str]]:
    return {frozenset((f.source_document_id, f.target_document_id)) for f in found}


@pytest.fixture(scope="module")
def library() -> list[ChunkView]:
    return make_chunks(HashEmbedder())


# --- concepts ----------------------------------------------------------------------------


def test_concepts_fold_plurals_drop_stopwords_and_stay_inside_clauses() -> None:
    found = extract_concepts("The coral reefs, bleached by warming oceans, are dying.")
    assert {"coral", "reef", "coral reef", "bleach", "ocean", "warm ocean"} <= found
    assert "the" not in found and "are" not in found
    assert "reef bleach" not in found  # the comma ends the clause
    assert fold("studies") == fold("study") and fold("emissions") == "emission"
    assert fold("analysis") == "analysis" and fold("bleaching") == fold("bleached")
    assert "increase" not in extract_concepts("Prices increase quickly.")  # stance, not concept
    assert "quickly" not in extract_concepts("Prices increase quickly.")  # -ly adverb
    assert tokens("It doesn't work") == ["it", "doesn't", "n't", "work"]
    assert is_generic("system") and is_generic("data set") and not is_generic("entropy")


def test_concept_index_document_frequency_and_removal() -> None:
    index = ConceptIndex.from_texts(
        [
            ("a1", "A", "Entropy of a gas."),
            ("a2", "A", "The gas cools."),
            ("b1", "B", "Entropy of a message."),
            ("c1", "C", "A loaf of bread."),
        ]
    )
    assert len(index) == 4
    assert index.df("entropy") == 2 and index.df("gas") == 2 and index.df("loaf") == 1
    assert index.rarity("loaf") > index.rarity("entropy") > 0
    assert index.rarity("never seen") == 1.0
    hits = index.find([concept_id("entropy")])
    assert sorted(h.chunk_id for h in hits) == ["a1", "b1"]
    assert index.find([concept_id("gas")], min_mentions=2)[0].document_id == "A"
    assert index.find([concept_id("entropy")], min_mentions=2) == []
    # document level: "gas" is in 2 chunks but 1 document, as rare as "loaf"
    assert index.document_rarity("gas") == index.document_rarity("loaf") > 0
    assert index.document_rarity("entropy") < index.document_rarity("gas")
    assert set(index.keyphrases("A", 1)) == {concept_id("gas")}  # 2 mentions beat 1
    index.add([("a2", "A", "Bread again.")])  # replacing a chunk updates both counts
    assert index.df("gas") == 1 and index.df("bread") == 2
    assert index.document_rarity("bread") < index.document_rarity("loaf")
    assert index.remove_document("A") == 2
    assert index.df("entropy") == 1 and index.df("gas") == 0 and len(index) == 2
    assert index.document_rarity("bread") == index.document_rarity("loaf")
    copy = index.copy()
    copy.add([("d1", "D", "Entropy again.")])
    assert copy.df("entropy") == 2 and index.df("entropy") == 1  # copies are independent


# --- vector index --------------------------------------------------------------------------


def naive_search(
    ids: list[str],
    docs: list[str],
    matrix: np.ndarray,
    query: np.ndarray,
    k: int,
    exclude: set[str],
    min_score: float | None = None,
) -> list[tuple[str, str, float]]:
    scored = []
    for i, d, row in zip(ids, docs, matrix, strict=True):
        if d in exclude:
            continue
        score = float(np.dot(query, row))
        if min_score is not None and score < min_score:
            continue
        scored.append((i, d, score))
    scored.sort(key=lambda t: -t[2])
    return scored[:k]


def assert_same(got: list[tuple[str, str, float]], want: list[tuple[str, str, float]]) -> None:
    assert [(i, d) for i, d, _ in got] == [(i, d) for i, d, _ in want]
    assert np.allclose([s for *_, s in got], [s for *_, s in want], atol=1e-5)


def random_unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    m = rng.standard_normal((n, dim)).astype(np.float32)
    unit: np.ndarray = m / np.linalg.norm(m, axis=1, keepdims=True)
    return unit


@pytest.mark.parametrize("block_bytes", [1, 64 << 20])
def test_vector_index_matches_naive_search(block_bytes: int) -> None:
    rng = np.random.default_rng(7)
    ids = [f"c{i}" for i in range(300)]
    docs = [f"d{i % 7}" for i in range(300)]
    matrix = random_unit(rng, 300, 16)
    index = VectorIndex(block_bytes=block_bytes)
    index.add(ids[:100], docs[:100], matrix[:100])
    index.add(ids[100:], docs[100:], matrix[100:])
    queries = random_unit(rng, 20, 16)
    for k in (1, 5, 50):
        got = index.search(queries, k)
        for q, res in zip(queries, got, strict=True):
            assert_same(res, naive_search(ids, docs, matrix, q, k, set()))
    got = index.search(queries, 10, exclude_document_ids=["d1", "d3", "unknown"])
    for q, res in zip(queries, got, strict=True):
        assert_same(res, naive_search(ids, docs, matrix, q, 10, {"d1", "d3"}))
    # most of the index excluded (a huge new document): the other rows are searched alone
    most = [f"d{i}" for i in range(6)]
    got = index.search(queries, 10, exclude_document_ids=most, min_score=0.0)
    for q, res in zip(queries, got, strict=True):
        assert_same(res, naive_search(ids, docs, matrix, q, 10, set(most), min_score=0.0))
    assert index.search(queries, 10, exclude_document_ids=[f"d{i}" for i in range(7)]) == [
        [] for _ in queries
    ]
    own = [f"d{i % 7}" for i in range(20)]
    got = index.search(queries, 10, query_document_ids=own, min_score=0.1)
    for q, d, res in zip(queries, own, got, strict=True):
        assert_same(res, naive_search(ids, docs, matrix, q, 10, {d}, min_score=0.1))
        assert all(s >= 0.1 for *_, s in res)
    # k larger than the index: everything, sorted
    (everything,) = index.search(queries[0], 1000)
    assert_same(everything, naive_search(ids, docs, matrix, queries[0], 1000, set()))
    assert len(everything) == 300


def test_vector_index_remove_upsert_centroid_and_errors() -> None:
    rng = np.random.default_rng(3)
    matrix = random_unit(rng, 40, 8)
    ids = [f"c{i}" for i in range(40)]
    docs = [f"d{i % 4}" for i in range(40)]
    index = VectorIndex.from_arrays(ids, docs, matrix)
    centroid = index.centroid("d2")
    mean = matrix[[i for i in range(40) if i % 4 == 2]].mean(axis=0)
    assert centroid is not None and np.allclose(centroid, mean / np.linalg.norm(mean), atol=1e-5)
    assert index.remove_document("d2") == 10 and len(index) == 30
    assert index.centroid("d2") is None and index.remove_document("d2") == 0
    keep = [i for i in range(40) if i % 4 != 2]
    q = random_unit(rng, 1, 8)[0]
    (res,) = index.search(q, 100)
    assert_same(
        res,
        naive_search([ids[i] for i in keep], [docs[i] for i in keep], matrix[keep], q, 100, set()),
    )
    assert "d2" not in {d for _, d, _ in res}
    # re-adding an id replaces its vector (and moves it to the new document)
    index.add(["c0"], ["d9"], -q[None, :])
    assert len(index) == 30 and index.document_of("c0") == "d9"
    (res,) = index.search(q, 1)
    assert res[0][0] != "c0"
    (worst,) = index.search(-q, 1)
    assert worst[0][:2] == ("c0", "d9") and worst[0][2] == pytest.approx(1.0, abs=1e-5)
    assert VectorIndex().search(q, 5) == [[]]
    with pytest.raises(ValueError):
        index.search(np.zeros(3, dtype=np.float32), 5)
    with pytest.raises(ValueError):
        index.add(["x"], ["d"], np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        index.add(["x", "y"], ["d"], np.ones((2, 8), dtype=np.float32))


# --- semantic ------------------------------------------------------------------------------


def test_related_documents_get_semantic_connections_unrelated_none(
    library: list[ChunkView],
) -> None:
    index = build_index(library)
    found = semantic_engine(of(library, "coral-a"), index, threshold=HASH_THRESHOLD)
    targets = {t.split("#")[0] for _, t, _ in found}
    assert targets == {"coral-b"}
    assert all(HASH_THRESHOLD <= s <= 1 for *_, s in found)
    assert semantic_engine(of(library, "sourdough"), index, threshold=HASH_THRESHOLD) == []

    conns = detect_connections(
        of(library, "coral-a"), library, semantic_threshold=HASH_THRESHOLD, min_combined=0.05
    )
    assert frozenset({"coral-a", "coral-b"}) in doc_pairs(conns)
    coral = [c for c in conns if c.target_document_id == "coral-b"]
    assert all(c.scores["semantic"] > 0 for c in coral)
    assert any("similar content" in c.reason and "coral" in c.reason for c in coral)
    for doc in ("coral-a", "coral-b", "sourdough"):
        conns = detect_connections(
            of(library, doc), library, semantic_threshold=HASH_THRESHOLD, min_combined=0.05
        )
        assert not any("sourdough" in p and len(p) == 2 for p in doc_pairs(conns)), doc
        for c in conns:
            assert c.source_document_id != c.target_document_id
            assert c.source_chunk_id != c.target_chunk_id


# --- contradiction -------------------------------------------------------------------------


def test_claim_analysis_negation_and_antonyms() -> None:
    (harm,) = analyze("Coffee consumption increases the risk of heart disease.")
    (safe,) = analyze("Coffee consumption does not increase the risk of heart disease.")
    (less,) = analyze("Coffee consumption decreases the risk of heart disease.")
    (gone,) = analyze("Coffee consumption no longer raises the risk of heart disease.")
    (contr,) = analyze("Coffee consumption doesn't increase the risk of heart disease.")
    assert harm.stances["amount"].pole == 1
    assert (
        safe.stances["amount"].pole == -1 and safe.stances["amount"].phrase == "does not increase"
    )
    assert less.stances["amount"].pole == -1 and gone.stances["amount"].pole == -1
    assert contr.stances["amount"].phrase == "doesn't increase"
    (clause,) = analyze("It is not cheap, but it increases yields.")  # negation stays in its clause
    assert clause.stances["amount"].pole == 1
    same = compare_claims(harm, safe, lambda _c: 1.0)
    antonym = compare_claims(harm, less, lambda _c: 1.0)
    assert same is not None and antonym is not None and same.score > antonym.score > 0
    assert compare_claims(harm, harm, lambda _c: 1.0) is None
    (other,) = analyze("Sugar consumption does not increase crop yields.")
    opp = compare_claims(harm, other, lambda _c: 1.0)
    assert opp is None or opp.score < 0.3  # little in common: weak at most
    (t1,) = analyze("The vaccine contains mercury.")
    (t2,) = analyze("The vaccine does not contain mercury.")
    neg = compare_claims(t1, t2, lambda _c: 1.0)
    assert neg is not None and 0 < neg.score < 1


@pytest.mark.parametrize(
    "claim",
    [
        "Coffee consumption does not increase the risk of heart disease.",
        "Coffee consumption decreases the risk of heart disease.",
    ],
)
def test_opposing_claims_get_a_contradiction(claim: str) -> None:
    embedder = HashEmbedder()
    docs = {
        **{k: v for k, v in DOCS.items() if k != "coffee-safe"},
        "coffee-safe": (
            "Coffee reconsidered",
            [f"A recent review found that {claim[0].lower()}{claim[1:]}"],
        ),
    }
    library = make_chunks(embedder, docs)
    found = contradiction_engine(of(library, "coffee-safe"), library)
    assert [(s, t) for s, t, *_ in found] == [("coffee-safe#0", "coffee-harm#0")]
    _, _, score, reason = found[0]
    assert 0 < score <= 1
    assert "coffee consumption" in reason and "heart disease" in reason
    assert "opposing stance" in reason
    conns = detect_connections(
        of(library, "coffee-safe"), library, semantic_threshold=HASH_THRESHOLD
    )
    (conn,) = [c for c in conns if c.target_document_id == "coffee-harm"]
    assert conn.scores["contradiction"] == pytest.approx(score)
    assert conn.reason.startswith("opposing stance")


def test_agreeing_documents_are_not_contradictions(library: list[ChunkView]) -> None:
    for doc in ("coral-a", "coral-b", "thermodynamics", "sourdough"):
        assert contradiction_engine(of(library, doc), library) == [], doc


# --- thematic ------------------------------------------------------------------------------


def test_thematic_bridge_via_uncommon_concept_not_common_words(library: list[ChunkView]) -> None:
    found = thematic_engine(of(library, "thermodynamics"), library)
    assert found, "expected an entropy bridge"
    targets = {t.split("#")[0] for _, t, _, _ in found}
    assert targets == {"information"}
    for _, _, score, reason in found:
        assert 0 < score <= 1
        assert "'entropy'" in reason
        assert "system" not in reason and "measure" not in reason
    # "system" and "measure" are in many documents: never a bridge, from any of them
    for doc in ("grid", "software", "information"):
        for _, _, _, reason in thematic_engine(of(library, doc), library):
            assert "'system'" not in reason and "'measure'" not in reason
    # documents on the same topic are not "bridged", however rare their shared words
    assert thematic_engine(of(library, "coral-a"), library) == []
    conns = detect_connections(of(library, "thermodynamics"), library)
    bridge = [c for c in conns if c.target_document_id == "information"]
    assert bridge and all(c.scores["thematic"] > 0 for c in bridge)
    assert all("entropy" in c.reason for c in bridge)


def test_thematic_needs_a_concept_central_to_both_documents() -> None:
    embedder = HashEmbedder()
    docs = dict(DOCS)
    title, texts = docs["information"]
    docs["information"] = (
        title,
        [t.replace("entropy", "surprisal").replace("Entropy", "Surprisal") for t in texts],
    )
    docs["information"][1].append("Some call this quantity entropy.")
    library = make_chunks(embedder, docs)
    # mentioned once in passing: not a theme of the information document
    assert thematic_engine(of(library, "thermodynamics"), library) == []
    # ... even when single mentions count, it is not among the document's key concepts
    assert thematic_engine(of(library, "thermodynamics"), library, min_mentions=1) == []
    found = thematic_engine(of(library, "thermodynamics"), library, min_mentions=1, keyphrases=1000)
    assert any(t.startswith("information") and "'entropy'" in r for _, t, _, r in found)


# --- combining -----------------------------------------------------------------------------


def test_weights_change_the_combined_score(library: list[ChunkView]) -> None:
    new = of(library, "coffee-safe") + of(library, "thermodynamics")
    kwargs = {"semantic_threshold": HASH_THRESHOLD, "min_combined": 0.0}
    default = detect_connections(new, library, **kwargs)  # type: ignore[arg-type]
    assert default
    weight = {"semantic": 0.25, "contradiction": 0.40, "thematic": 0.35}
    for conn in default:
        # the weighted mean over the engines that judged the pair (scores has only those)
        assert conn.scores and set(conn.scores) <= set(weight)
        assert all(v > 0 for v in conn.scores.values())
        expected = sum(weight[e] * v for e, v in conn.scores.items())
        expected /= sum(weight[e] for e in conn.scores)
        assert conn.combined == pytest.approx(expected, abs=1e-6)
    only_contra = detect_connections(new, library, weights=Weights(0, 1, 0), **kwargs)  # type: ignore[arg-type]
    assert only_contra and all(set(c.scores) == {"contradiction"} for c in only_contra)
    assert all(c.combined == pytest.approx(c.scores["contradiction"]) for c in only_contra)
    heavy = detect_connections(new, library, weights=Weights(0.25, 0.40, 1.0), **kwargs)  # type: ignore[arg-type]
    before = {(c.source_chunk_id, c.target_chunk_id): c for c in default}
    after = {(c.source_chunk_id, c.target_chunk_id): c for c in heavy}
    bridge = next(k for k in before if k[0].startswith("thermo") and k[1].startswith("information"))
    # judged by the thematic engine alone: its score, whatever the weights
    assert before[bridge].combined == after[bridge].combined == before[bridge].scores["thematic"]
    for key, conn in before.items():  # judged by several: pulled towards the thematic score
        if "thematic" in conn.scores and len(conn.scores) > 1:
            thematic = conn.scores["thematic"]
            assert abs(after[key].combined - thematic) <= abs(conn.combined - thematic)
    # min_combined filters on the combined score
    cut = min(c.combined for c in default) + 1e-6
    strict = detect_connections(new, library, semantic_threshold=HASH_THRESHOLD, min_combined=cut)
    assert all(c.combined >= cut for c in strict)
    assert len(strict) < len(default)
    with pytest.raises(ValueError):
        Weights(semantic=-1)


def test_combine_merges_engines_and_reports_new_to_new_pairs_once(library: list[ChunkView]) -> None:
    pool = {c.id: c for c in library}
    found = combine(
        pool,
        semantic=[
            ("coral-a#0", "coral-b#0", 0.8),
            ("coral-b#0", "coral-a#0", 0.8),
            ("coral-a#0", "coral-a#1", 0.9),
        ],
        contradiction=[("coral-a#0", "coral-b#0", 0.5, "opposing stance on 'x'")],
        thematic=[("coral-a#0", "coral-a#0", 1.0, "self")],
        new_ids=["coral-a#0", "coral-b#0"],
        min_combined=0.0,
    )
    (conn,) = found
    assert conn.scores == {"semantic": 0.8, "contradiction": 0.5}  # thematic did not judge it
    assert conn.combined == pytest.approx((0.25 * 0.8 + 0.40 * 0.5) / (0.25 + 0.40))
    assert conn.reason.startswith("similar content")  # larger contribution first
    assert "opposing stance on 'x'" in conn.reason


def test_detect_connections_is_deterministic_and_reports_progress(library: list[ChunkView]) -> None:
    new = of(library, "coral-a") + of(library, "coffee-safe") + of(library, "thermodynamics")
    events: list[tuple[str, int, int]] = []
    first = detect_connections(
        new, library, semantic_threshold=HASH_THRESHOLD, progress=lambda *e: events.append(e)
    )
    shuffled = list(library)
    random.Random(5).shuffle(shuffled)
    second = detect_connections(
        new, shuffled, semantic_threshold=HASH_THRESHOLD, index=build_index(shuffled)
    )
    assert first == second
    assert [c.combined for c in first] == sorted((c.combined for c in first), reverse=True)
    for engine in ("semantic", "contradiction", "thematic"):
        mine = [e for e in events if e[0] == engine]
        assert mine[0] == (engine, 0, len(new)) and mine[-1] == (engine, len(new), len(new))
    # an engine with weight 0 is not run at all
    events.clear()
    detect_connections(new, library, weights=Weights(1, 0, 0), progress=lambda *e: events.append(e))
    assert {e[0] for e in events} == {"semantic"}


def test_edge_cases_empty_inputs_and_library_without_the_new_document(
    library: list[ChunkView],
) -> None:
    assert detect_connections([], library) == []
    assert detect_connections(of(library, "coral-a"), []) == []
    assert detect_connections(of(library, "coral-a"), of(library, "coral-a")) == []
    others = [c for c in library if c.document_id != "coffee-safe"]
    with_new = detect_connections(
        of(library, "coffee-safe"), library, semantic_threshold=HASH_THRESHOLD
    )
    without = detect_connections(
        of(library, "coffee-safe"), others, semantic_threshold=HASH_THRESHOLD
    )
    assert [(c.source_chunk_id, c.target_chunk_id) for c in with_new] == [
        (c.source_chunk_id, c.target_chunk_id) for c in without
    ]
