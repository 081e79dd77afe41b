"""Finding a highlight's passage in a document's markdown, in tiers (pure functions).

A highlight is text the user marked, with offsets into ``content.md``. When the markdown
changes (an Obsidian edit) or the highlight comes from elsewhere (Readwise), its passage
is looked for in this order; the first tier that is sure enough wins:

1. **exact** — the text itself (of several occurrences, the one nearest to where the
   passage is expected);
2. **normalized** — the same after Unicode NFKC, curly/straight quotes, dashes (em dash,
   en dash, ``--``), emphasis marks and whitespace are folded, mapped back to the original
   offsets;
3. **context** — the stored text before and after the passage (its old surroundings)
   are found, and what lies between them is compared;
4. **neighbours** — a fuzzy alignment bounded to the neighbouring chunks of the
   expected position (or a window around a Readwise location);
5. **document** — a last fuzzy pass over the whole document (best chunk, then alignment).

Fuzzy candidates are scored by :func:`similarity` (characters and words, 0..1). A match
scoring at least :data:`MATCHED` is ``matched``; one scoring at least
:data:`REVIEW_FLOOR` is ``needs_review`` (its offsets are the suggested passage); below
that the highlight is ``unmatched`` with the reason. Never a silent loss.

Fuzzy matching is rapidfuzz's (MIT): a shortlist of chunks that share the most (rarer)
words with the highlight (an inverted index built once per document), the best of them by
``fuzz.partial_ratio``, then ``fuzz.partial_ratio_alignment`` to place the passage in it
and its neighbours, whose ends are finally moved to the token boundaries that fit best.
"""

from __future__ import annotations

import bisect
import difflib
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

MATCHED = 0.85
"""A passage at least this similar is the highlight's (status ``matched``)."""
REVIEW_FLOOR = 0.60
"""Below :data:`MATCHED` but at least this similar: a suggestion (``needs_review``)."""
NORMALIZED_CONFIDENCE = 0.97
MAX_OCCURRENCES = 200
NEAR_WINDOW = 60_000
"""Characters either side of the expected place searched first for an exact match."""
SHORTLIST = 12
"""Chunks compared closely in a fuzzy pass (picked by shared words among all of them)."""
CONTEXT_CHARS = 120
"""Characters of the old surroundings kept on each side for the context tier."""

_DASHES = "\u2014\u2013\u2012\u2015\u2212"
_SINGLE_QUOTES = "\u2018\u2019\u201a\u201b\u2032\u0060\u00b4"
_DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"
_SPECIAL = re.compile(
    rf"[ \t\r\n\f\v\u00a0]*(?:-{{2,}}|[{_DASHES}])[ \t\r\n\f\v\u00a0]*"
    r"|\s{2,}|[^\S ]"
    rf"|[{_SINGLE_QUOTES}]|[{_DOUBLE_QUOTES}]"
    r"|[*_]+"
    r"|[^\x00-\x7f]"
)
_TOKEN = re.compile(r"\S+")
_WORD = re.compile(r"\w+")


# --- normalization with an offset map ---------------------------------------------------------


_SPACES = " \t\r\n\f\v\u00a0"


def _replacement(piece: str) -> str:
    """What a special piece of text (see ``_SPECIAL``) becomes in the normalized form."""
    first = piece[0]
    if first in "*_":
        return ""
    stripped = piece.strip(_SPACES)
    if not stripped or not stripped.strip():
        return " "
    if stripped.startswith("--") or (len(stripped) == 1 and stripped in _DASHES):
        return "\u2014"
    if first in _SINGLE_QUOTES:
        return "'"
    if first in _DOUBLE_QUOTES:
        return '"'
    return unicodedata.normalize("NFKC", piece)


