"""Every real document in shared/corpus through extract → clean → chunk_markdown."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from rhizome.errors import InvalidInputError
from rhizome.pipeline.chunk import Chunk, chunk_markdown, count_words
from rhizome.pipeline.clean import clean
from rhizome.pipeline.extract import Extracted, extract

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
ENCRYPTED = "libreoffice-writer-password.pdf"

assert CORPUS.is_dir(), f"no corpus at {CORPUS} (the tests read ../shared/corpus)"


def _files(folder: str) -> list[Path]:
    return sorted((CORPUS / folder).glob("*")) if CORPUS.is_dir() else []


DOCUMENTS = [p for folder in ("pdf", "epub", "html") for p in _files(folder) if p.name != ENCRYPTED]

# the title each source carries (metadata, OPF, <title>/og:title, or its biggest heading)
TITLES = {
    "GeoTopo-komprimiert.pdf": "Geometrie und Topologie",
    "google-doc-document.pdf": "PDF Example Document",
    "habibi.pdf": "habibi",
    "crazyones-pdfa.pdf": "The Crazy Ones",
    "multicolumn.pdf": "Two-Column Document with Lorem Ipsum",
    "moby-dick.epub": "Moby-Dick",
    "accessible_epub_3.epub": "Accessible EPUB 3",
    "childrens-literature.epub": "Children's Literature",
    "trees.epub": "Trees",
    "wasteland.epub": "The Waste Land",
    "blog.python.org.html": "Python 3.6.0 is now available!",
    "en.wikipedia.org.tsne.html": "T-distributed stochastic neighbor embedding",
    "nature.com.telescope.html": "Gigantic Chinese telescope opens to astronomers worldwide",
    "lemire.me.json.html": "JSON parsing: simdjson vs. JSON for Modern C++",
}
# sources without any title (no metadata, nothing that stands out on page 1)
NO_TITLE = {
    "002-trivial-libre-office-writer.pdf",
    "minimal-document.pdf",
    "pdflatex-4-pages.pdf",
    "pdflatex-outline.pdf",
}

MAX_WORDS = 180


@cache
def processed(path: Path) -> tuple[Extracted, str, list[Chunk]]:
    extracted = extract(path.read_bytes(), filename=path.name)
    content = clean(extracted.markdown)
    return extracted, content, chunk_markdown(content, max_words=MAX_WORDS, overlap_words=30)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_extracts_with_title(path: Path) -> None:
    extracted, content, _ = processed(path)
    assert extracted.source_type == {".pdf": "pdf", ".epub": "epub", ".html": "html"}[path.suffix]
    assert extracted.markdown.strip()
    assert content.strip()
    if path.name in TITLES:
        assert extracted.title == TITLES[path.name]
    elif path.name in NO_TITLE:
        assert extracted.title is None
    else:
        assert extracted.title and len(extracted.title) > 5
    if extracted.source_type == "pdf":
        assert extracted.page_count and extracted.page_count >= 1
    else:
        assert extracted.page_count is None


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_clean_and_chunk(path: Path) -> None:
    _, content, chunks = processed(path)
    assert clean(content) == content  # idempotent on real documents
    assert "\f" not in content and "\r" not in content
    assert chunks
    for i, c in enumerate(chunks):
        assert c.index == i
        assert content[c.start : c.end] == c.text
        assert c.text.strip() == c.text != ""
        assert count_words(c.text) <= MAX_WORDS
        assert 0 < c.token_count <= 256
    assert chunks == chunk_markdown(content, max_words=MAX_WORDS, overlap_words=30)


def test_encrypted_pdf_is_invalid() -> None:
    with pytest.raises(InvalidInputError) as info:
        extract((CORPUS / "pdf" / ENCRYPTED).read_bytes(), filename=ENCRYPTED)
    assert "password" in info.value.message.lower()


def test_moby_dick() -> None:
    extracted, content, chunks = processed(CORPUS / "epub" / "moby-dick.epub")
    assert extracted.author == "Herman Melville"
    chapters = re.findall(r"(?m)^#{1,6} Chapter \d+\.", content)
    assert len(chapters) > 100
    words = len(content.split())
    assert 190_000 < words < 230_000
    assert content.startswith("# ")  # the markdown starts with structure, not junk
    chapter_chunks = [
        c for c in chunks if c.heading_path and c.heading_path[0].startswith("Chapter")
    ]
    assert len({c.heading_path[0] for c in chapter_chunks}) > 100
    first = next(c for c in chunks if c.heading_path == ["Chapter 1. Loomings."])
    assert first.text.startswith("# Chapter 1. Loomings.\n\nCall me Ishmael.")


def test_epub_chapters_have_heading_paths() -> None:
    for name in ("moby-dick.epub", "accessible_epub_3.epub", "childrens-literature.epub"):
        _, _, chunks = processed(CORPUS / "epub" / name)
        with_path = sum(1 for c in chunks if c.heading_path)
        assert with_path >= 0.95 * len(chunks), name


def test_geotopo_pages_and_outline() -> None:
    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    path = CORPUS / "pdf" / "GeoTopo-komprimiert.pdf"
    pdf = pdfium.PdfDocument(str(path))
    try:
        pages = len(pdf)
    finally:
        pdf.close()
    extracted, content, chunks = processed(path)
    assert extracted.page_count == pages
    assert extracted.author == "Martin Thoma"
    assert len(extracted.metadata["outline"]) >= 30
    assert "## 1.2 Metrische Räume" in content
    # running headers like "8 1.2. METRISCHE RÄUME" are gone from the cleaned text
    assert not re.search(r"(?m)^\d+ \d\.\d\. [A-ZÄÖÜ ]+$", content)
    assert any(
        c.heading_path == ["1 Topologische Grundbegriffe", "1.2 Metrische Räume"] for c in chunks
    )


def test_pdf_outline_becomes_headings() -> None:
    _, content, chunks = processed(CORPUS / "pdf" / "pdflatex-outline.pdf")
    assert [h for h in re.findall(r"(?m)^# (\w+)$", content)] == [
        "Foo", "Bar", "Baz", "Foo", "Bar", "Baz", "Foo", "Bar", "Baz",
    ]  # fmt: skip
    assert {tuple(c.heading_path) for c in chunks} >= {("Foo",), ("Bar",), ("Baz",)}


def test_html_keeps_headings_and_drops_boilerplate() -> None:
    _, content, _ = processed(CORPUS / "html" / "en.wikipedia.org.tsne.html")
    assert "## Details" in content
    assert "[edit]" not in content and "\\[edit\\]" not in content
    assert "Jump to navigation" not in content
