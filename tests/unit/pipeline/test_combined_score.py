"""The combined score of a connection: the weighted mean over the engines that judged the
pair (README, *Connection scores*), on pairs found by one, two and three engines; the
weights come from the settings."""

from __future__ import annotations

import numpy as np
import pytest

from rhizome.errors import InvalidInputError
from rhizome.library.connections import weights_from_settings
from rhizome.pipeline.connect import ChunkView, Weights, combine, combined_score

W = {"semantic": 0.25, "contradiction": 0.40, "thematic": 0.35}


def _mean(scores: dict[str, float], weights: dict[str, float] = W) -> float:
    return sum(weights[e] * s for e, s in scores.items()) / sum(weights[e] for e in scores)


def test_one_engine_a_strong_pair_looks_strong() -> None:
    # the example: cosine 0.68 found by the semantic engine alone
    assert combined_score({"semantic": 0.68}) == 0.68
    assert combined_score({"contradiction": 0.9}) == 0.9
    assert combined_score({"thematic": 0.5}, Weights(0.1, 0.1, 5.0)) == 0.5
    # an engine with weight 0 judges nothing
    assert combined_score({"semantic": 0.68}, Weights(0, 0.4, 0.35)) is None
    assert combined_score({}) is None


def test_two_and_three_engines_weighted_mean() -> None:
    two = {"semantic": 0.8, "contradiction": 0.5}
    assert combined_score(two) == pytest.approx(_mean(two), abs=1e-6)
    assert combined_score(two) == pytest.approx((0.25 * 0.8 + 0.40 * 0.5) / 0.65, abs=1e-6)
    three = {"semantic": 0.9, "contradiction": 0.3, "thematic": 0.6}
    assert combined_score(three) == pytest.approx(
        (0.25 * 0.9 + 0.40 * 0.3 + 0.35 * 0.6) / 1.0, abs=1e-6
    )
    other = {"semantic": 2.0, "contradiction": 1.0, "thematic": 1.0}
    assert combined_score(three, Weights(2.0, 1.0, 1.0)) == pytest.approx(
        _mean(three, other), abs=1e-6
    )
    # always between the lowest and the highest engine score
    for scores in (two, three):
        value = combined_score(scores)
        assert value is not None and min(scores.values()) <= value <= max(scores.values())


def _chunk(cid: str, doc: str) -> ChunkView:
    return ChunkView(cid, doc, f"text of {cid}", np.zeros(4, dtype=np.float32))


def test_combine_scores_pairs_found_by_one_two_and_three_engines() -> None:
    chunks = {
        c.id: c for c in (_chunk("a", "A"), _chunk("b", "B"), _chunk("c", "C"), _chunk("d", "D"))
    }
    found = combine(
        chunks,
        semantic=[("a", "b", 0.68), ("a", "c", 0.6), ("a", "d", 0.7)],
        contradiction=[("a", "c", 0.45, "opposing stance"), ("a", "d", 0.5, "negation")],
        thematic=[("a", "d", 0.8, "shared theme")],
        new_ids=["a"],
        min_combined=0.0,
    )
    by_target = {f.target_chunk_id: f for f in found}
    one, two, three = by_target["b"], by_target["c"], by_target["d"]
    assert one.scores == {"semantic": 0.68} and one.combined == 0.68
    assert two.scores == {"semantic": 0.6, "contradiction": 0.45}
    assert two.combined == pytest.approx(_mean(two.scores), abs=1e-6)
    assert three.scores == {"semantic": 0.7, "contradiction": 0.5, "thematic": 0.8}
    assert three.combined == pytest.approx(_mean(three.scores), abs=1e-6)
    # ranked by what the engines said, not by how many spoke: 0.68 > 0.655 > 0.54
    # (a weighted sum would have put the semantic-only pair last, at 0.17)
    assert [f.target_chunk_id for f in found] == ["b", "d", "c"]
    assert "opposing stance" in two.reason and "shared theme" in three.reason


def test_weights_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights_from_settings() == Weights(0.25, 0.40, 0.35)
    monkeypatch.setenv("RHIZOME_SEMANTIC_WEIGHT", "1")
    monkeypatch.setenv("RHIZOME_THEMATIC_WEIGHT", "0")
    assert weights_from_settings() == Weights(1.0, 0.40, 0.0)
    assert weights_from_settings(semantic=0.5) == Weights(0.5, 0.40, 0.0)  # a job's own
    monkeypatch.setenv("RHIZOME_SEMANTIC_WEIGHT", "0")
    monkeypatch.setenv("RHIZOME_CONTRADICTION_WEIGHT", "0")
    with pytest.raises(InvalidInputError) as caught:
        weights_from_settings()
    assert "RHIZOME_SEMANTIC_WEIGHT" in caught.value.hint
