"""clean(): whitespace, hyphenation, page furniture, code fences, idempotence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rhizome.pipeline.clean import clean

BODY = (
    "The quick brown fox jumps over the lazy dog and keeps on running far\n"
    "across the wide green meadow until the evening sun sets behind hills\n"
    "while the farmer watches from his porch with a cup of tea in his hand\n"
    "and wonders where the fox might be going on such a beautiful evening.\n"
)


def test_line_endings_and_whitespace() -> None:
    raw = (
        "  \r\n\r\n# Title  \r\nSome\u00a0text \t with   spaces. \r"
        "Next\u200b line\x07.\n\n\n\n\nEnd"
    )
    assert clean(raw) == "# Title\nSome text with spaces.\nNext line.\n\nEnd\n"


def test_indentation_and_hard_breaks_kept() -> None:
    raw = (
        "- item\n  - nested   item\n\n    indented  code   keeps spacing\n\nline one  \nline two\n"
    )
    assert clean(raw) == (
        "- item\n  - nested item\n\n    indented  code   keeps spacing\n\nline one\\\nline two\n"
    )


def test_dehyphenation() -> None:
    raw = (
        "An exam-\nple of hyphen-\n  ation across lines.\n"
        "Anglo-\nSaxon stays, and so does\n- a list\n"
    )
    out = clean(raw)
    assert "An example of hyphenation across lines." in out
    assert "Anglo-\nSaxon" in out
    assert "does\n- a list" in out
    # not across paragraphs or into headings
    assert clean("end-\n\nnext") == "end-\n\nnext\n"
    assert clean("# Head-\nline") == "# Head-\nline\n"


def test_bare_page_number_paragraphs() -> None:
    raw = "First paragraph.\n\n12\n\nSecond paragraph.\n\n- 13 -\n\nPage 14 of 200\n\nThird 15.\n"
    assert clean(raw) == "First paragraph.\n\nSecond paragraph.\n\nThird 15.\n"


def test_code_fences_untouched() -> None:
    code = "```python\ndef f():\r\n    x  =  1   \n\n\n\n    return x\u00a0# nbsp\x07\n12\n```\n"
    raw = "Intro  text\n\n" + code + "\n\n\nAfter-\nwards\n"
    out = clean(raw)
    expected_code = code.replace("\r\n", "\n")
    assert expected_code in out
    assert out.startswith("Intro text\n\n```python")
    assert out.endswith("```\n\nAfterwards\n")


def test_form_feed_in_code_is_not_a_page_break() -> None:
    raw = "Para one.\n\n```\na\fb\n```\n"
    assert clean(raw) == raw


def test_unclosed_fence_runs_to_the_end() -> None:
    raw = "Text.\n\n~~~\n  spaced   out  \n12\n"
    assert clean(raw) == "Text.\n\n~~~\n  spaced   out  \n12\n"


def _pages(n: int, header: str | None = None, footer: str | None = None) -> list[str]:
    pages = []
    for i in range(n):
        lines = []
        if header:
            lines.append(header.format(n=i + 1))
        lines.append(BODY.strip())
        if footer:
            lines.append(footer.format(n=i + 1))
        pages.append("\n".join(lines))
    return pages


def test_repeated_headers_and_page_numbers_removed() -> None:
    out = clean(pages=_pages(6, header="ACME Quarterly Report", footer="{n}"))
    assert "ACME" not in out
    assert not any(line.strip().isdigit() for line in out.split("\n"))
    assert out.count("The quick brown fox") == 6


def test_running_headers_with_page_numbers_removed() -> None:
    # LaTeX style: "8 1.2. SECTION" on even pages, "1.2. SECTION 9" on odd ones
    pages = []
    for i in range(8):
        number = i + 3
        section = "2.1. METRIC SPACES" if i < 4 else "2.2. CONTINUITY"
        header = f"{number} {section}" if number % 2 == 0 else f"{section} {number}"
        pages.append(header + "\n" + BODY.strip())
    out = clean("\f".join(pages))
    assert "METRIC" not in out and "CONTINUITY" not in out


def test_rare_header_like_lines_are_kept() -> None:
    pages = _pages(10)
    pages[3] = "Definition 4\n" + pages[3]
    pages[7] = "Definition 8\n" + pages[7]
    out = clean("\f".join(pages))
    assert "Definition 4" in out and "Definition 8" in out


def test_page_mode_rebuilds_paragraphs_and_joins_across_pages() -> None:
    page1 = (
        BODY + "Short last line.\nA second paragraph starts here and goes on for a long\n"
        "while until the page ends in the middle of a sen-"
    )
    page2 = (
        "tence that continues on the next page of the document and\nends right here.\n"
        "\u2022 first bullet\n\u2022 second bullet"
    )
    out = clean(page1 + "\f" + page2 + "\f")
    paragraphs = out.strip().split("\n\n")
    # the short line ends the paragraph (the full-width line before it does not)
    assert paragraphs[0].startswith("The quick brown fox")
    assert paragraphs[0].endswith("beautiful evening. Short last line.")
    assert "\n" not in paragraphs[0]
    assert paragraphs[1].startswith("A second paragraph")
    assert "middle of a sentence that continues on the next page" in paragraphs[1]
    assert paragraphs[-2:] == ["- first bullet", "- second bullet"]


def test_page_mode_keeps_headings() -> None:
    out = clean(
        "# Chapter 1\nDefinition 1\nSome text that is long enough to be a line of prose here.\f"
    )
    assert out.startswith("# Chapter 1\n\nDefinition 1\n\nSome text")


def test_pdf_markers() -> None:
    assert clean("exam\x02\nple text") == "example text\n"
    assert clean("soft\u00adhyphen") == "softhyphen\n"


def test_empty_and_blank() -> None:
    assert clean("") == ""
    assert clean(" \n\n\t\n") == ""
    assert clean("\f\f") == ""


def test_idempotent_on_examples() -> None:
    samples = [
        "  \r\n# T\r\nx  y\n\n\n12\n\nexam-\nple",
        "\f".join(_pages(5, header="Header", footer="Page {n}")),
        "```\ncode  \n```\ntext-\nmore\n\n\n",
        "line one  \nline two  \n\nthree",
    ]
    for s in samples:
        once = clean(s)
        assert clean(once) == once


_alphabet = st.sampled_from(
    [
        *"abcxyzABC019 .,-#*`~|>\t\n\n\n\f\r\u00a0\u00ad\x02\u200b\u2022",
        *["```", "~~~", "- ", "# ", "  \n", "12\n", "Page 3\n", "iv\n", "word-\nword"],
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_alphabet, max_size=120).map("".join))
def test_idempotent_property(text: str) -> None:
    once = clean(text)
    assert clean(once) == once
    assert "\r" not in once
