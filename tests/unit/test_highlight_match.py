"""Highlight matching in tiers: normalization mapped back to the original offsets, exact
and normalized matches nearest to where the passage is expected, the context tier between
the old surroundings, fuzzy tiers with a calibrated similarity, the offset map between two
versions of a document, and book matching by title and author."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from rhizome.library.highlight_match import (
    MATCHED,
    REVIEW_FLOOR,
    Matcher,
    NormalizedText,
    OffsetMap,
    normalize,
    similarity,
    spans_of,
    surroundings,
)
from rhizome.library.highlights import spanned_chunks
from rhizome.library.model import Document
from rhizome.library.readwise import match_book, parse_export, skip_reason

BOOK = (
    "# Chapter 1. Loomings.\n\n"
    "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014having little or "
    "no money in my purse, and nothing particular to interest me on shore, I thought I would "
    "sail about a little and see the watery part of the world. It is a way I have of driving "
    "off the spleen and regulating the circulation.\n\n"
    "Whenever I find myself growing grim about the mouth, and methodically knocking "
    "people\u2019s hats off\u2014then, I account it high time to get to sea as soon as I can.\n\n"
    "# Chapter 2. The Carpet-Bag.\n\n"
    "I stuffed a shirt or two into my old carpet-bag, tucked it under my arm, and started "
    "for Cape Horn and the Pacific. Quitting the good city of old Manhatto, I duly arrived "
    "in New Bedford. It was a Saturday night in December.\n"
)


def test_normalization_folds_typography_and_maps_back() -> None:
    text = "A  \u201cquoted\u201d word\u2014and it\u2019s *emphasis* -- done\u00a0now."
    norm = NormalizedText(text)
    assert norm.text == 'a "quoted" word\u2014and it\'s emphasis\u2014done now.'
    at = norm.text.index("emphasis")
    start, end = norm.to_original(at, at + len("emphasis"))
    assert text[start:end] == "emphasis"
    at = norm.text.index('"quoted"')
    start, end = norm.to_original(at, at + len('"quoted"'))
    assert text[start:end] == "\u201cquoted\u201d"
    assert normalize("Some years ago--never mind") == normalize("Some years ago\u2014never mind")
    assert normalize("people's") == normalize("people\u2019s")


@given(st.text(alphabet="ab \n\u2014-'\u2019*\u201c\u201d\u00e9\ufb01", max_size=60))
def test_every_normalized_span_maps_to_an_original_span(text: str) -> None:
    norm = NormalizedText(text)
    for i in range(len(norm.text)):
        for j in range(i + 1, len(norm.text) + 1):
            a, b = norm.to_original(i, j)
            assert 0 <= a <= b <= len(text)


def test_exact_and_normalized_tiers_with_their_offsets() -> None:
    m = Matcher(BOOK)
    found = m.find("Call me Ishmael.")
    assert (found.status, found.method, found.confidence) == ("matched", "exact", 1.0)
    assert BOOK[found.start : found.end] == "Call me Ishmael."  # type: ignore[misc]
    found = m.find("knocking people's hats off")
    assert (found.status, found.method) == ("matched", "normalized")
    assert BOOK[found.start : found.end] == "knocking people\u2019s hats off"  # type: ignore[misc]
    found = m.find("Some years ago--never mind how long precisely--having little")
    assert found.method == "normalized"
    passage = BOOK[found.start : found.end]  # type: ignore[misc]
    assert passage == "Some years ago\u2014never mind how long precisely\u2014having little"


def test_of_several_occurrences_the_nearest_to_the_expected_place_wins() -> None:
    text = "the sea. " * 10 + "middle " + "the sea. " * 10
    m = Matcher(text)
    assert m.find("the sea.").start == 0
    near = m.find("the sea.", expected=len(text) - 5)
    assert near.start == len(text) - len("the sea. ")


def test_a_sentence_not_in_the_book_is_unmatched_with_a_reason() -> None:
    m = Matcher(BOOK)
    found = m.find("The whale is a mammal that has never appeared in this book.")
    assert found.status == "unmatched" and found.start is None
    assert found.reason and "not found" in found.reason and found.confidence < REVIEW_FLOOR


def test_similarity_is_calibrated() -> None:
    a = "It is a way I have of driving off the spleen and regulating the circulation."
    assert similarity(a, a) == 1.0
    one_word = "It is a way I have of driving off the spleen and of regulating the circulation."
    assert similarity(a, one_word) >= MATCHED
    reworded = "It is my way of chasing away the spleen and regulating the circulation."
    assert REVIEW_FLOOR <= similarity(a, reworded) < MATCHED
    unrelated = "I stuffed a shirt or two into my old carpet-bag, tucked it under my arm."
    assert similarity(a, unrelated) < REVIEW_FLOOR


def test_context_tier_finds_a_reworded_passage_between_its_old_surroundings() -> None:
    old = BOOK
    passage = "It is a way I have of driving off the spleen and regulating the circulation."
    start = old.index(passage)
    new = old.replace(
        passage, "It is my way of chasing away the spleen and regulating the circulation."
    )
    before, after = surroundings(old, start, start + len(passage))
    found = Matcher(new).find(
        passage, expected=OffsetMap(old, new)(start), before=before, after=after
    )
    assert (found.status, found.method) == ("needs_review", "context")
    assert new[found.start : found.end] == (  # type: ignore[misc]
        "It is my way of chasing away the spleen and regulating the circulation."
    )


def test_a_deleted_passage_is_unmatched_and_says_so() -> None:
    old = BOOK
    para = old[old.index("Whenever I find") : old.index("# Chapter 2")]
    new = old.replace(para, "")
    passage = "and methodically knocking people\u2019s hats off"
    start = old.index(passage)
    before, after = surroundings(old, start, start + len(passage))
    found = Matcher(new).find(
        passage, expected=OffsetMap(old, new)(start), before=before, after=after
    )
    assert found.status == "unmatched" and found.reason is not None
    assert "gone" in found.reason or "deleted" in found.reason


def test_fuzzy_tiers_without_context() -> None:
    m = Matcher(BOOK, [(0, 400), (400, 700), (700, len(BOOK))])
    typo = "I stuffed a shirt or two into my old carpet bag, tucked it under my arm"
    found = m.find(typo)
    assert found.status == "matched" and found.method == "document"
    assert BOOK[found.start : found.end].startswith("I stuffed a shirt")  # type: ignore[misc]
    near = m.find(typo, expected=BOOK.index("I stuffed"))
    assert near.method == "neighbours" and near.start == found.start


def test_offset_map_moves_offsets_with_their_paragraph() -> None:
    old = BOOK
    new = "# Preface\n\nA new paragraph at the top.\n\n" + old
    shift = len(new) - len(old)
    mapping = OffsetMap(old, new)
    for needle in ("Call me Ishmael", "knocking", "Saturday night"):
        at = old.index(needle)
        assert mapping(at) == at + shift
    lines = old.split("\n\n")
    random.Random(3).shuffle(lines)  # even a reordering stays inside the text
    other = "\n\n".join(lines)
    assert all(0 <= OffsetMap(old, other)(i) <= len(other) for i in range(0, len(old), 37))


def _doc(title: str, author: str | None, doc_id: str) -> Document:
    return Document(doc_id, "u", title, "epub", "ready", "f", author=author)


def test_books_are_matched_by_scored_title_and_author_never_by_substring() -> None:
    docs = [
        _doc("Moby-Dick", "Herman Melville", "1"),
        _doc("Moby", "Someone Else", "2"),
        _doc("The Whale Book", None, "3"),
    ]
    found = match_book("Moby-Dick; or, The Whale", "Melville, Herman", docs)
    assert found.document is not None and found.document.id == "1"
    assert found.score >= 0.85
    missing = match_book("A Book Not Imported", "Nobody", docs)
    assert missing.document is None and missing.reason and "no document" in missing.reason
    twins = [_doc("Walden", "Thoreau", "a"), _doc("Walden", "Thoreau", "b")]
    ambiguous = match_book("Walden", "Henry David Thoreau", twins)
    assert ambiguous.document is None and "equally well" in (ambiguous.reason or "")


def test_readwise_files_parse_and_short_or_image_highlights_are_skipped() -> None:
    fmt, books = parse_export(
        b"Highlight,Book Title,Book Author,Location Type,Location,Tags\n"
        b"Short,A,B,location,1,\n"
        b"![](https://example.org/x.png),A,B,location,2,\n"
        b'"A long enough highlight.",A,B,location,3,"x, y"\n'
    )
    assert fmt == "csv" and len(books) == 1 and len(books[0].highlights) == 3
    reasons = [skip_reason(h) for h in books[0].highlights]
    assert reasons[0] and "shorter" in reasons[0]
    assert reasons[1] == "image highlight"
    assert reasons[2] is None and books[0].highlights[2].tags == ["x", "y"]
    fmt, books = parse_export(
        b'{"results": [{"title": "T", "highlights": [{"id": 7, "text": "x"}]}]}'
    )
    assert fmt == "json" and books[0].highlights[0].external_id == "readwise:7"


@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 30)), min_size=1, max_size=30))
def test_spans_of_is_the_overlap_of_ordered_chunks(shape: list[tuple[int, int]]) -> None:
    spans, at = [], 0
    for n, (length, back) in enumerate(shape):  # overlapping chunks, in document order
        start = max(0, at - min(back, length - 1)) if spans else at
        start = max(start, spans[-1][1] + 1) if spans else start
        spans.append((f"c{n}", start, max(start + length, spans[-1][2] + 1 if spans else 0)))
        at = spans[-1][2]
    for a in range(0, at + 2, 3):
        for b in range(a + 1, at + 3, 5):
            assert spans_of(spans, a, b) == spanned_chunks(spans, a, b)
