"""chunk_markdown(): offsets, headings, boundaries, overlap, limits, determinism."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rhizome.pipeline.chunk import Chunk, chunk_markdown, count_words, estimate_tokens

SENTENCE = "The whale swam slowly through the cold grey water of the northern sea."  # 13 words


def words(text: str) -> int:
    return count_words(text)


def check_invariants(md: str, chunks: list[Chunk], max_words: int, max_tokens: int | None) -> None:
    heading_lines = [
        (m.start(), m.start() + len(m.group(0).rstrip()))
        for m in re.finditer(r"(?m)^ {0,3}#{1,6}(?:[ \t].*)?$", md)
    ]
    previous_start = -1
    for i, c in enumerate(chunks):
        assert c.index == i
        assert md[c.start : c.end] == c.text
        assert c.text and c.text == c.text.strip()
        assert c.start > previous_start  # in order, always moving forward
        previous_start = c.start
        assert c.token_count == estimate_tokens(md, c.start, c.end) or c.token_count > 0
        for hs, he in heading_lines:  # never starts or ends inside a heading line
            assert not hs < c.start < he
            assert not hs < c.end < he
        if not c.text.lstrip().startswith("#") or "\n" in c.text:
            assert words(c.text) <= max_words
            if max_tokens is not None:
                assert c.token_count <= max_tokens
    # every non-blank character is in some chunk
    covered = bytearray(len(md))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    for pos, ch in enumerate(md):
        if not ch.isspace():
            assert covered[pos], f"character {pos} ({md[pos - 10 : pos + 10]!r}) not in any chunk"


def test_empty() -> None:
    assert chunk_markdown("") == []
    assert chunk_markdown("  \n\n \t\n") == []


def test_single_small_document() -> None:
    md = "# Title\n\nOne short paragraph.\n"
    chunks = chunk_markdown(md)
    assert len(chunks) == 1
    c = chunks[0]
    assert c.text == "# Title\n\nOne short paragraph."
    assert (c.start, c.end) == (0, len(md) - 1)
    assert c.heading_path == ["Title"]
    assert c.token_count > 0


def test_heading_paths() -> None:
    md = (
        "Preamble text.\n\n"
        "# Part One\n\n## Chapter 1 ##\n\nText of chapter one.\n\n"
        "### Section 1.1\n\nText of section.\n\n"
        "## Chapter 2\n\nText of chapter two.\n\n"
        "# Part Two\n\nLast words.\n"
    )
    chunks = chunk_markdown(md)
    paths = [c.heading_path for c in chunks]
    assert paths == [
        [],
        ["Part One", "Chapter 1"],
        ["Part One", "Chapter 1", "Section 1.1"],
        ["Part One", "Chapter 2"],
        ["Part Two"],
    ]
    # an empty heading run ("# Part One" directly followed by "## Chapter 1") joins the
    # first chunk of the section that has content
    assert chunks[1].text.startswith("# Part One\n\n## Chapter 1 ##\n\nText")


def test_hash_lines_in_code_are_not_headings() -> None:
    md = "# Real\n\n```bash\n# not a heading\necho hi\n```\n\nAfter.\n"
    chunks = chunk_markdown(md)
    assert len(chunks) == 1 and chunks[0].heading_path == ["Real"]
    assert "#not" not in chunks[0].text


def test_long_section_splits_at_sentences_with_overlap() -> None:
    md = "# Sea\n\n" + " ".join([SENTENCE] * 60)  # 780 words, one paragraph
    chunks = chunk_markdown(md, max_words=100, overlap_words=20, max_tokens=None)
    assert len(chunks) >= 8
    for a, b in itertools.pairwise(chunks):
        assert a.text.endswith(".")  # ends at a sentence end
        assert b.text.startswith("The whale")  # starts at a sentence start
        assert b.start < a.end  # overlaps
        shared = words(md[b.start : a.end])
        assert 10 <= shared <= 30
    assert all(c.heading_path == ["Sea"] for c in chunks)
    check_invariants(md, chunks, 100, None)


def test_prefers_paragraph_boundaries() -> None:
    para = " ".join([SENTENCE] * 5)  # 65 words
    md = "\n\n".join([para] * 6)
    chunks = chunk_markdown(md, max_words=150, overlap_words=0, max_tokens=None)
    # two paragraphs (130 words) fit; a third would not: every chunk is whole paragraphs
    assert [c.text.count("\n\n") for c in chunks] == [1, 1, 1]
    assert all(words(c.text) == 130 for c in chunks)


def test_no_overlap_across_sections() -> None:
    body = " ".join([SENTENCE] * 20)
    md = f"# A\n\n{body}\n\n# B\n\n{body}\n"
    chunks = chunk_markdown(md, max_words=100, overlap_words=30)
    b_start = md.index("# B")
    a_chunks = [c for c in chunks if c.heading_path == ["A"]]
    b_chunks = [c for c in chunks if c.heading_path == ["B"]]
    assert all(c.end <= b_start for c in a_chunks)
    assert b_chunks[0].start == b_start


def test_giant_sentence_is_cut_between_words() -> None:
    md = " ".join(f"word{i}" for i in range(1000))  # no punctuation at all
    chunks = chunk_markdown(md, max_words=180, overlap_words=30)
    assert all(words(c.text) <= 180 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end
        assert 15 <= words(md[b.start : a.end]) <= 45
    check_invariants(md, chunks, 180, 256)


def test_token_limit_binds_for_long_words() -> None:
    md = " ".join(["Donaudampfschifffahrtsgesellschaftskapitän"] * 300)
    chunks = chunk_markdown(md, max_words=180, overlap_words=10, max_tokens=100)
    assert all(c.token_count <= 100 for c in chunks)
    check_invariants(md, chunks, 180, 100)


def test_tables_and_lists_split_between_rows() -> None:
    rows = "\n".join(f"| row {i} | some value here | another cell |" for i in range(80))
    items = "\n".join(f"- item number {i} without a full stop" for i in range(80))
    md = f"# Data\n\n| a | b | c |\n|---|---|---|\n{rows}\n\n## List\n\n{items}\n"
    chunks = chunk_markdown(md, max_words=100, overlap_words=0)
    for c in chunks:
        assert c.text.split("\n")[-1].rstrip().endswith(("|", "stop"))
    check_invariants(md, chunks, 100, 256)


def test_huge_code_block_split_by_lines() -> None:
    code = "\n".join(f"x{i} = compute(x{i - 1}, factor={i})" for i in range(1, 200))
    md = f"# Code\n\n```python\n{code}\n```\n"
    chunks = chunk_markdown(md, max_words=100, overlap_words=10)
    assert len(chunks) > 3
    for c in chunks[1:]:
        assert c.text.startswith(("x", "```"))  # starts at a line (or word) start
    check_invariants(md, chunks, 100, 256)


def test_cjk_characters_count_as_words() -> None:
    md = "。".join(["这是一个很长的中文句子"] * 100)
    chunks = chunk_markdown(md, max_words=120, overlap_words=10)
    assert len(chunks) > 5
    check_invariants(md, chunks, 120, 256)


def test_deterministic() -> None:
    md = "# T\n\n" + "\n\n".join(" ".join([SENTENCE] * k) for k in range(1, 15))
    assert chunk_markdown(md) == chunk_markdown(md)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        chunk_markdown("x", max_words=1)
    with pytest.raises(ValueError):
        chunk_markdown("x", max_words=50, overlap_words=50)
    with pytest.raises(ValueError):
        chunk_markdown("x", max_tokens=2)


def test_token_estimate_is_plausible() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("Hello, world!") == 4
    assert estimate_tokens("internationalization") == 3
    n = estimate_tokens(" ".join([SENTENCE] * 10))
    assert 120 <= n <= 180  # ~1.1 tokens per word on plain English


# --- property: offsets round-trip on random markdown-ish text --------------------------

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzÄöß漢字0123456789", min_size=1, max_size=12)
_sentence = st.lists(_word, min_size=1, max_size=40).map(lambda ws: " ".join(ws) + ".")
_paragraph = st.lists(_sentence, min_size=1, max_size=8).map(" ".join)
_heading = st.tuples(st.integers(1, 6), st.lists(_word, min_size=1, max_size=6)).map(
    lambda t: "#" * t[0] + " " + " ".join(t[1])
)
_code = st.lists(_word, min_size=1, max_size=30).map(lambda ws: "```\n" + "\n".join(ws) + "\n```")
_list = st.lists(_sentence, min_size=1, max_size=6).map(lambda xs: "\n".join("- " + x for x in xs))
_block = st.one_of(_paragraph, _paragraph, _heading, _code, _list, st.just("   "))
_separator = st.sampled_from(["\n\n", "\n", "\n\n\n", "\n \n", "\r\n\r\n"])


@st.composite
def markdownish(draw: st.DrawFn) -> str:
    blocks = draw(st.lists(_block, max_size=25))
    out = ""
    for b in blocks:
        out += b + draw(_separator)
    return out


@settings(max_examples=200, deadline=None)
@given(
    markdownish(),
    st.integers(min_value=20, max_value=200),
    st.integers(min_value=0, max_value=15),
    st.sampled_from([None, 64, 256]),
)
def test_round_trip_property(md: str, max_words: int, overlap: int, max_tokens: int | None) -> None:
    chunks = chunk_markdown(md, max_words=max_words, overlap_words=overlap, max_tokens=max_tokens)
    check_invariants(md, chunks, max_words, max_tokens)
    assert chunks == chunk_markdown(
        md, max_words=max_words, overlap_words=overlap, max_tokens=max_tokens
    )
