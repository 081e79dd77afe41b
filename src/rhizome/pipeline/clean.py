"""Raw extracted markdown → clean markdown.

:func:`clean` is idempotent (``clean(clean(x)) == clean(x)``) and never changes the text
inside fenced code blocks (```` ``` ```` or ``~~~``) beyond turning ``\\r\\n`` into ``\\n``.

Everywhere (outside code fences):

- line endings → ``\\n``; control characters, zero-width spaces, soft hyphens and the
  PDF hyphenation markers removed; exotic spaces (no-break, thin…) → plain spaces;
  Unicode NFC;
- trailing whitespace dropped, runs of spaces/tabs inside a line collapsed (lines indented
  by 4+ spaces — indented code — keep their inner spacing); a two-space markdown hard
  break becomes a backslash hard break;
- words hyphenated across a line break are joined (``exam-\\nple`` → ``example``) when the
  second part starts with a lower-case letter (``Anglo-\\nSaxon`` keeps its hyphen);
- paragraphs that are only a page number (``12``, ``- 12 -``, ``Page 12 of 40``) removed;
- runs of blank lines → one blank line; the result ends with exactly one ``\\n``.

Page mode. When the text holds form feeds (``\\f``, outside code fences) it is treated as
pages of a PDF: the PDF extractor emits one line per PDF text line and separates pages
with ``\\f`` (or call ``clean(pages=[...])``). Then, before the steps above:

- bare page numbers in the first/last two lines of a page are removed;
- running headers/footers are removed: a first/last line of a page that repeats (digits
  ignored) on at least 3 pages and 30 % of the pages, or that carries the page's number
  (``8 1.2. METRIC SPACES`` / ``1.2. METRIC SPACES 9``) with the same offset to the page
  index on at least 3 pages and 20 % of them;
- hard-wrapped lines are joined into paragraphs: a line ends its paragraph when it is
  clearly shorter than the page's median line (or a bit shorter and ends a sentence),
  headings and bullet items start new blocks (``•`` bullets become ``- ``);
- a paragraph cut by a page break is joined when the page ends mid-sentence and the next
  page starts with a lower-case letter.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict

PAGE_BREAK = "\f"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")
_INVISIBLE = re.compile(r"[\u00ad\u200b\u2060\ufeff\ufffe\uffff]")
_PDF_HYPHEN = re.compile(r"\x02\n?")
_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f]")
_INNER_SPACE = re.compile(r"[ \t]+")
_STRUCTURAL = re.compile(r"^ {0,3}(?:[-*+] |\d{1,9}[.)] |>|\||#|`{3}|~{3})")
# what a finished sentence ends with (Latin, CJK, Arabic punctuation; closing quotes)
_TERMINAL = tuple('.!?:;\u2026"\u201d\u00bb\u2019)]\u3002\uff01\uff1f\u061f')
_ROMAN = re.compile(r"^m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})$")
_DASH = "[-\u2013\u2014]"  # hyphen, en dash, em dash
_PAGE_NUMBER = re.compile(
    rf"^(?:{_DASH}\s*)?(?:(?:page|p\.|seite|s\.|p\u00e1g\.?|p\u00e1gina)\s*)?"
    r"(\d{1,4}|[ivxlcdm]{1,8})"
    rf"(?:\s*(?:/|of|von|de)\s*\d{{1,4}})?(?:\s*{_DASH})?$",
    re.IGNORECASE,
)
_DIGITS_ONLY_PAGE = re.compile(
    rf"^(?:{_DASH}\s*)?(?:(?:page|p\.|seite|s\.)\s*)?\d{{1,4}}"
    rf"(?:\s*(?:/|of|von)\s*\d{{1,4}})?(?:\s*{_DASH})?$",
    re.IGNORECASE,
)
_LEADING_NUMBER = re.compile(r"^(\d{1,4})\s+\S")
_TRAILING_NUMBER = re.compile(r"\S\s+(\d{1,4})$")
_BULLET = re.compile(r"^[•◦▪▫●○■□►▶➢➤✓✔·]\s*")
_ITEM = re.compile(rf"^(?:\(?(?:\d{{1,3}}|[ivx]{{1,4}}|[a-z])\)|\d{{1,3}}\.\s|(?:{_DASH}|\*)\s)")
_KEY_STRIP = re.compile(r"[\d\W_]+")


# --- helpers -------------------------------------------------------------------------


def _is_heading(line: str) -> bool:
    return bool(_HEADING.match(line))


def _is_page_number(line: str, *, allow_roman: bool) -> bool:
    text = line.strip()
    if not text:
        return False
    if not allow_roman:
        return bool(_DIGITS_ONLY_PAGE.match(text))
    m = _PAGE_NUMBER.match(text)
    if not m:
        return False
    number = m.group(1)
    return number.isdigit() or bool(_ROMAN.match(number.lower()))


def _split_fenced(lines: list[str]) -> list[tuple[bool, list[str]]]:
    """Group lines into (is_code, lines) runs; a fence's opening and closing lines are code."""
    out: list[tuple[bool, list[str]]] = []
    fence: str | None = None
    current: list[str] = []
    current_code = False

    def push(code: bool, line: str) -> None:
        nonlocal current, current_code
        if current and current_code != code:
            out.append((current_code, current))
            current = []
        current_code = code
        current.append(line)

    for line in lines:
        if fence is None:
            m = _FENCE.match(line)
            if m:
                fence = m.group(1)
                push(True, line)
            else:
                push(False, line)
        else:
            push(True, line)
            stripped = line.strip()
            if (
                stripped.startswith(fence[0] * len(fence))
                and not stripped.strip(fence[0])
                and len(line) - len(line.lstrip(" ")) <= 3
            ):
                fence = None
    if current:
        out.append((current_code, current))
    return out


