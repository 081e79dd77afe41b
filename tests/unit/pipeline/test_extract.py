"""extract(): formats, metadata, progress, and every kind of bad input."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from rhizome.errors import InvalidInputError
from rhizome.pipeline.extract import Extracted, extract, extract_text
from rhizome.pipeline.extract import epub as epub_module

from .conftest import CONTAINER, build_epub, opf, tiny_epub, xhtml

# --- bad input --------------------------------------------------------------------------


def _invalid(data: bytes, **kwargs: object) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        extract(data, **kwargs)  # type: ignore[arg-type]
    err = info.value
    assert err.error_type == "invalid"
    assert err.message and err.hint, "every error says what is wrong and what to do"
    return err


def test_empty_file() -> None:
    err = _invalid(b"", filename="notes.md")
    assert "empty" in err.message


def test_oversized_file() -> None:
    err = _invalid(b"hello world " * 100, filename="a.txt", max_bytes=100)
    assert "too large" in err.message
    assert "100 bytes" in err.message


def test_random_bytes() -> None:
    err = _invalid(os.urandom(4096), filename="mystery.bin")
    assert "binary" in err.message


def test_random_bytes_named_pdf() -> None:
    err = _invalid(os.urandom(4096), filename="paper.pdf")
    assert "PDF" in err.message and "damaged" in err.message


def test_png_header() -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(200)
    err = _invalid(data, filename="scan.md")
    assert "PNG image" in err.message


def test_executable() -> None:
    data = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(200)
    err = _invalid(data, filename="setup.exe")
    assert "program" in err.message


def test_unsupported_zip_docx() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
    err = _invalid(buf.getvalue(), filename="report.docx")
    assert "Word document" in err.message


def test_unknown_source_type() -> None:
    err = _invalid(b"hello", source_type="docx")
    assert "Unsupported" in err.message


def test_encrypted_pdf(corpus: Path) -> None:
    data = (corpus / "pdf" / "libreoffice-writer-password.pdf").read_bytes()
    err = _invalid(data, filename="secret.pdf")
    assert "password" in err.message
    assert "unprotected copy" in err.hint


def test_truncated_pdf(corpus: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cut.pdf"
    shutil.copy(corpus / "pdf" / "GeoTopo-komprimiert.pdf", copy)
    data = copy.read_bytes()
    # PDFium would happily "repair" a file cut at 90 %: we refuse it as incomplete
    for fraction in (0.3, 0.9):
        err = _invalid(data[: int(len(data) * fraction)], filename="cut.pdf")
        assert "incomplete" in err.message or "damaged" in err.message


def test_corrupt_pdf() -> None:
    data = b"%PDF-1.7\n" + os.urandom(2000) + b"\n%%EOF\n"
    err = _invalid(data, filename="broken.pdf")
    assert "damaged" in err.message


def test_pdf_without_text() -> None:
    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    pdf = pdfium.PdfDocument.new()
    pdf.new_page(200, 200)
    buf = io.BytesIO()
    pdf.save(buf)
    pdf.close()
    err = _invalid(buf.getvalue(), filename="scan.pdf")
    assert "no text layer" in err.message
    assert "OCR" in err.hint


def test_epub_not_a_zip() -> None:
    err = _invalid(b"PK\x03\x04" + os.urandom(500), filename="book.epub")
    assert "damaged" in err.message


def test_epub_without_opf() -> None:
    data = build_epub({"OEBPS/chap1.xhtml": xhtml("c", "<p>x</p>")}, container=False)
    err = _invalid(data, filename="book.epub")
    assert "package document" in err.message


def test_epub_container_points_nowhere() -> None:
    data = build_epub({"OEBPS/chap1.xhtml": xhtml("c", "<p>x</p>")})
    err = _invalid(data, filename="book.epub")
    assert "missing" in err.message


def test_epub_with_parent_path_entry() -> None:
    items = [("c1", "chap1.xhtml")]
    data = build_epub(
        {
            "OEBPS/content.opf": opf(items),
            "OEBPS/chap1.xhtml": xhtml("c", "<p>text</p>"),
            "../evil.xhtml": "pwned",
        }
    )
    err = _invalid(data, filename="book.epub")
    assert "unsafe file path" in err.message


def test_epub_spine_escaping_the_archive() -> None:
    items = [("c1", "../../../etc/passwd")]
    data = build_epub({"OEBPS/content.opf": opf(items)})
    err = _invalid(data, filename="book.epub")
    assert "outside the book" in err.message


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """An EPUB whose chapter is a 200 MB run of zeros (compresses to ~200 KB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/container.xml", CONTAINER)
        zf.writestr("OEBPS/content.opf", opf([("c1", "chap1.xhtml")]))
        block = bytes(1024 * 1024)
        with zf.open("OEBPS/chap1.xhtml", "w", force_zip64=True) as fh:
            for _ in range(200):
                fh.write(block)
    return buf.getvalue()


def test_zip_bomb(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 1024 * 1024
    err = _invalid(zip_bomb, filename="bomb.epub")
    assert "zip bomb" in err.message


def test_epub_entry_read_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(epub_module, "MAX_ENTRY_BYTES", 100)
    err = _invalid(tiny_epub(), filename="book.epub")
    assert "too large" in err.message


def test_epub_too_many_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(epub_module, "MAX_ENTRIES", 3)
    err = _invalid(tiny_epub(), filename="book.epub")
    assert "files inside" in err.message


def test_empty_html_page() -> None:
    err = _invalid(b"<html><head><title></title></head><body>  </body></html>", filename="x.html")
    assert "no readable text" in err.message


def test_whitespace_only_text() -> None:
    err = _invalid(b"   \n\n\t  \n", filename="empty.txt")
    assert "empty" in err.message


def test_extract_text_empty() -> None:
    with pytest.raises(InvalidInputError):
        extract_text("   \n ")


# --- formats ----------------------------------------------------------------------------


def test_epub_extracts_chapters_and_metadata() -> None:
    calls: list[tuple[int, int]] = []
    ex = extract(tiny_epub(3), filename="tiny.epub", progress=lambda d, t: calls.append((d, t)))
    assert isinstance(ex, Extracted)
    assert ex.source_type == "epub"
    assert ex.title == "Tiny Book"
    assert ex.author == "A. Writer"
    assert ex.metadata["language"] == "en"
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert "# Chapter 1" in ex.markdown and "# Chapter 3" in ex.markdown
    assert "This is the text of chapter 1." in ex.markdown  # HTML whitespace collapsed
    assert "*two*" in ex.markdown
    assert "alert" not in ex.markdown  # scripts dropped
    assert "](" not in ex.markdown  # links kept as text only
    assert ex.markdown.index("Chapter 1") < ex.markdown.index("Chapter 2")


def test_pdf_progress_and_metadata(corpus: Path) -> None:
    calls: list[tuple[int, int]] = []
    data = (corpus / "pdf" / "pdflatex-outline.pdf").read_bytes()
    ex = extract(data, progress=lambda d, t: calls.append((d, t)))
    assert ex.source_type == "pdf" and ex.page_count == 4
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert ex.markdown.count("\f") == 4  # every page ends with a page break
    assert [e["title"] for e in ex.metadata["outline"]][:3] == ["Foo", "Bar", "Baz"]
    assert "# Foo" in ex.markdown


def test_pdf_extraction_is_thread_safe(corpus: Path) -> None:
    # PDFium is not thread-safe; the worker runs jobs in threads
    from concurrent.futures import ThreadPoolExecutor

    names = ["multicolumn.pdf", "pdflatex-4-pages.pdf", "GeoTopo-komprimiert.pdf"] * 3
    blobs = {name: (corpus / "pdf" / name).read_bytes() for name in set(names)}
    expected = {name: extract(data).markdown for name, data in blobs.items()}
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda n: (n, extract(blobs[n]).markdown), names))
    for name, markdown in results:
        assert markdown == expected[name]


