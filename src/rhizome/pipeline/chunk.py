"""Markdown → chunks for embedding and connections.

Rules (``chunk_markdown``):

- Offsets are exact: ``content_md[c.start:c.end] == c.text`` for every chunk; chunks are
  verbatim slices with no leading or trailing whitespace, never empty, in document order,
  and together they cover every non-blank character of the document.
- Markdown-aware: ATX headings (``#`` … ``######``) start sections; a chunk never crosses
  from one section into the next, never starts or ends inside a heading line, and the
  first chunk of a section starts with its heading line(s). ``heading_path`` lists the
  enclosing headings (``["Chapter 1", "1.2 Metric spaces"]``). Fenced code blocks are kept
  whole when they fit. Setext headings are not recognised (the extractors emit ATX).
- Size: at most ``max_words`` words (whitespace-separated; each CJK character counts as a
  word) and, when ``max_tokens`` is set, at most that many *estimated* tokens. A chunk
  prefers to end at a paragraph end, otherwise at a sentence end; text with no usable
  boundary (a 300-word sentence, a long code line) is cut between words. The only chunk
  that can exceed the limits is a single heading line longer than the limit (headings are
  never cut).
- Overlap: inside a section, each chunk starts about ``overlap_words`` words before the
  previous one ended — at a sentence start when one lies between half and one and a half
  times ``overlap_words`` back, else exactly ``overlap_words`` words back. No overlap
  across sections, and never into a heading.
- ``token_count`` estimates the tokens of the all-MiniLM-L6-v2 (BERT WordPiece) tokenizer:
  one per word or punctuation mark, plus one per 8 characters of a long word; within
  about 5 % on English prose, about 25 % low on German or formula-heavy text.
- Deterministic and linear: Moby-Dick (1.2 M characters) chunks in well under a second.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_CJK = "\u2e80-\u9fff\uf900-\ufaff"
WORD_RE = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
# sentence-ending punctuation (Latin, CJK, Arabic), then closing quotes/brackets/emphasis
_SENTENCE_END = re.compile(
    "[.!?\u2026\u3002\uff01\uff1f\u061f]+[\"'\u201d\u2019\u00bb)\\]*_]*(?=\\s)"
)
_LINE_START_MARK = re.compile(r"[ \t]*(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|\|)")
# words before a full stop that do not end a sentence
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "cf",
        "fig", "figs", "no", "nos", "vol", "pp", "p", "ed", "eds", "al", "approx", "ca",
        "inc", "ltd", "co", "corp", "dept", "est", "min", "max", "mt", "ft", "ch", "sec",
        "art", "bzw", "z.b", "d.h", "u.a", "usw", "vgl", "s", "bsp", "nr", "ggf", "evtl",
    }
)  # fmt: skip


@dataclass
class Chunk:
    index: int
    text: str
    start: int
    end: int
    heading_path: list[str] = field(default_factory=list)
    token_count: int = 0


def estimate_tokens(text: str, start: int = 0, end: int | None = None) -> int:
    """Estimated WordPiece tokens of ``text[start:end]`` (no special tokens)."""
    tokens = TOKEN_RE.findall(text, start, len(text) if end is None else end)
    return len(tokens) + sum(len(t) >> 3 for t in tokens)


def count_words(text: str, start: int = 0, end: int | None = None) -> int:
    return len(WORD_RE.findall(text, start, len(text) if end is None else end))


# --- blocks and sections ---------------------------------------------------------------

_HEADING_KIND, _CODE_KIND, _PARA_KIND = 0, 1, 2


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _blocks(text: str) -> list[tuple[int, int, int, int, str]]:
    """(kind, start, end, heading level, heading text) for each block, trimmed."""
    out: list[tuple[int, int, int, int, str]] = []
    para: list[int] | None = None  # [start, end]
    fence: str | None = None
    code = [0, 0]
    offset = 0

    def add(kind: int, start: int, end: int, level: int = 0, title: str = "") -> None:
        s, e = _trim(text, start, end)
        if s < e:
            out.append((kind, s, e, level, title))

    for line in text.split("\n"):
        start, end = offset, offset + len(line)
        offset = end + 1
        if fence is not None:
            code[1] = end
            stripped = line.strip()
            if (
                stripped.startswith(fence)
                and not stripped.strip(fence[0])
                and len(line) - len(line.lstrip(" ")) <= 3
            ):
                add(_CODE_KIND, code[0], code[1])
                fence = None
            continue
        m = _FENCE.match(line)
        if m:
            if para:
                add(_PARA_KIND, para[0], para[1])
                para = None
            fence = m.group(1)
            code = [start, end]
            continue
        if not line.strip():
            if para:
                add(_PARA_KIND, para[0], para[1])
                para = None
            continue
        h = _HEADING.match(line)
        if h:
            if para:
                add(_PARA_KIND, para[0], para[1])
                para = None
            title = _CLOSING_HASHES.sub("", h.group(2) or "").strip()
            add(_HEADING_KIND, start, end, len(h.group(1)), " ".join(title.split()))
            continue
        if para is None:
            para = [start, end]
        else:
            para[1] = end
    if fence is not None:
        add(_CODE_KIND, code[0], code[1])
    elif para:
        add(_PARA_KIND, para[0], para[1])
    return out


# --- pieces: the units chunks are made of ------------------------------------------------

# (start, end, words, tokens, ends a paragraph, is a heading)
_Piece = tuple[int, int, int, int, bool, bool]


def _sentence_cuts(text: str, start: int, end: int) -> list[int]:
    """Offsets inside ``text[start:end]`` where a new sentence or structural line begins."""
    cuts: list[int] = []
    for m in _SENTENCE_END.finditer(text, start, end):
        q = m.end()
        while q < end and text[q].isspace():
            q += 1
        if q >= end or text[q].islower():
            continue
        punct = text[m.start()]
        if punct == ".":
            w = text.rfind(" ", start, m.start()) + 1
            w = max(w, text.rfind("\n", start, m.start()) + 1, start)
            word = text[w : m.start()].lstrip("([\"'\u201c\u2018").lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        cuts.append(q)
    # structural line breaks: list items, quotes, table rows, hard breaks
    nl = text.find("\n", start, end)
    while nl != -1:
        nxt = nl + 1
        if _LINE_START_MARK.match(text, nxt, end) or (nl > start and text[nl - 1] == "\\"):
            q = nxt
            while q < end and text[q] in " \t":
                q += 1
            cuts.append(q)
        nl = text.find("\n", nxt, end)
    cuts.sort()
    return cuts


def _line_cuts(text: str, start: int, end: int) -> list[int]:
    cuts = []
    nl = text.find("\n", start, end)
    while nl != -1:
        cuts.append(nl + 1)
        nl = text.find("\n", nl + 1, end)
    return cuts


def _spans(text: str, start: int, end: int, cuts: list[int]) -> list[tuple[int, int]]:
    out = []
    prev = start
    for c in [*cuts, end]:
        if c <= prev:
            continue
        s, e = _trim(text, prev, c)
        if s < e:
            out.append((s, e))
        prev = c
    return out


def _piece(text: str, start: int, end: int) -> _Piece:
    return (
        start,
        end,
        count_words(text, start, end),
        estimate_tokens(text, start, end),
        False,
        False,
    )


def _fit(
    text: str, start: int, end: int, max_w: int, max_t: int | None, lines: bool = True
) -> list[_Piece]:
    """``text[start:end]`` as pieces within the limits: whole, else by lines, else by words."""
    piece = _piece(text, start, end)
    w, t = piece[2], piece[3]
    if (w <= max_w and (max_t is None or t <= max_t)) or w <= 1:
        return [piece]
    out: list[_Piece] = []
    if lines and text.find("\n", start, end) != -1:
        for s, e in _spans(text, start, end, _line_cuts(text, start, end)):
            out.extend(_fit(text, s, e, max_w, max_t, lines=False))
        return out
    # between words, into near-equal parts
    parts = math.ceil(w / max_w)
    if max_t is not None:
        parts = max(parts, math.ceil(t / max_t))
    parts = max(2, min(parts, w))
    starts = [m.start() for m in WORD_RE.finditer(text, start, end)]
    cuts = [starts[k * len(starts) // parts] for k in range(1, parts)]
    for s, e in _spans(text, start, end, cuts):
        out.extend(_fit(text, s, e, max_w, max_t, lines=False))
    return out


def _pieces(
    text: str, block: tuple[int, int, int, int, str], max_w: int, max_t: int | None
) -> list[_Piece]:
    kind, start, end = block[0], block[1], block[2]
    if kind == _HEADING_KIND:
        heading = _piece(text, start, end)
        return [(start, end, heading[2], heading[3], True, True)]
    spans: list[tuple[int, int]]
    if kind == _CODE_KIND:
        spans = [(start, end)]
    elif text.startswith("|", start):  # a table: one piece per row
        spans = _spans(text, start, end, _line_cuts(text, start, end))
    else:
        spans = _spans(text, start, end, _sentence_cuts(text, start, end))
    out: list[_Piece] = []
    for s, e in spans:
        out.extend(_fit(text, s, e, max_w, max_t))
    if out:
        last = out[-1]
        out[-1] = (last[0], last[1], last[2], last[3], True, False)
    return out


# --- packing -----------------------------------------------------------------------------


def _carry(
    text: str,
    pieces: list[_Piece],
    i: int,
    j: int,
    chunk_start: int,
    overlap: int,
    limit_w: int,
    limit_t: float,
) -> tuple[int, int, int] | None:
    """Where the next chunk starts so that it repeats ~``overlap`` words: (start, words, tokens)."""
    end = pieces[j - 1][1]
    best: tuple[int, int, int] | None = None
    acc_w = acc_t = 0
    lo, hi = 0.5 * min(overlap, limit_w), min(1.5 * overlap, limit_w)
    for m in range(j - 1, i - 1, -1):
        if pieces[m][5]:
            break
        acc_w += pieces[m][2]
        acc_t += pieces[m][3]
        if acc_w > hi or acc_t > limit_t:
            break
        if (
            acc_w >= lo
            and pieces[m][0] > chunk_start
            and (best is None or abs(acc_w - overlap) < abs(best[1] - overlap))
        ):
            best = (pieces[m][0], acc_w, acc_t)
    if best is not None:
        return best
    # no sentence start at a good distance: cut between words
    region = chunk_start
    for m in range(i, j):
        if pieces[m][5]:
            region = pieces[m][1]
    want = min(overlap, limit_w)
    starts = [mm.start() for mm in WORD_RE.finditer(text, region, end)]
    while want > 0:
        if len(starts) <= want:
            want = len(starts) - 1
            continue
        s = starts[-want]
        t = estimate_tokens(text, s, end)
        if t <= limit_t and s > chunk_start:
            return (s, want, t)
        want -= max(1, want // 4)
    return None


def _pack(
    text: str,
    pieces: list[_Piece],
    path: list[str],
    max_w: int,
    overlap: int,
    max_t: int | None,
    out: list[Chunk],
) -> None:
    n = len(pieces)
    cw = [0]
    for p in pieces:
        cw.append(cw[-1] + p[2])
    ct = [0]
    for p in pieces:
        ct.append(ct[-1] + p[3])
    t_limit: float = max_t if max_t is not None else math.inf
    i = 0
    carry: tuple[int, int, int] | None = None
    while i < n:
        start, w0, t0 = carry if carry is not None else (pieces[i][0], 0, 0)
        j = i + 1
        while j < n and w0 + cw[j + 1] - cw[i] <= max_w and t0 + ct[j + 1] - ct[i] <= t_limit:
            j += 1
        if j < n:
            # prefer ending at a paragraph end if that keeps the chunk at least half full
            k = j
            while k > i + 1 and not pieces[k - 1][4]:
                k -= 1
            if pieces[k - 1][4] and w0 + cw[k] - cw[i] >= 0.5 * max_w:
                j = k
            # never end a chunk right after its section's headings when content follows
            while (
                j < n
                and pieces[j - 1][5]
                and w0 + cw[j + 1] - cw[i] <= max_w
                and t0 + ct[j + 1] - ct[i] <= t_limit
            ):
                j += 1
        end = pieces[j - 1][1]
        out.append(
            Chunk(
                index=len(out),
                text=text[start:end],
                start=start,
                end=end,
                heading_path=list(path),
                token_count=t0 + ct[j] - ct[i],
            )
        )
        if j >= n:
            break
        carry = None
        if overlap > 0:
            limit_w = min(overlap, max_w - pieces[j][2])
            limit_t = t_limit - pieces[j][3]
            if limit_w > 0 and limit_t > 0:
                carry = _carry(text, pieces, i, j, start, overlap, limit_w, limit_t)
        i = j


def chunk_markdown(
    content_md: str,
    *,
    max_words: int = 180,
    overlap_words: int = 30,
    max_tokens: int | None = 256,
) -> list[Chunk]:
    """Split markdown into overlapping, heading-aware chunks (see the module docstring).

    ``max_tokens`` (estimated; default 256, the all-MiniLM-L6-v2 input limit) also bounds
    a chunk, which matters for text with many tokens per word; ``None`` disables it.
    """
    if max_words < 2:
        raise ValueError("max_words must be at least 2")
    if overlap_words < 0 or overlap_words >= max_words:
        raise ValueError("overlap_words must be between 0 and max_words - 1")
    if max_tokens is not None and max_tokens < 4:
        raise ValueError("max_tokens must be at least 4 (or None)")
    text = content_md
    # pieces at most half a chunk, so a heading plus a piece, or an overlap plus a
    # piece, always fits
    piece_w = max(1, max_words // 2)
    piece_t = None if max_tokens is None else max(1, max_tokens // 2)
    chunks: list[Chunk] = []
    stack: list[tuple[int, str]] = []
    path: list[str] = []
    section: list[_Piece] = []
    has_content = False
    for block in _blocks(text):
        if block[0] == _HEADING_KIND:
            if has_content:
                _pack(text, section, path, max_words, overlap_words, max_tokens, chunks)
                section, has_content = [], False
            level, title = block[3], block[4]
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            path = [t for _, t in stack if t]
        else:
            has_content = True
        section.extend(_pieces(text, block, piece_w, piece_t))
    if section:
        _pack(text, section, path, max_words, overlap_words, max_tokens, chunks)
    return chunks
