"""detect_type(): bytes first, then the declared type, then sniffing."""

from __future__ import annotations

import os

import pytest

from rhizome.errors import InvalidInputError
from rhizome.pipeline.extract import detect_type

from .conftest import tiny_epub


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "expected"),
    [
        (b"%PDF-1.7\n...", None, None, "pdf"),
        (b"%PDF-1.4\n...", "notes.txt", "text/plain", "pdf"),  # bytes beat the name
        (b"\x00\x00junk%PDF-1.5\n", "x.pdf", None, "pdf"),  # header a little way in
        (b"<!DOCTYPE html><html><body>x</body></html>", None, None, "html"),
        (b"  <?xml version='1.0'?>\n<html xmlns='x'><body/></html>", None, None, "html"),
        (b"<p>fragment</p>", "page.htm", None, "html"),
        (b"# Title\n\nSome *text* and a [link](http://x).\n", None, None, "markdown"),
        (b"just words", "readme.md", None, "markdown"),
        (b"just words", None, "text/markdown; charset=utf-8", "markdown"),
        (b"Plain words here.\nAnother line.\n", None, None, "text"),
        (b"Plain words here.", "a.TXT", None, "text"),
        (b"<html><body>hi</body></html>", "saved.txt", None, "html"),
        (b"<p>hi</p>", None, "application/xhtml+xml", "html"),
        ("Grüße, Café".encode("cp1252"), None, None, "text"),
        ("Ünïcödé".encode("utf-16"), None, None, "text"),
    ],
)
def test_detect(data: bytes, filename: str | None, content_type: str | None, expected: str) -> None:
    assert detect_type(data, filename, content_type) == expected


def test_detect_epub_by_mimetype_and_by_container() -> None:
    data = tiny_epub()
    assert detect_type(data) == "epub"
    # without the leading mimetype entry the container file still identifies it
    import io
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info in src.infolist():
            if info.filename != "mimetype":
                zf.writestr(info.filename, src.read(info))
    assert detect_type(buf.getvalue(), "book.zip") == "epub"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG image"),
        (b"GIF89a\x01\x00", "GIF image"),
        (b"\x7fELF\x02\x01\x01", "ELF"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"{\\rtf1\\ansi hello}", "RTF"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(50), "Microsoft Office"),
        (os.urandom(3000), "binary"),
        (b"text with \x00 nul bytes in it", "binary"),
    ],
)
def test_detect_rejects(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        detect_type(data, "upload.bin")
    assert fragment in info.value.message
    assert info.value.hint


def test_declared_pdf_that_is_text() -> None:
    with pytest.raises(InvalidInputError) as info:
        detect_type(b"Just some words, not a PDF at all.", "paper.pdf")
    assert "declared as PDF" in info.value.message