def test_pdf_soft_hyphens_and_crlf(corpus: Path) -> None:
    ex = extract((corpus / "pdf" / "minimal-document.pdf").read_bytes())
    assert "\r" not in ex.markdown and "\ufffe" not in ex.markdown and "\x02" not in ex.markdown
    assert "takimata" in ex.markdown


def test_markdown_front_matter_and_title() -> None:
    data = b"---\ntitle: 'My Note'\nauthor: Ada\ntags: x\n---\n\n# Heading\n\nBody text.\n"
    ex = extract(data, filename="note.md")
    assert ex.source_type == "markdown"
    assert ex.title == "My Note" and ex.author == "Ada"
    assert ex.markdown.startswith("\n# Heading") or ex.markdown.startswith("# Heading")
    assert ex.metadata["front_matter"]["tags"] == "x"


def test_markdown_title_from_heading_and_crlf() -> None:
    ex = extract(b"Intro line\r\n\r\n## Sub\r\n\r\n# Main Title #\r\n\r\ntext\r\n", filename="n.md")
    assert ex.title == "Main Title"
    assert "\r" not in ex.markdown


def test_text_decoding_fallbacks() -> None:
    ex = extract("Café crème\n\nzweiter Absatz".encode("cp1252"), filename="a.txt")
    assert ex.title == "Café crème"
    assert ex.metadata["encoding"] == "cp1252"
    ex = extract("Ünïcödé".encode("utf-16"), filename="b.txt")
    assert ex.title == "Ünïcödé"
    ex = extract(b"\xef\xbb\xbfBOM title\nline", filename="c.txt")
    assert ex.title == "BOM title"


