"""The result type shared by every extractor, and small helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ProgressFn = Callable[[int, int], None]

#: Ends every page of a PDF in :attr:`Extracted.markdown`; :func:`rhizome.pipeline.clean.clean`
#: uses it to find running headers/footers and removes it.
PAGE_BREAK = "\f"


@dataclass
class Extracted:
    """A source document turned into markdown.

    ``markdown`` uses ATX headings (``# ``, ``## ``…). For PDFs it is *raw*: one line per
    line of text in the PDF and every page followed by a form feed (``\\f``) so that
    :func:`~rhizome.pipeline.clean.clean` can drop running headers, footers and page
    numbers and rebuild paragraphs. Always run ``clean()`` on it before chunking.
    """

    markdown: str
    title: str | None
    author: str | None
    source_type: str  # "pdf" | "epub" | "html" | "markdown" | "text"
    page_count: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def human_size(n: int) -> str:
    """``1536`` → ``'1.5 KB'``; used in user-facing messages."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            if unit == "bytes":
                return f"{int(size)} bytes"
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - loop always returns


def tidy_title(value: str | None, limit: int = 200) -> str | None:
    """Collapse whitespace, strip markdown heading marks; ``None`` when nothing is left."""
    if value is None:
        return None
    text = " ".join(value.split()).strip()
    text = text.lstrip("#").strip()
    if not text:
        return None
    if len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0]
        text = (cut or text[:limit]).rstrip(" ,.;:") + "…"
    return text