# --- page mode -----------------------------------------------------------------------


def _split_pages(text: str) -> list[list[tuple[str, bool]]]:
    """Split on form feeds outside code fences → pages of (line, is_code)."""
    pages: list[list[tuple[str, bool]]] = [[]]
    for code, lines in _split_fenced(text.split("\n")):
        for line in lines:
            if code:
                pages[-1].append((line, True))
                continue
            parts = line.split(PAGE_BREAK)
            for k, part in enumerate(parts):
                if k:
                    pages.append([])
                pages[-1].append((part.strip(), False))
    if len(pages) > 1 and not any(line for line, _ in pages[-1]):
        pages.pop()  # the text after the last page break (PDF pages each end with one)
    return pages


def _edge_indexes(page: list[tuple[str, bool]], removed: set[int], n: int = 2) -> list[int]:
    """Indexes of the first and last ``n`` content lines (not code, not headings)."""
    content = [
        i
        for i, (line, code) in enumerate(page)
        if not code and line and not _is_heading(line) and i not in removed
    ]
    if len(content) <= 2 * n:
        return content
    return content[:n] + content[-n:]


def _furniture(pages: list[list[tuple[str, bool]]]) -> list[set[int]]:
    """Per page, the indexes of header/footer/page-number lines to drop."""
    count = len(pages)
    removed: list[set[int]] = [set() for _ in pages]
    # 1. bare page numbers at the edges of a page
    for p, page in enumerate(pages):
        for i in _edge_indexes(page, removed[p]):
            if _is_page_number(page[i][0], allow_roman=True):
                removed[p].add(i)
    if count < 3:
        return removed
    # 2. lines repeated at the top or bottom of many pages (digits ignored)
    tops: Counter[str] = Counter()
    bottoms: Counter[str] = Counter()
    firsts: list[tuple[int, str] | None] = []
    lasts: list[tuple[int, str] | None] = []
    for p, page in enumerate(pages):
        edges = _edge_indexes(page, removed[p], n=1)
        first = (
            (edges[0], _KEY_STRIP.sub(" ", page[edges[0]][0].casefold()).strip()) if edges else None
        )
        last = (
            (edges[-1], _KEY_STRIP.sub(" ", page[edges[-1]][0].casefold()).strip())
            if edges
            else None
        )
        firsts.append(first)
        lasts.append(last)
        if first and first[1]:
            tops[first[1]] += 1
        if last and last[1] and (not first or last[0] != first[0]):
            bottoms[last[1]] += 1
    need = max(3, math.ceil(0.3 * count))
    for p in range(count):
        for entry, counter in ((firsts[p], tops), (lasts[p], bottoms)):
            if entry and entry[1] and counter[entry[1]] >= need:
                removed[p].add(entry[0])
    # 3. running headers/footers that carry the page number (offset to the page index)
    offsets: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
    for p, page in enumerate(pages):
        seen: set[int] = set()
        for i in _edge_indexes(page, removed[p]):
            line = page[i][0]
            if len(line) > 120:
                continue
            for rx in (_LEADING_NUMBER, _TRAILING_NUMBER):
                m = rx.search(line)
                if m and any(c.isalpha() for c in line):
                    off = int(m.group(1)) - p
                    if off not in seen:
                        seen.add(off)
                        offsets[off].append((p, i))
    need = max(3, math.ceil(0.2 * count))
    for hits in offsets.values():
        if len({p for p, _ in hits}) >= need:
            for p, i in hits:
                removed[p].add(i)
    return removed


def _join(lines: list[str]) -> str:
    out = lines[0]
    for nxt in lines[1:]:
        if len(out) >= 2 and out.endswith("-") and out[-2].isalpha() and nxt[:1].isalpha():
            out = out[:-1] + nxt if nxt[0].islower() else out + nxt
        else:
            out = f"{out} {nxt}"
    return out


