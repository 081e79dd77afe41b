"""Source documents → markdown.

::

    data, content_type, final_url = fetch_url(url)          # web pages, remote files
    extracted = extract(data, filename="book.epub")           # or content_type=..., url=...
    extracted = extract_text(pasted, title="My note")         # pasted text

Every problem with the input raises :class:`~rhizome.errors.InvalidInputError` (never
retried) whose ``message`` says what is wrong and ``hint`` what to do: empty, too large,
binary junk or an unsupported format, encrypted, damaged or truncated files, zip bombs.
Network trouble while fetching raises :class:`~rhizome.errors.TransientError`.

The extractor modules (pypdfium2, trafilatura, markdownify) are imported on first use.
"""

from __future__ import annotations

from rhizome.errors import InvalidInputError

from .base import PAGE_BREAK, Extracted, ProgressFn, human_size
from .detect import SUPPORTED, SUPPORTED_HINT, detect_type
from .fetch import fetch_url
from .text import extract_text

__all__ = [
    "MAX_SOURCE_BYTES",
    "PAGE_BREAK",
    "SUPPORTED",
    "Extracted",
    "detect_type",
    "extract",
    "extract_text",
    "fetch_url",
]

MAX_SOURCE_BYTES = 200 * 1024 * 1024


def extract(
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    source_type: str | None = None,
    url: str | None = None,
    max_bytes: int = MAX_SOURCE_BYTES,
    progress: ProgressFn | None = None,
) -> Extracted:
    """Turn a document's bytes into :class:`Extracted` markdown.

    ``source_type`` skips detection; otherwise :func:`detect_type` decides from the bytes,
    ``content_type`` and ``filename``. ``progress(done, total)`` is called per PDF page
    and per EPUB spine document. ``url`` (where the bytes came from) helps HTML metadata.
    PDF markdown is raw (one line per PDF line, every page followed by ``\\f``): run
    ``clean()`` before chunking.
    """
    if not data:
        raise InvalidInputError(
            "The file is empty (0 bytes).",
            "Check that the file was saved or downloaded completely, then add it again.",
        )
    if len(data) > max_bytes:
        raise InvalidInputError(
            f"The file is too large ({human_size(len(data))}; the limit is "
            f"{human_size(max_bytes)}).",
            "Split the document into smaller parts (or compress its images), then add them.",
        )
    kind = source_type or detect_type(data, filename, content_type)
    if kind not in SUPPORTED:
        raise InvalidInputError(f"Unsupported document type {kind!r}.", SUPPORTED_HINT)
    if kind == "pdf":
        from .pdf import extract_pdf

        result = extract_pdf(data, progress=progress)
    elif kind == "epub":
        from .epub import extract_epub

        result = extract_epub(data, progress=progress)
    elif kind == "html":
        from .html import extract_html

        result = extract_html(data, url=url)
    elif kind == "markdown":
        from .text import extract_markdown

        result = extract_markdown(data)
    else:
        from .text import extract_plain

        result = extract_plain(data)
    if filename:
        result.metadata.setdefault("filename", filename)
    if url:
        result.metadata.setdefault("url", url)
    result.metadata.setdefault("size_bytes", len(data))
    return result