class NormalizedText:
    """A text folded for comparison (see the module doc) and lower-cased, with a map back
    to the original offsets. Linear in the text; built once per document."""

    def __init__(self, text: str) -> None:
        self.original = text
        parts: list[str] = []
        # segments: (norm start, original start, original end, linear?)
        n_starts: list[int] = []
        segs: list[tuple[int, int, bool]] = []
        n = 0
        at = 0

        def add(piece: str, o0: int, o1: int, linear: bool) -> None:
            nonlocal n
            if not piece:
                return
            lowered = piece.lower()
            if len(lowered) == len(piece):
                piece = lowered
            n_starts.append(n)
            segs.append((o0, o1, linear and len(piece) == o1 - o0))
            parts.append(piece)
            n += len(piece)

        for m in _SPECIAL.finditer(text):
            if m.start() > at:
                add(text[at : m.start()], at, m.start(), True)
            piece = m.group()
            out = _replacement(piece)
            add(out, m.start(), m.end(), out == piece)
            at = m.end()
        if at < len(text):
            add(text[at:], at, len(text), True)
        self.text = "".join(parts)
        self._n_starts = n_starts
        self._segs = segs
        self._o_starts = [s[0] for s in segs]

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Original ``[start, end)`` of the normalized ``[start, end)``."""
        i = max(0, bisect.bisect_right(self._n_starts, start) - 1)
        o0, _, linear = self._segs[i]
        a = o0 + (start - self._n_starts[i]) if linear else o0
        j = max(0, bisect.bisect_right(self._n_starts, max(end - 1, 0)) - 1)
        p0, p1, linear_j = self._segs[j]
        b = p0 + (end - self._n_starts[j]) if linear_j else p1
        return a, max(a, b)

    def to_normalized(self, offset: int) -> int:
        """Approximate normalized position of an original offset."""
        if not self._segs:
            return 0
        i = max(0, bisect.bisect_right(self._o_starts, offset) - 1)
        o0, o1, linear = self._segs[i]
        if linear:
            return self._n_starts[i] + min(max(offset - o0, 0), o1 - o0)
        return self._n_starts[i]


@lru_cache(maxsize=16384)
def normalize(text: str) -> str:
    """The folded, lower-cased form of ``text`` (what the normalized tier compares)."""
    return NormalizedText(text).text.strip()


_STOP_WORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "if",
        "in",
        "is",
        "it",
        "me",
        "my",
        "not",
        "of",
        "on",
        "or",
        "she",
        "so",
        "that",
        "the",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "with",
        "you",
    )
)


def similarity(a: str, b: str) -> float:
    """How alike two passages are, 0..1: the mean of three similarities of their
    normalized forms — characters, words, and content words (no stop words), so that
    shared little words do not make two unrelated sentences look alike. A random sentence
    of the same book scores about 0.3-0.45; a sentence with a few words changed about
    0.75; one word changed or a typo fixed about 0.9 or more."""
    na, nb = normalize(a), normalize(b)
    if not na or not nb:
        return 0.0
    char = fuzz.ratio(na, nb) / 100.0
    wa, wb = _WORD.findall(na), _WORD.findall(nb)
    word = Indel.normalized_similarity(wa, wb) if wa and wb else char
    ca = [w for w in wa if w not in _STOP_WORDS]
    cb = [w for w in wb if w not in _STOP_WORDS]
    content = Indel.normalized_similarity(ca, cb) if ca and cb else word
    return round((char + word + content) / 3, 4)


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """Where a highlight's passage is, how sure, and how it was found."""

    start: int | None
    end: int | None
    confidence: float
    method: str
    """``exact``, ``normalized``, ``context``, ``neighbours``, ``document`` or ``none``."""
    status: str
    """``matched``, ``needs_review`` or ``unmatched``."""
    reason: str | None = None
    anchored: bool = False
    """Found between both of its old surroundings (the context tier's strongest case)."""

    @property
    def found(self) -> bool:
        return self.start is not None and self.status != "unmatched"


def _status(confidence: float) -> str:
    if confidence >= MATCHED:
        return "matched"
    if confidence >= REVIEW_FLOOR:
        return "needs_review"
    return "unmatched"


