"""Markdown files, plain-text files and pasted text."""

from __future__ import annotations

import codecs
import re
from typing import Any

from rhizome.errors import InvalidInputError

from .base import Extracted, tidy_title

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# bytes that cp1252 leaves undefined: their presence means the text is not cp1252
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_FRONT_MATTER = re.compile(
    r"\A(?:\ufeff)?---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL
)
_MD_START = re.compile(r"#{1,6}(\s|$)|```|~~~")
_FM_LINE = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:[ \t]*(.*?)[ \t]*$")


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode text bytes: BOM, then UTF-8, then cp1252, then latin-1 (never fails).

    Returns ``(text, encoding)``.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                break
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if not _CP1252_UNDEFINED.intersection(data):
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:  # pragma: no cover - excluded above
            pass
    return data.decode("latin-1"), "latin-1"


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def first_heading(markdown: str) -> str | None:
    """The text of the first ATX heading, preferring the first level-1 heading."""
    best: tuple[int, str] | None = None
    in_fence = False
    for line in markdown.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        m = _ATX_HEADING.match(line)
        if m:
            level = len(m.group(1))
            if best is None or level < best[0]:
                best = (level, m.group(2))
            if level == 1:
                break
    return tidy_title(best[1]) if best else None


def first_line(text: str) -> str | None:
    for line in text.split("\n"):
        if line.strip():
            return tidy_title(line, limit=120)
    return None


def _parse_front_matter(block: str) -> dict[str, Any]:
    """A tolerant reader for the simple ``key: value`` YAML that notes use."""
    out: dict[str, Any] = {}
    for raw in block.split("\n"):
        m = _FM_LINE.match(raw)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if value:
            out[key] = value
    return out


def extract_markdown(data: bytes) -> Extracted:
    text, encoding = decode_text(data)
    text = _normalize_newlines(text)
    meta: dict[str, Any] = {"encoding": encoding}
    front: dict[str, Any] = {}
    m = _FRONT_MATTER.match(text)
    if m:
        front = _parse_front_matter(m.group(1))
        text = text[m.end() :]
        meta["front_matter"] = front
    if not text.strip():
        raise InvalidInputError(
            "The Markdown file has no text.", "Add some content to the file, then add it again."
        )
    title = tidy_title(str(front["title"])) if "title" in front else None
    title = title or first_heading(text) or first_line(text)
    author = front.get("author")
    return Extracted(
        markdown=text,
        title=title,
        author=tidy_title(str(author)) if author else None,
        source_type="markdown",
        page_count=None,
        metadata=meta,
    )


def _looks_hard_wrapped(lines: list[str]) -> bool:
    """Prose wrapped at a fixed width (e-mails, Project Gutenberg texts)."""
    if len(lines) < 3:
        return False
    width = max(len(line) for line in lines)
    if width < 50:
        return False
    full = sum(1 for line in lines[:-1] if len(line) >= 0.6 * width)
    return full >= 0.8 * (len(lines) - 1)


def text_to_markdown(text: str) -> str:
    """Plain text → markdown paragraphs.

    Text with form feeds is treated as pages (see :func:`rhizome.pipeline.clean.clean`).
    Otherwise blocks separated by blank lines become paragraphs. Inside a block, hard-wrapped prose
    is kept as soft line breaks (one paragraph); other line breaks (verse, addresses,
    lists) become markdown hard breaks (a trailing backslash). Indentation is dropped (it
    would turn into code blocks) and lines that would read as headings or code fences
    are escaped.
    """
    text = _normalize_newlines(text).expandtabs(4)
    if "\f" in text:
        # paged text (form feeds, e.g. from pdftotext): keep the lines and the page breaks
        # as the PDF extractor does, so clean() can drop running headers and reflow
        pages = []
        for page in text.split("\f"):
            lines = [line.strip() for line in page.split("\n")]
            pages.append("\n".join("\\" + ln if _MD_START.match(ln) else ln for ln in lines))
        return "\n\f\n".join(pages).strip("\n") + "\n"
    blocks: list[str] = []
    for block in re.split(r"\n[ \t]*\n", text):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        lines = ["\\" + line if _MD_START.match(line) else line for line in lines]
        joiner = "\n" if _looks_hard_wrapped(lines) else "\\\n"
        blocks.append(joiner.join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def extract_plain(data: bytes) -> Extracted:
    text, encoding = decode_text(data)
    ex = extract_text(text)
    ex.metadata["encoding"] = encoding
    return ex


def extract_text(text: str, *, title: str | None = None) -> Extracted:
    """Pasted text (or a decoded ``.txt`` file) → :class:`Extracted` with ``source_type='text'``."""
    if not text.strip():
        raise InvalidInputError(
            "The text is empty.", "Paste or type some text, then submit it again."
        )
    markdown = text_to_markdown(text)
    return Extracted(
        markdown=markdown,
        title=tidy_title(title) or first_line(text),
        author=None,
        source_type="text",
        page_count=None,
        metadata={},
    )