def _reflow(page: list[tuple[str, bool]]) -> list[str]:
    """One page's lines → blocks (paragraphs, headings, list items, code)."""
    widths = sorted(len(line) for line, code in page if not code and line and not _is_heading(line))
    # the median: PDFium joins a line that ends in a soft hyphen with the next one, so
    # hyphen-heavy pages have many double-length lines that would skew a high percentile
    typical = widths[len(widths) // 2] if widths else 0
    blocks: list[str] = []
    current: list[str] = []
    code_lines: list[str] = []

    def flush() -> None:
        if current:
            blocks.append(_join(current))
            current.clear()

    for line, code in page:
        if code:
            flush()
            code_lines.append(line)
            continue
        if code_lines:
            blocks.append("\n".join(code_lines))
            code_lines.clear()
        if not line:
            flush()
            continue
        if _is_heading(line):
            flush()
            blocks.append(line.strip())
            continue
        bullet = _BULLET.match(line)
        short = len(line) < 0.7 * typical
        if bullet:
            flush()
            line = "- " + line[bullet.end() :]
        elif _ITEM.match(line):
            flush()
        elif (
            current
            and current[-1].endswith(_TERMINAL)
            and short
            and not line.endswith((*_TERMINAL, ","))
        ):
            flush()  # a title-like line after a finished sentence ("Definition 6")
        current.append(line)
        if short or (line.endswith(_TERMINAL) and len(line) < 0.9 * typical):
            flush()
    flush()
    if code_lines:
        blocks.append("\n".join(code_lines))
    return blocks


def _is_prose(block: str) -> bool:
    return bool(block) and not _is_heading(block) and not _STRUCTURAL.match(block)


def _clean_pages(text: str) -> str:
    pages = _split_pages(text)
    removed = _furniture(pages)
    out: list[str] = []
    for p, page in enumerate(pages):
        kept = [entry for i, entry in enumerate(page) if i not in removed[p]]
        blocks = _reflow(kept)
        if out and blocks:
            prev, first = out[-1], blocks[0]
            if (
                _is_prose(prev)
                and _is_prose(first)
                and not prev.endswith(_TERMINAL)
                and first[:1].islower()
            ):
                out[-1] = _join([prev, first])
                blocks = blocks[1:]
        out.extend(blocks)
    return "\n\n".join(out)


# --- everywhere ------------------------------------------------------------------------


def _normalize_prose_chars(text: str) -> str:
    text = _PDF_HYPHEN.sub("", text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    return unicodedata.normalize("NFC", text)


def _normalize_line(line: str) -> str:
    line = line.rstrip()
    body = line.lstrip(" ")
    indent = line[: len(line) - len(body)]
    if len(indent) >= 4 or body.startswith("\t"):
        return line  # indented code keeps its spacing
    return indent + _INNER_SPACE.sub(" ", body)


def _clean_prose(lines: list[str]) -> list[str]:
    text = _normalize_prose_chars("\n".join(lines))
    raw = text.split("\n")
    out: list[str] = []
    for i, line in enumerate(raw):
        hard_break = (
            line.endswith("  ")
            and line.strip()
            and i + 1 < len(raw)
            and raw[i + 1].strip()
            and not _is_heading(line)
            and len(line) - len(line.lstrip(" ")) < 4
            and not line.startswith("\t")
        )
        line = _normalize_line(line)
        if hard_break and not line.endswith("\\"):
            line += "\\"
        fence = _FENCE.match(line)
        if fence:  # a fence that only appeared through normalisation: keep it literal text
            line = line[: fence.start(1)] + "\\" + line[fence.start(1) :]
        out.append(line)
    out = _drop_page_number_paragraphs(out)
    return _dehyphenate(out)


def _drop_page_number_paragraphs(lines: list[str]) -> list[str]:
    out: list[str] = []
    n = len(lines)
    for i, line in enumerate(lines):
        if (
            line
            and (i == 0 or not lines[i - 1])
            and (i + 1 == n or not lines[i + 1])
            and _is_page_number(line, allow_roman=False)
        ):
            out.append("")
            continue
        out.append(line)
    return out


def _dehyphenate(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if out:
            prev = out[-1]
            nxt = line.lstrip()
            if (
                len(prev) >= 2
                and prev.endswith("-")
                and prev[-2].isalpha()
                and nxt[:1].islower()
                and not _is_heading(prev)
                and not prev.lstrip().startswith("|")
                and not _STRUCTURAL.match(line)
                and len(line) - len(nxt) < 4
                and len(prev) - len(prev.lstrip()) < 4
            ):
                out[-1] = prev[:-1] + nxt
                continue
        out.append(line)
    return out


def clean(markdown: str = "", *, pages: list[str] | None = None) -> str:
    """Clean extracted markdown; see the module docstring for exactly what changes.

    ``pages`` — the pages of a paged document as separate strings (same as joining them
    with ``\\f``); ``markdown`` is then ignored.
    """
    if pages is not None:
        markdown = PAGE_BREAK.join(pages)
    text = markdown.replace("\r\n", "\n").replace("\r", "\n")
    runs = _split_fenced(text.split("\n"))
    if any(PAGE_BREAK in line for code, lines in runs if not code for line in lines):
        runs = _split_fenced(_clean_pages(_PDF_HYPHEN.sub("", text)).split("\n"))
    out: list[str] = []
    for code, lines in runs:
        if code:
            out.extend(lines)
            continue
        for line in _clean_prose(lines):
            if line or (out and out[-1]):
                out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""
