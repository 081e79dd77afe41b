"""PDF → raw markdown with pypdfium2 (Apache-2.0/BSD).

The output keeps one line per line of PDF text and ends every page with ``\\f``;
:func:`rhizome.pipeline.clean.clean` removes running headers/footers and page numbers and
rebuilds paragraphs. Outline (bookmark) entries become ATX headings where their title is
found on their target page, else at the top of that page; the outline is also kept in
``metadata["outline"]``.

PDFium is not thread-safe, and the worker runs jobs in threads: every PDFium call here
holds one process-wide lock. The lock is released between pages, so two PDFs extracted at
once take turns page by page, and ``progress`` is called without holding it.
"""

from __future__ import annotations

import ctypes
import re
import statistics
import threading
import unicodedata
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]

from rhizome.errors import InvalidInputError

from .base import PAGE_BREAK, Extracted, ProgressFn, tidy_title

PDFIUM_LOCK = threading.Lock()

# pdfium marks a hyphen it removed at a line break with \x02 (newer builds) or U+FFFE
_SOFT_HYPHEN = re.compile(r"[\x02\ufffe\u00ad](?:\r?\n)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_JUNK_TITLES = re.compile(
    r"^(untitled|title|document|microsoft word - .*|.*\.(pdf|docx?|odt|tex|dvi|rtf|txt|indd|qxd))$",
    re.IGNORECASE,
)
_KEY = re.compile(r"[\W_]+", re.UNICODE)
# big-font lines on page 1 that are not titles
_GENERIC_HEADINGS = re.compile(
    r"(?:(?:table of )?contents?|inhalt(?:sverzeichnis)?|sommaire|índice|indice|abstract|"
    r"zusammenfassung|preface|vorwort|foreword|introduction|einleitung|chapter \w+|"
    r"kapitel \w+|part \w+|\d+(?:\.\d+)*\.?)[\s:.]*$",
    re.IGNORECASE,
)

_PASSWORD_HINT = (
    "Open it with its password and save an unprotected copy (for example Print → Save as "
    "PDF), then add that copy."
)
_DAMAGED_HINT = (
    "Download or export the PDF again (or re-save it with a PDF viewer), then add it again."
)


_NUMBERING = re.compile(r"^\s*\d{1,3}(?:\.\d{1,3})*\.?\s+")


def _key(text: str) -> str:
    return _KEY.sub("", unicodedata.normalize("NFKC", text).casefold())


def _keys(text: str) -> tuple[str, str]:
    """The comparison key of a title or line, with and without its section number."""
    return _key(text), _key(_NUMBERING.sub("", text, count=1))


def _same(title: tuple[str, str], line: str) -> bool:
    full, bare = _keys(line)
    return title[0] == full or (bool(title[1]) and title[1] == bare)


def _starts(title: tuple[str, str], line: str) -> bool:
    full, bare = _keys(line)
    return full.startswith(title[0]) or (bool(title[1]) and bare.startswith(title[1]))


def _page_text(raw: str) -> str:
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    # a word split at a line break loses its hyphen ("exam-ple" → "example") unless the
    # second part starts with a capital ("Schwarz-Weiß", "Anglo-Saxon"): a real hyphen
    text = _SOFT_HYPHEN.sub(lambda m: "-" if text[m.end() : m.end() + 1].isupper() else "", text)
    text = _CONTROL.sub("", text)
    return "\n".join(line.strip() for line in text.split("\n"))


def _good_title(value: str | None) -> str | None:
    title = tidy_title(value)
    if not title:
        return None
    title = re.sub(r"^Microsoft (Word|PowerPoint) - ", "", title)
    if _JUNK_TITLES.match(title) or len(_key(title)) < 2:
        return None
    return title


def _title_from_fonts(textpage: Any, limit: int = 4000) -> str | None:
    """The largest-font line near the top of the first page, when it stands out."""
    n = min(pdfium_c.FPDFText_CountChars(textpage.raw), limit)
    lines: list[tuple[float, str]] = []
    chars: list[str] = []
    size = 0.0
    sizes: list[float] = []
    for i in range(n):
        code = pdfium_c.FPDFText_GetUnicode(textpage.raw, i)
        ch = chr(code) if 0 < code < 0x110000 else ""
        if ch in ("\n", "\r"):
            if chars:
                lines.append((size, "".join(chars)))
            chars, size = [], 0.0
            continue
        chars.append(ch)
        if ch.strip():
            s = float(pdfium_c.FPDFText_GetFontSize(textpage.raw, i))
            sizes.append(s)
            size = max(size, s)
    if chars:
        lines.append((size, "".join(chars)))
    if len(sizes) < 20:
        return None
    body = statistics.median(sizes)
    candidates = [
        (s, t)
        for s, t in lines[:15]
        if sum(c.isalpha() for c in t) >= 3 and not _GENERIC_HEADINGS.match(t.strip())
    ]
    if not candidates:
        return None
    top = max(s for s, _ in candidates)
    if top < body * 1.2:
        return None
    first = next(k for k, (s, _) in enumerate(candidates) if s == top)
    parts = [candidates[first][1]]
    for s, t in candidates[first + 1 : first + 3]:
        if abs(s - top) > 0.5:
            break
        parts.append(t)
    return tidy_title(" ".join(parts), limit=200)