# --- the matcher ------------------------------------------------------------------------------


class Matcher:
    """One document's markdown, prepared once (normalized form, blocks for the whole-
    document pass) to place many highlights in it."""

    def __init__(self, content: str, spans: Sequence[tuple[int, int]] = ()) -> None:
        self.content = content
        self._norm: NormalizedText | None = None
        blocks = [(int(s), int(e)) for s, e in spans if e > s]
        if not blocks:
            step = 1000
            blocks = [
                (i, min(len(content), i + 1500)) for i in range(0, max(len(content), 1), step)
            ]
        self.blocks = sorted(blocks)
        self._block_starts = [b[0] for b in self.blocks]
        self._block_texts: list[str] | None = None
        self._postings: dict[str, list[int]] | None = None

    @property
    def norm(self) -> NormalizedText:
        if self._norm is None:
            self._norm = NormalizedText(self.content)
        return self._norm

    # --- tiers ---------------------------------------------------------------------------------

    def _nearest(
        self, hay: str, needle: str, expected: int | None, window: int = NEAR_WINDOW
    ) -> int | None:
        """The occurrence of ``needle`` nearest to ``expected`` (the first without one).
        Looks around ``expected`` first: one found there is nearer than any outside."""
        if expected is not None and len(hay) > 2 * window:
            lo, hi = max(0, expected - window), expected + window + len(needle)
            near = _occurrences(hay, needle, lo, hi)
            if near:
                return min(near, key=lambda p: abs(p - expected))
        if expected is None:
            at = hay.find(needle)
            return at if at >= 0 else None
        found = _occurrences(hay, needle, 0, len(hay))
        return min(found, key=lambda p: abs(p - expected)) if found else None

    def exact(self, text: str, expected: int | None = None) -> Match | None:
        if not text:
            return None
        at = self._nearest(self.content, text, expected)
        if at is None:
            return None
        return Match(at, at + len(text), 1.0, "exact", "matched")

    def normalized(self, text: str, expected: int | None = None) -> Match | None:
        needle = normalize(text)
        if not needle:
            return None
        norm = self.norm
        hint = norm.to_normalized(expected) if expected is not None else None
        at = self._nearest(norm.text, needle, hint)
        if at is None:
            return None
        start, end = norm.to_original(at, at + len(needle))
        start, end = _trim(self.content, start, end)
        if end <= start:
            return None
        return Match(start, end, NORMALIZED_CONFIDENCE, "normalized", "matched")

    def context(
        self, text: str, before: str | None, after: str | None, expected: int | None = None
    ) -> Match | None:
        """Between the old surroundings, where they are found again."""
        norm = self.norm
        b = _tail_words(normalize(before or ""), 40)
        a = _head_words(normalize(after or ""), 40)
        if not b and not a:
            return None
        hint = norm.to_normalized(expected) if expected is not None else None
        size = max(len(normalize(text)), 1)
        b_end: int | None = None
        a_start: int | None = None
        if b:
            at = self._nearest(norm.text, b, None if hint is None else max(hint - len(b), 0))
            if at is not None:
                b_end = at + len(b)
        if a:
            lo = b_end if b_end is not None else None
            if lo is not None:
                at = norm.text.find(a, lo, lo + 4 * size + 400)
                a_start = at if at >= 0 else None
            else:
                found = self._nearest(norm.text, a, hint)
                a_start = found
        if b_end is not None and a_start is not None:
            start, _ = norm.to_original(b_end, b_end + 1)
            end, _ = norm.to_original(a_start, a_start + 1)
            start, end = _trim(self.content, start, end)
            if end <= start:
                return Match(
                    None,
                    None,
                    0.0,
                    "context",
                    "unmatched",
                    "the passage was deleted: the text around it is now next to each other",
                    True,
                )
            score = similarity(text, self.content[start:end])
            return Match(start, end, score, "context", _status(score), None, True)
        if b_end is not None:
            lo, _ = norm.to_original(b_end, b_end + 1)
            return self._align(text, lo, lo + 2 * len(text) + 80, "context")
        if a_start is not None:
            hi, _ = norm.to_original(a_start, a_start + 1)
            return self._align(text, hi - 2 * len(text) - 80, hi, "context")
        return Match(
            None,
            None,
            0.0,
            "context",
            "unmatched",
            "the passage and the text around it are gone",
            True,
        )

    def neighbours(self, text: str, expected: int, radius: int | None = None) -> Match | None:
        """A fuzzy alignment around ``expected``: the chunk there and its neighbours (or,
        with ``radius``, the best chunk within that many characters either side)."""
        if radius is not None:
            first = max(0, bisect.bisect_right(self._block_starts, expected - radius) - 1)
            last = bisect.bisect_right(self._block_starts, expected + radius)
            return self._best_block(text, range(first, max(last, first + 1)), "neighbours")
        i = max(0, bisect.bisect_right(self._block_starts, expected) - 1)
        lo = self.blocks[max(0, i - 1)][0]
        hi = self.blocks[min(len(self.blocks) - 1, i + 1)][1]
        return self._align(text, lo, max(hi, lo + 2 * len(text)), "neighbours")

    def document(self, text: str) -> Match | None:
        """The best chunk of the whole document, then an alignment in it and around."""
        return self._best_block(text, range(len(self.blocks)), "document")

    def _best_block(self, text: str, indexes: range, method: str) -> Match | None:
        needle = normalize(text)
        if not needle or not self.blocks or not indexes:
            return None
        if self._block_texts is None:  # slices of the normalized document: no second pass
            norm = self.norm
            self._block_texts = [
                norm.text[norm.to_normalized(s) : norm.to_normalized(e)] for s, e in self.blocks
            ]
        # a shortlist by shared words (an inverted index: fast), then the best partial
        # alignment among those
        shortlist = self._shortlist(needle, indexes)
        texts = self._block_texts
        best = max(
            shortlist, key=lambda k: (fuzz.partial_ratio(needle, texts[k]), -k), default=None
        )
        if best is None:
            return None
        i = best
        lo = self.blocks[max(0, i - 1)][0] if len(needle) > 200 else self.blocks[i][0]
        hi = self.blocks[min(len(self.blocks) - 1, i + 1)][1]
        return self._align(text, lo, hi, method)

    def _shortlist(self, needle: str, indexes: range) -> list[int]:
        """The blocks among ``indexes`` that share the most (rarer) words with ``needle``."""
        assert self._block_texts is not None
        if self._postings is None:
            postings: dict[str, list[int]] = {}
            for k, block in enumerate(self._block_texts):
                for word in set(_WORD.findall(block)):
                    if word not in _STOP_WORDS:
                        postings.setdefault(word, []).append(k)
            self._postings = postings
        total = len(self._block_texts)
        scores: dict[int, float] = {}
        for word in set(_WORD.findall(needle)):
            found = self._postings.get(word)
            if not found or word in _STOP_WORDS:
                continue
            weight = math.log((total + 1) / len(found))
            lo = bisect.bisect_left(found, indexes.start)
            hi = bisect.bisect_left(found, indexes.stop)
            for k in found[lo:hi]:
                scores[k] = scores.get(k, 0.0) + weight
        if not scores:
            return list(indexes)[: SHORTLIST * 4]
        ranked = sorted(scores, key=lambda k: (-scores[k], k))
        return ranked[:SHORTLIST]

    def _align(self, text: str, lo: int, hi: int, method: str) -> Match | None:
        lo, hi = max(0, lo), min(len(self.content), hi)
        if hi - lo < 1 or not text.strip():
            return None
        window = self.content[lo:hi]
        needle = text.lower() if len(text.lower()) == len(text) else text
        hay = window.lower() if len(window.lower()) == len(window) else window
        found = fuzz.partial_ratio_alignment(needle, hay)
        if found is None:
            return None
        start, end = lo + found.dest_start, lo + found.dest_end
        start, end, score = _refine(self.content, text, start, end)
        if end <= start:
            return None
        return Match(start, end, score, method, _status(score))

    # --- everything -------------------------------------------------------------------------------

    def find(
        self,
        text: str,
        *,
        expected: int | None = None,
        radius: int | None = None,
        before: str | None = None,
        after: str | None = None,
    ) -> Match:
        """The passage of ``text``, through the tiers. ``expected``: where it should be
        (an old offset mapped to the new markdown, or a Readwise location); ``radius``:
        bound the neighbourhood tier to that many characters around it instead of the
        neighbouring chunks; ``before``/``after``: its old surroundings."""
        if not text or not text.strip():
            return Match(None, None, 0.0, "none", "unmatched", "the highlight has no text")
        for sure in (self.exact(text, expected), self.normalized(text, expected)):
            if sure is not None:
                return sure
        best: Match | None = None
        deleted: str | None = None
        if before or after:
            anchored = self.context(text, before, after, expected)
            if anchored is not None and anchored.anchored and anchored.start is None:
                deleted = anchored.reason
            if anchored is not None and anchored.anchored and anchored.start is not None:
                if anchored.confidence >= REVIEW_FLOOR:
                    return anchored  # found between its old surroundings: that is the place
                best = anchored
            elif anchored is not None and anchored.start is not None:
                if anchored.confidence >= MATCHED:
                    return anchored
                best = anchored
        tiers: list[Callable[[], Match | None]] = []
        if expected is not None:
            tiers.append(lambda: self.neighbours(text, expected, radius))
        tiers.append(lambda: self.document(text))
        for tier in tiers:
            found = tier()
            if found is None:
                continue
            if found.start is not None and found.confidence >= MATCHED:
                return found
            if found.start is not None and (best is None or found.confidence > best.confidence):
                best = found
        if best is not None and best.confidence >= REVIEW_FLOOR:
            return best
        score = best.confidence if best is not None else 0.0
        if deleted is not None:
            reason = f"{deleted} (the most similar passage elsewhere scores {score:.2f})"
            return Match(None, None, score, "none", "unmatched", reason)
        reason = (
            f"not found: the most similar passage scores {score:.2f} (below {REVIEW_FLOOR:.2f})"
            if best is not None
            else "not found in the document"
        )
        return Match(None, None, score, "none", "unmatched", reason)


