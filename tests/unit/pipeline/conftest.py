"""Shared helpers for the pipeline unit tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus"

CONTAINER = (
    '<?xml version="1.0"?><container version="1.0" '
    'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
    '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
    "</rootfiles></container>"
)


def opf(items: list[tuple[str, str]], title: str = "Tiny Book", creator: str = "A. Writer") -> str:
    manifest = "".join(
        f'<item id="{i}" href="{href}" media-type="application/xhtml+xml"/>' for i, href in items
    )
    spine = "".join(f'<itemref idref="{i}"/>' for i, _ in items)
    return (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:title>{title}</dc:title><dc:creator>{creator}</dc:creator>"
        "<dc:language>en</dc:language></metadata>"
        f"<manifest>{manifest}</manifest><spine>{spine}</spine></package>"
    )


def xhtml(title: str, body: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
        f"<head><title>{title}</title></head><body>{body}</body></html>"
    )


def build_epub(files: dict[str, str | bytes], *, container: bool = True) -> bytes:
    """A minimal EPUB: mimetype stored first, then container.xml and ``files``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        if container:
            zf.writestr("META-INF/container.xml", CONTAINER)
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def tiny_epub(chapters: int = 3) -> bytes:
    items = [(f"c{i}", f"chap{i}.xhtml") for i in range(1, chapters + 1)]
    files: dict[str, str | bytes] = {"OEBPS/content.opf": opf(items)}
    for i in range(1, chapters + 1):
        files[f"OEBPS/chap{i}.xhtml"] = xhtml(
            f"Chapter {i}",
            f"<h1>Chapter {i}</h1><p>This is   the text\n of chapter {i}.</p>"
            f"<p>It has <em>two</em> paragraphs and a <a href='chap1.xhtml'>link</a>.</p>"
            "<script>alert('x')</script>",
        )
    return build_epub(files)


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"corpus not found at {CORPUS} (the checkout needs ../shared)"
    return CORPUS