def _outline(pdf: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        for item in pdf.get_toc(max_depth=6):
            title = tidy_title(item.get_title())
            if not title:
                continue
            dest = item.get_dest()
            page_index = dest.get_index() if dest is not None else None
            out.append({"title": title, "level": int(item.level), "page": page_index})
            if len(out) >= 5000:
                break
    except Exception:  # a malformed outline must not fail the document
        return out
    return out


def _is_text(line: str) -> bool:
    return bool(line) and not line.startswith("#")


def _apply_outline(pages: list[list[str]], outline: list[dict[str, Any]]) -> int:
    """Turn outline titles into ATX headings on their target pages; returns how many."""
    placed = 0
    cursor: dict[int, int] = {}  # page -> index after the last heading put on it
    for entry in outline:
        index = entry["page"]
        if index is None or not 0 <= index < len(pages):
            continue
        lines = pages[index]
        start = cursor.get(index, 0)
        key = _keys(entry["title"])
        heading = "#" * min(entry["level"] + 1, 6) + " " + entry["title"]
        if not key[0]:
            continue
        exact = next(
            (k for k in range(start, len(lines)) if _is_text(lines[k]) and _same(key, lines[k])),
            None,
        )
        if exact is not None:
            lines[exact] = heading
            cursor[index] = exact + 1
        else:
            prefix = None
            if len(key[1]) >= 8:
                prefix = next(
                    (
                        k
                        for k in range(start, len(lines))
                        if _is_text(lines[k]) and _starts(key, lines[k])
                    ),
                    None,
                )
            at = start if prefix is None else prefix
            lines.insert(at, heading)
            cursor[index] = at + 1
        placed += 1
    return placed


def _open(data: bytes) -> Any:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise InvalidInputError(
                "This PDF is password-protected (encrypted), so its text cannot be read.",
                _PASSWORD_HINT,
            ) from None
        raise InvalidInputError(
            f"The PDF file is damaged and cannot be opened ({str(exc).rstrip('.')}).",
            _DAMAGED_HINT,
        ) from None


def extract_pdf(data: bytes, *, progress: ProgressFn | None = None) -> Extracted:
    if b"%%EOF" not in data[-4096:]:
        raise InvalidInputError(
            "The PDF file is incomplete: it ends before the end-of-file marker, so it was "
            "probably cut off during a download or copy.",
            _DAMAGED_HINT,
        )
    with PDFIUM_LOCK:
        pdf = _open(data)
    try:
        with PDFIUM_LOCK:
            count = len(pdf)
            meta = {k: v for k, v in pdf.get_metadata_dict(skip_empty=True).items() if v}
            outline = _outline(pdf)
            version = pdf.get_version()
        if count == 0:
            raise InvalidInputError("The PDF has no pages.", _DAMAGED_HINT)
        pages: list[list[str]] = []
        damaged: list[int] = []
        font_title: str | None = None
        for i in range(count):
            with PDFIUM_LOCK:
                try:
                    page = pdf[i]
                    try:
                        textpage = page.get_textpage()
                        try:
                            text = textpage.get_text_range()
                            if i == 0:
                                font_title = _title_from_fonts(textpage)
                        finally:
                            textpage.close()
                    finally:
                        page.close()
                except (pdfium.PdfiumError, ctypes.ArgumentError, OSError):
                    damaged.append(i + 1)
                    text = ""
            pages.append(_page_text(text).split("\n"))
            if progress is not None:
                progress(i + 1, count)
    finally:
        with PDFIUM_LOCK:
            pdf.close()
    if len(damaged) == count:
        raise InvalidInputError(
            "The PDF file is damaged: none of its pages can be read.", _DAMAGED_HINT
        )
    if not any(line.strip() for lines in pages for line in lines):
        raise InvalidInputError(
            "The PDF has no text layer (it looks like scanned images), so there is no text "
            "to extract.",
            "Run text recognition (OCR) on it first, for example with OCRmyPDF, then add "
            "the result.",
        )
    headings = _apply_outline(pages, outline)
    # every page ends with a page break, so one-page PDFs are recognised by clean() too
    markdown = "".join("\n".join(lines).strip("\n") + "\n" + PAGE_BREAK + "\n" for lines in pages)
    title = _good_title(meta.get("Title")) or font_title
    metadata: dict[str, Any] = {
        "pdf_version": version,
        "outline": outline,
        "outline_headings": headings,
    }
    for key in ("Subject", "Keywords", "Creator", "Producer", "CreationDate", "ModDate"):
        if meta.get(key):
            metadata[key.lower()] = meta[key]
    if damaged:
        metadata["unreadable_pages"] = damaged
    return Extracted(
        markdown=markdown,
        title=title,
        author=tidy_title(meta.get("Author")),
        source_type="pdf",
        page_count=count,
        metadata=metadata,
    )