def _occurrences(hay: str, needle: str, lo: int, hi: int) -> list[int]:
    found: list[int] = []
    at = hay.find(needle, lo, hi)
    while at >= 0 and len(found) < MAX_OCCURRENCES:
        found.append(at)
        at = hay.find(needle, at + 1, hi)
    return found


def spans_of(spans: Sequence[tuple[str, int, int]], start: int, end: int) -> list[str]:
    """Ids of the chunks (``(id, start, end)`` in document order: starts and ends both
    ascending) that overlap ``[start, end)``; a binary search, for long documents."""
    starts = [s for _, s, _ in spans]
    k = bisect.bisect_left(starts, end) - 1
    out: list[str] = []
    while k >= 0 and spans[k][2] > start:
        out.append(spans[k][0])
        k -= 1
    return out[::-1]


def _trim(content: str, start: int, end: int) -> tuple[int, int]:
    while start < end and content[start].isspace():
        start += 1
    while end > start and content[end - 1].isspace():
        end -= 1
    return start, end


def _tail_words(text: str, size: int) -> str:
    """The last ``size`` characters of ``text``, starting at a word."""
    text = text.strip()
    if len(text) <= size:
        return text
    cut = text[-size:]
    space = cut.find(" ")
    return cut[space + 1 :] if 0 <= space < size // 2 else cut