def test_plain_text_to_markdown_paragraphs() -> None:
    text = (
        "Title line\n\n# not a heading\nsecond line\n\n"
        + "\n".join(["word " * 14] * 4)  # hard-wrapped prose
    )
    ex = extract_text(text, title="  Pasted   note ")
    assert ex.source_type == "text" and ex.title == "Pasted note"
    blocks = ex.markdown.strip().split("\n\n")
    assert blocks[0] == "Title line"
    assert blocks[1] == "\\# not a heading\\\nsecond line"  # escaped, hard break kept
    assert "\\" not in blocks[2]  # wrapped prose stays one paragraph (soft breaks)


def test_paged_plain_text_goes_through_page_mode() -> None:
    from rhizome.pipeline.clean import clean

    body = "A line of prose that is long enough to look like a full line here\nand ends.\n"
    pages = [f"Annual Report 2024\n{body}{n}" for n in range(1, 6)]
    ex = extract("\f".join(pages).encode(), filename="report.txt")
    assert ex.markdown.count("\f") == 4
    cleaned = clean(ex.markdown)
    assert "Annual Report" not in cleaned
    assert cleaned.count("A line of prose that is long enough") == 5
    assert "\\" not in cleaned


def test_html_with_trafilatura_and_metadata() -> None:
    paragraphs = "".join(
        f"<p>Paragraph {i} talks at length about rivers, forests and the sea, "
        "because an article needs enough words for the extractor to trust it.</p>"
        for i in range(8)
    )
    html = (
        "<html><head><title>River Notes</title>"
        '<meta name="author" content="Jane Doe"></head><body>'
        "<nav><a href='/'>Home</a> <a href='/about'>About</a></nav>"
        f"<article><h1>River Notes</h1><h2>Part one</h2>{paragraphs}</article>"
        "<script>var tracking = 1;</script><footer>Copyright footer</footer></body></html>"
    ).encode()
    ex = extract(html, content_type="text/html; charset=utf-8", url="https://example.org/r")
    assert ex.source_type == "html"
    assert ex.title == "River Notes"
    assert ex.author == "Jane Doe"
    assert ex.metadata["url"] == "https://example.org/r"
    assert "## Part one" in ex.markdown
    assert ex.markdown.count("# River Notes") == 1
    assert "tracking" not in ex.markdown


def test_html_fragment_falls_back_to_markdownify() -> None:
    # trafilatura returns None for a bare fragment: markdownify of the body takes over
    html = b"<p>Hello <b>world</b></p><style>p{}</style><script>x()</script><ul><li>one</li></ul>"
    ex = extract(html, filename="fragment.html")
    assert ex.metadata["extractor"] == "markdownify"
    assert "Hello **world**" in ex.markdown
    assert "- one" in ex.markdown
    assert "p{}" not in ex.markdown and "x()" not in ex.markdown


def test_html_fallback_when_trafilatura_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import trafilatura

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(trafilatura, "bare_extraction", boom)
    html = b"<html><head><title>Tiny</title></head><body><h2>Sub</h2><p>Hi.</p></body></html>"
    ex = extract(html, filename="tiny.html")
    assert ex.metadata["extractor"] == "markdownify"
    assert ex.title == "Tiny"
    assert ex.markdown.startswith("# Tiny\n\n## Sub")