def _head_words(text: str, size: int) -> str:
    text = text.strip()
    if len(text) <= size:
        return text
    cut = text[:size]
    space = cut.rfind(" ")
    return cut[:space] if space > size // 2 else cut


def _refine(content: str, text: str, start: int, end: int) -> tuple[int, int, float]:
    """Move an aligned passage's ends to token boundaries (a few tokens either way) where
    it is most similar to ``text`` (each end in turn, twice)."""
    lo = max(0, start - 120)
    hi = min(len(content), end + 160)
    tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(content, lo, hi)]
    if not tokens:
        return start, end, similarity(text, content[start:end])
    starts = [s for s, _ in tokens]
    ends = [e for _, e in tokens]
    i = min(range(len(starts)), key=lambda k: abs(starts[k] - start))
    j = min(range(len(ends)), key=lambda k: abs(ends[k] - end))
    scores: dict[tuple[int, int], float] = {}

    def score(a: int, b: int) -> float:
        if (a, b) not in scores:
            s, e = starts[a], ends[b]
            scores[(a, b)] = similarity(text, content[s:e]) if e > s else -1.0
        return scores[(a, b)]

    for _ in range(2):
        j = max(
            range(max(0, j - 6), min(len(ends), j + 7)), key=lambda b: (score(i, b), -abs(b - j))
        )
        i = max(
            range(max(0, i - 4), min(len(starts), i + 5)), key=lambda a: (score(a, j), -abs(a - i))
        )
    best = score(i, j)
    if best < 0:
        return start, end, similarity(text, content[start:end])
    return starts[i], ends[j], best


# --- where an old offset went -------------------------------------------------------------------


def _paragraphs(text: str) -> tuple[list[str], list[int]]:
    parts: list[str] = []
    starts: list[int] = []
    at = 0
    for m in re.finditer(r"\n\s*\n", text):
        parts.append(text[at : m.start()])
        starts.append(at)
        at = m.end()
    parts.append(text[at:])
    starts.append(at)
    return parts, starts


class OffsetMap:
    """Maps offsets of an old version of a document to the new version: paragraphs are
    aligned (difflib over whole paragraphs, fast even for a book); an offset inside an
    unchanged paragraph moves with it, one inside a changed paragraph lands
    proportionally in what replaced it."""

    def __init__(self, old: str, new: str) -> None:
        self._old, self._old_starts = _paragraphs(old)
        self._new, self._new_starts = _paragraphs(new)
        self._new_len = len(new)
        matcher = difflib.SequenceMatcher(None, self._old, self._new, autojunk=False)
        self._ops = matcher.get_opcodes()
        self._op_starts = [op[1] for op in self._ops]

    def _new_span(self, j1: int, j2: int) -> tuple[int, int]:
        if j1 >= len(self._new_starts):
            return self._new_len, self._new_len
        start = self._new_starts[j1]
        if j2 <= j1:
            return start, start
        last = j2 - 1
        return start, self._new_starts[last] + len(self._new[last])

    def __call__(self, offset: int) -> int:
        p = max(0, bisect.bisect_right(self._old_starts, offset) - 1)
        k = max(0, bisect.bisect_right(self._op_starts, p) - 1)
        tag, i1, i2, j1, j2 = self._ops[k]
        if tag == "equal":
            j = j1 + (p - i1)
            return self._new_starts[j] + (offset - self._old_starts[p])
        old_start = self._old_starts[i1]
        old_end = self._old_starts[i2 - 1] + len(self._old[i2 - 1]) if i2 > i1 else old_start
        new_start, new_end = self._new_span(j1, j2)
        if old_end <= old_start:
            return new_start
        fraction = (offset - old_start) / (old_end - old_start)
        return int(new_start + max(0.0, min(1.0, fraction)) * (new_end - new_start))


def surroundings(content: str, start: int, end: int) -> tuple[str, str]:
    """The text before and after a passage (for the context tier)."""
    return content[max(0, start - CONTEXT_CHARS) : start], content[end : end + CONTEXT_CHARS]
