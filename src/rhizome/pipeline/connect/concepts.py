"""A small concept extractor and the library-wide concept statistics the engines share.

Concepts are lowercased content words and adjacent content-word pairs ("noun-ish
bigrams": ``carbon emission``, ``heart disease``), with English stopwords, stance words
(increase, false, oppose ...) and ``-ly`` adverbs removed, plurals folded and light
suffix stripping for matching (``reefs`` -> ``reef``, ``bleached`` -> ``bleach``). No
model, no data files: a regex, word lists and a few suffix rules.

:class:`ConceptIndex` keeps, per chunk, the *hashed* concept ids (CRC-32 based, stable
across processes) and their counts as small numpy arrays, plus chunk and document
frequencies in fixed tables of 2**22 buckets: 100k chunks take ~115 MB instead of
gigabytes of Python sets, and build at ~5-10k chunks/s. A bucket collision can only
over-count a frequency (a concept looks more common, never rarer), and every connection
the engines report is re-checked on the real strings, so hashing never invents a shared
concept.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "GENERIC_WORDS",
    "STANCE_WORDS",
    "STOPWORDS",
    "ConceptIndex",
    "concept_counts",
    "concept_id",
    "content_tokens",
    "extract_concepts",
    "fold",
    "is_generic",
    "segments",
    "tokens",
]

# --- vocabulary ------------------------------------------------------------------------


def word_set(text: str) -> frozenset[str]:
    """A word list written as one whitespace-separated string."""
    return frozenset(text.split())


def _word_list(text: str) -> list[str]:
    return text.split()


STOPWORDS: frozenset[str] = word_set(
    """
    a able about above according across actually after afterwards again against all
    almost alone along already also although always am among amongst an and another any
    anyhow anyone anything anyway anywhere are around as ask asked at away back be
    became because become becomes becoming been before beforehand behind being below
    beside besides between beyond both but by called came can can't cannot cent certain
    certainly clearly come comes consider considered could did didn't different do does
    doesn't doing don't done down dr during e.g each easily either else elsewhere enough
    especially etc even ever every everyone everything everywhere example examples
    except fact far few find finds first for former formerly found from further get gets
    getting give given gives go goes going gone got great had has have having he hence
    her here hereafter hereby herein hers herself him himself his how however i i.e if
    in include included includes including indeed into is isn't it it's its itself just
    kind know known last latter least less let like likely lot lots made make makes
    making many may me mean means meanwhile might mine more moreover most mostly mr mrs
    ms much must my myself namely neither never nevertheless new next no nobody none
    noone nor not nothing now nowhere number numbers of off often on once one ones only
    onto or other others otherwise our ours ourselves out over own part per percent
    perhaps please put quite rather really said same say saying says second see seem
    seemed seeming seems seen several she should show shown shows simply since so some
    somehow someone something sometime sometimes somewhere still such take taken takes
    tell th than that the their theirs them themselves then thence there thereafter
    thereby therefore therein thereupon these they thing things think this those though
    three through throughout thru thus time times to today together told too took toward
    towards truly try two under until up upon us use used uses using usually various
    very via vs want wants was way ways we well went were what whatever when whence
    whenever where whereafter whereas whereby wherein whereupon wherever whether which
    while whither who whoever whole whom whose why will with within without won't would
    year years yes yet you your yours yourself yourselves
    """
)

# General-English words that are concepts (they count for overlap and reasons) but are
# too common to be a *thematic* bridge, however rare a small library makes them look.
GENERIC_WORDS: frozenset[str] = word_set(
    """
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec ago
    monday tuesday wednesday thursday friday saturday sunday today yesterday tomorrow
    blog post comment email newsletter subscribe share privacy policy cookie website
    page link click menu home login sign account twitter facebook
    action activity amount analysis appear approach area article aspect author average
    base basis begin believe big body book bring build business call case change child
    clear common community company condition continue control cost country create
    current data day decide depend describe detail develop development different early
    easy effect element end event evidence expect experience fact factor family feature
    feel field find follow form free full function general global goal government group
    happen hard health help high history hold human idea important information instance
    interest involve issue keep key large late lead learn leave level life line live
    local long lose low main major man market matter measure meet member method model
    money move name natural need offer order page paper part particular pass pay people
    period person place plan play point policy possible practice price problem process
    produce product program project provide public quantity question range rate reach
    read reader real reason recent remain remember report require research researcher
    result role run science scientist send sense serve service set short side similar
    simple single sit situation size small social society sort source speak specific
    stand state stay story structure study suggest system team term test text theory
    total turn type understand user value version wait whole woman word work world write
    """
)

# Stance lexicon: word -> [(axis, pole)]. Shared with the contradiction engine; these
# words are never concepts themselves ("increase" is how a claim is made, not its topic).
_AXES: dict[str, tuple[list[str], list[str]]] = {
    "amount": (
        _word_list(
            "increase rise grow raise boost expand accelerate strengthen enhance amplify "
            "higher greater"
        ),
        _word_list(
            "decrease fall decline shrink reduce lower drop diminish weaken slow inhibit "
            "cut lessen smaller"
        ),
    ),
    "quality": (
        _word_list(
            "improve benefit beneficial helpful healthy healthier safe safer harmless "
            "good better best positive"
        ),
        _word_list(
            "worsen harm harmful damage damaging unhealthy dangerous unsafe risky toxic "
            "hurt bad worse worst negative"
        ),
    ),
    "truth": (
        _word_list("true correct accurate valid confirm prove"),
        _word_list("false incorrect inaccurate invalid refute disprove debunk myth"),
    ),
    "attitude": (
        _word_list("support favor favour agree accept endorse approve"),
        _word_list("oppose disagree reject criticize criticise condemn disapprove"),
    ),
    "efficacy": (
        _word_list("effective efficient succeed success successful"),
        _word_list("ineffective inefficient fail failure unsuccessful useless"),
    ),
    "causation": (
        _word_list("cause trigger induce"),
        _word_list("prevent"),
    ),
    "likelihood": (
        _word_list("possible probable"),
        _word_list("impossible improbable unlikely"),
    ),
    "legality": (
        _word_list("legal allow permit allowed permitted"),
        _word_list("illegal forbid prohibit ban forbidden prohibited banned"),
    ),
}

_IRREGULAR: dict[str, list[str]] = {
    "rise": ["rose", "risen"],
    "fall": ["fell", "fallen"],
    "grow": ["grew", "grown"],
    "cut": ["cutting"],
    "drop": ["dropped", "dropping"],
    "ban": ["banned", "banning"],
    "permit": ["permitted", "permitting"],
    "prefer": ["preferred"],
    "forbid": ["forbade", "forbidden", "forbidding"],
    "hurt": ["hurting"],
    "prove": ["proven"],
    "slow": ["slowed", "slowing", "slower"],
    "good": [],
    "bad": [],
}


def _inflections(word: str) -> set[str]:
    """Base form plus regular verb/noun inflections (close enough for a lexicon)."""
    forms = {word, *_IRREGULAR.get(word, [])}
    if word in _IRREGULAR and not _IRREGULAR[word]:
        return forms
    if word.endswith("e"):
        forms |= {word + "s", word + "d", word[:-1] + "ing"}
    elif word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        forms |= {word[:-1] + "ies", word[:-1] + "ied", word + "ing"}
    elif word.endswith(("s", "sh", "ch", "x", "z")):
        forms |= {word + "es", word + "ed", word + "ing"}
    else:
        forms |= {word + "s", word + "ed", word + "ing"}
    return forms


def _build_lexicon() -> dict[str, tuple[tuple[str, int, str], ...]]:
    lexicon: dict[str, list[tuple[str, int, str]]] = {}
    for axis, (positive, negative) in _AXES.items():
        for pole, words in ((1, positive), (-1, negative)):
            for base in words:
                for form in _inflections(base):
                    lexicon.setdefault(form, []).append((axis, pole, base))
    return {form: tuple(entries) for form, entries in lexicon.items()}


STANCE_LEXICON: dict[str, tuple[tuple[str, int, str], ...]] = _build_lexicon()
"""Inflected form -> ((axis, pole, lemma), ...)."""
STANCE_WORDS: frozenset[str] = frozenset(STANCE_LEXICON)

NEGATORS: frozenset[str] = word_set(
    "barely cannot hardly n't neither never no nobody none nor not nothing without"
)

# Words that end in -ly but are nouns (the rest ending in -ly are adverbs, not concepts).
_LY_NOUNS = word_set(
    """
    ally anomaly assembly belly bully butterfly family holly homily italy jelly july
    lily melancholy monopoly poly rally reply supply
    """
)
_NO_FOLD = word_set(
    """
    access always analysis apparatus atlas axis basis bias bonus bus business cactus
    campus canvas census chaos class consensus corpus crisis darkness diagnosis does
    economics emphasis ethics focus fungus gas genesis glass grass has his hypothesis
    illness is its lens mass mathematics means news nucleus octopus perhaps physics
    platypus plus politics process radius series species statistics status stimulus
    stress success synthesis thermodynamics thesis this us virus was witness yes
    """
)

_WORD = re.compile("[^\\W\\d_](?:[\\w]|['\u2019-](?=[^\\W_]))*")
_SEGMENT_BREAK = re.compile('[.!?;:,()\\[\\]{}"\u201c\u201d\u00ab\u00bb\u2014\u2013\n]+|\\s-\\s')


def _undouble(word: str) -> str:
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "lsz":
        return word[:-1]
    return word


def fold(word: str) -> str:
    """Plural folding plus light suffix stripping, used as a matching key only (reasons
    show the words as written): ``reefs`` -> ``reef``, ``studies``/``studied`` ->
    ``study``, ``bleached``/``bleaching`` -> ``bleach``, ``measures`` -> ``measur``."""
    if len(word) <= 3 or word in _NO_FOLD:
        return word
    w = word
    if w.endswith(("ies", "ied")) and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses") or w.endswith(("ches", "shes", "xes", "zzes")):
        w = w[:-2]
    elif w.endswith(("ss", "us", "is", "ics", "ous")):
        return w
    elif w.endswith("s"):
        w = w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        w = _undouble(w[:-3])
    elif len(w) > 5 and w.endswith("ed") and not w.endswith("eed"):
        w = _undouble(w[:-2])
    if len(w) > 4 and w.endswith("e") and not w.endswith("ee"):
        w = w[:-1]
    return w


def tokens(text: str) -> list[str]:
    """Lowercased word tokens; contractions ending in ``n't`` also yield ``n't``."""
    words: list[str] = _WORD.findall(text.lower())
    if "'" not in text and "\u2019" not in text:
        return words
    out: list[str] = []
    for raw in words:
        word = raw.replace("\u2019", "'")
        if word.endswith("n't"):
            out.append(word)
            out.append("n't")
        else:
            out.append(word[:-2] if word.endswith("'s") else word)
    return out


def _is_content(word: str) -> bool:
    if len(word) < 3 or word in STOPWORDS or word in STANCE_WORDS or word in NEGATORS:
        return False
    if "'" in word:
        return False
    return not (word.endswith("ly") and len(word) >= 5 and word not in _LY_NOUNS)


def segments(text: str) -> list[str]:
    """Clause-like pieces: bigrams never cross punctuation."""
    return [s for s in _SEGMENT_BREAK.split(text) if s.strip()]


@lru_cache(maxsize=262144)
def _key(word: str) -> str | None:
    """The folded key of a content word, ``None`` for anything else (cached)."""
    return fold(word) if _is_content(word) else None


def content_tokens(text: str) -> list[str]:
    """Folded content words in order (used by the hash embedder too)."""
    return [k for k in map(_key, tokens(text)) if k is not None]


def _iter_concepts(text: str) -> Iterator[tuple[str, str]]:
    """(concept, surface form) for every occurrence, unigrams and bigrams."""
    for segment in segments(text):
        prev_key: str | None = None
        prev_word = ""
        for word in tokens(segment):
            key = _key(word)
            if key is None:
                prev_key = None
                continue
            yield key, word
            if prev_key is not None and prev_key != key:
                yield f"{prev_key} {key}", f"{prev_word} {word}"
            prev_key, prev_word = key, word


def concept_counts(text: str) -> Counter[str]:
    """Occurrences of each concept in ``text``."""
    return Counter(key for key, _ in _iter_concepts(text))


def extract_concepts(text: str) -> set[str]:
    """The set of concepts in ``text``."""
    return {key for key, _ in _iter_concepts(text)}


def surface_forms(text: str) -> dict[str, str]:
    """Concept -> the first surface form seen in ``text`` (for human-readable reasons).
    Several engines ask for the same new chunk's forms: the last few thousand texts'
    answers are kept (a copy is returned, so callers may change theirs)."""
    return dict(_surface_forms(text))


@lru_cache(maxsize=4096)
def _surface_forms(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, surface in _iter_concepts(text):
        out.setdefault(key, surface)
    return out


_GENERIC_KEYS = frozenset(fold(w) for w in GENERIC_WORDS)


def is_generic(concept: str) -> bool:
    """True if every word of the concept is general English (``system``, ``data set``)."""
    return all(part in _GENERIC_KEYS for part in concept.split(" "))


@lru_cache(maxsize=1)
@lru_cache(maxsize=1)
def generic_ids() -> npt.NDArray[np.uint32]:
    """Sorted hashed ids of every generic concept (unigrams and bigrams of generic words;
    computed once, read-only)."""
    keys = sorted(_GENERIC_KEYS)
    ids = {concept_id(k) for k in keys}
    ids.update(concept_id(f"{a} {b}") for a in keys for b in keys if a != b)
    out = np.array(sorted(ids), dtype=np.uint32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=1)
def _generic_buckets() -> npt.NDArray[np.bool_]:
    """A bucket bitmap of :func:`generic_ids`: a cheap first test before the exact one."""
    table = np.zeros(1 << _BUCKET_BITS, dtype=bool)
    table[generic_ids() & _BUCKET_MASK] = True
    return table


def _excluded(
    ids: npt.NDArray[np.uint32], exclude: npt.NDArray[np.uint32]
) -> npt.NDArray[np.bool_]:
    """``np.isin(ids, exclude)``, through the bucket bitmap for the generic concepts (a
    sort of the big generic list per call cost more than the rest of a keyphrase query)."""
    if exclude is not generic_ids():
        found: npt.NDArray[np.bool_] = np.isin(ids, exclude)
        return found
    hit: npt.NDArray[np.bool_] = _generic_buckets()[ids & _BUCKET_MASK]
    if hit.any():  # exact check of the bucket hits (generic_ids is sorted)
        candidates = ids[hit]
        at = np.minimum(np.searchsorted(exclude, candidates), exclude.size - 1)
        hit[hit] = exclude[at] == candidates
    return hit


# --- hashed concept ids ------------------------------------------------------------------

_M32 = 0xFFFFFFFF


@lru_cache(maxsize=262144)
def _unigram_id(key: str) -> int:
    return zlib.crc32(key.encode("utf-8"))


def _pair_id(a: int, b: int) -> int:
    """Id of the bigram ``a b`` from its two unigram ids (see :func:`_pair_ids`)."""
    x = (a * 0x9E3779B1 + b + 0x7F4A7C15) & _M32
    x ^= x >> 15
    x = (x * 0x85EBCA6B) & _M32
    return x ^ (x >> 13)


def _pair_ids(a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Vectorised :func:`_pair_id` (no overflow: every product stays below 2**64)."""
    m = np.uint64(_M32)
    x = (a * np.uint64(0x9E3779B1) + b + np.uint64(0x7F4A7C15)) & m
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x85EBCA6B)) & m
    out: npt.NDArray[np.uint64] = x ^ (x >> np.uint64(13))
    return out


def concept_id(concept: str) -> int:
    """A stable 32-bit id (CRC-32 based): the same in every process, unlike ``hash()``."""
    first, _, second = concept.partition(" ")
    if not second:
        return _unigram_id(first)
    return _pair_id(_unigram_id(first), _unigram_id(second))


@lru_cache(maxsize=262144)
def _token_id(word: str) -> int:
    """Unigram id of a raw lowercased token, -1 if it is not a content word."""
    if word.endswith(("'s", "\u2019s")):
        word = word[:-2]
    key = _key(word.replace("\u2019", "'"))
    return -1 if key is None else _unigram_id(key)


_TOKEN_OR_BREAK = re.compile(f"({_WORD.pattern})|{_SEGMENT_BREAK.pattern}")


def _token_ids(text: str) -> list[int]:
    """Unigram ids in order, -1 for stopwords and clause breaks (bigrams never span -1)."""
    return [_token_id(w) if w else -1 for w in _TOKEN_OR_BREAK.findall(text.lower())]


def hashed_concepts(
    texts: Sequence[str],
) -> list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]]:
    """Per text: sorted unique concept ids and their counts; the same concepts as
    :func:`concept_counts`, computed for many texts at once with numpy."""
    if not texts:
        return []
    sequences = [_token_ids(t) for t in texts]
    lengths = np.fromiter((len(s) + 1 for s in sequences), dtype=np.int64, count=len(texts))
    flat = np.fromiter(
        (i for seq in sequences for i in (*seq, -1)), dtype=np.int64, count=int(lengths.sum())
    )
    owner = np.repeat(np.arange(len(texts), dtype=np.uint64), lengths)
    valid = flat >= 0
    left, right = flat[:-1], flat[1:]
    pair = (left >= 0) & (right >= 0) & (left != right)
    bigrams = _pair_ids(left[pair].astype(np.uint64), right[pair].astype(np.uint64))
    keys = np.concatenate(
        [
            (owner[valid] << np.uint64(32)) | flat[valid].astype(np.uint64),
            (owner[:-1][pair] << np.uint64(32)) | bigrams,
        ]
    )
    unique, counts = np.unique(keys, return_counts=True)
    bounds = np.searchsorted(unique >> np.uint64(32), np.arange(len(texts) + 1, dtype=np.uint64))
    ids = (unique & np.uint64(_M32)).astype(np.uint32)
    capped = np.minimum(counts, 65535).astype(np.uint16)
    return [
        (ids[bounds[i] : bounds[i + 1]], capped[bounds[i] : bounds[i + 1]])
        for i in range(len(texts))
    ]


# --- library statistics ----------------------------------------------------------------

_SORTED_SEGMENT = 200_000
"""Concept entries from which a flat segment is searched through a sorted copy of its ids
(binary search) instead of a pass over all of them."""
_BUCKET_BITS = 22
_BUCKET_MASK = (1 << _BUCKET_BITS) - 1
_EMPTY_IDS: npt.NDArray[np.uint32] = np.zeros(0, dtype=np.uint32)
_ADD_BATCH = 4096


def _bump(table: npt.NDArray[np.int32], ids: npt.NDArray[np.uint32], delta: int) -> None:
    """``table[bucket(id)] += delta`` for every id (repeats count)."""
    if ids.size == 0:
        return
    buckets = ids & _BUCKET_MASK
    if buckets.size < table.size // 16:
        np.add.at(table, buckets, delta)
    else:
        table += (delta * np.bincount(buckets, minlength=table.size)).astype(np.int32)


@dataclass(frozen=True)
class _Row:
    document_id: str
    ids: npt.NDArray[np.uint32]  # sorted unique hashed concept ids
    counts: npt.NDArray[np.uint16]  # occurrences of each in the chunk


@dataclass(frozen=True)
class _Flat:
    """All chunks' concept ids in one array, for vectorised look-ups."""

    ids: npt.NDArray[np.uint32]
    counts: npt.NDArray[np.uint16]
    rows: npt.NDArray[np.int64]  # index into chunk_ids
    docs: npt.NDArray[np.int64]  # index into document_ids, per entry
    chunk_ids: list[str]
    document_ids: list[str]


class _Flats:
    """:class:`_Flat` segments kept up to date as documents come and go: a new batch of
    chunks is one more segment, a removed chunk a dead row, so a worker's library index
    is not flattened again (seconds at 100k chunks) for every document it takes in. Row
    and document numbers are global to the segments and never reused; once dead entries
    or segments pile up, the owner flattens everything again."""

    def __init__(self, base: _Flat) -> None:
        self.segments = [base]
        self.chunk_ids: list[str] = list(base.chunk_ids)
        self.document_ids: list[str] = list(base.document_ids)
        self.row_of = {c: i for i, c in enumerate(self.chunk_ids)}
        self.doc_code = {d: i for i, d in enumerate(self.document_ids)}
        self.alive = np.ones(len(self.chunk_ids), dtype=bool)
        self.sizes = np.bincount(base.rows, minlength=len(self.chunk_ids)).astype(np.int64)
        self.entries = int(base.ids.size)
        self.dead_entries = 0
        self._sorted: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]] = {}

    def sorted(self, number: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
        """Segment ``number``'s entry positions in the order of their ids, and the sorted
        ids (made on first use; segments never change)."""
        found = self._sorted.get(number)
        if found is None:
            ids = self.segments[number].ids
            order = np.argsort(ids, kind="stable").astype(np.int64)
            found = self._sorted[number] = (order, ids[order])
        return found

    @property
    def worn(self) -> bool:
        return len(self.segments) > 16 or self.dead_entries > max(4096, self.entries // 4)

    def append(self, rows: list[tuple[str, _Row]]) -> None:
        start = len(self.chunk_ids)
        codes = []
        for chunk_id, row in rows:
            self.row_of[chunk_id] = len(self.chunk_ids)
            self.chunk_ids.append(chunk_id)
            codes.append(self.doc_code.setdefault(row.document_id, len(self.doc_code)))
            if codes[-1] == len(self.document_ids):
                self.document_ids.append(row.document_id)
        sizes = np.fromiter((r.ids.size for _, r in rows), dtype=np.int64, count=len(rows))
        entry_rows = np.repeat(np.arange(start, start + len(rows), dtype=np.int64), sizes)
        entry_docs = np.repeat(np.asarray(codes, dtype=np.int64), sizes)
        self.segments.append(
            _Flat(
                ids=np.concatenate([r.ids for _, r in rows]),
                counts=np.concatenate([r.counts for _, r in rows]),
                rows=entry_rows,
                docs=entry_docs,
                chunk_ids=[],
                document_ids=[],
            )
        )
        self.alive = np.concatenate([self.alive, np.ones(len(rows), dtype=bool)])
        self.sizes = np.concatenate([self.sizes, sizes])
        self.entries += int(sizes.sum())

    def kill(self, chunk_ids: Iterable[str]) -> None:
        for chunk_id in chunk_ids:
            row = self.row_of.pop(chunk_id, None)
            if row is not None and self.alive[row]:
                self.alive[row] = False
                self.dead_entries += int(self.sizes[row])


@dataclass(frozen=True)
class ConceptHit:
    """A chunk that contains a looked-up concept id."""

    chunk_id: str
    document_id: str
    concept: int
    count: int


class ConceptIndex:
    """Per-chunk hashed concepts and document (chunk) frequencies for IDF.

    ``add``/``remove_document`` mirror :class:`~rhizome.pipeline.connect.VectorIndex`, so
    a worker can keep one of each for the whole library and update them per document.
    """

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._df = np.zeros(1 << _BUCKET_BITS, dtype=np.int32)
        self._flat: _Flats | None = None
        self._doc_df = np.zeros(1 << _BUCKET_BITS, dtype=np.int32)
        self._doc_chunks: dict[str, set[str]] = {}
        self._doc_counts: dict[str, tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]] = {}
        self._doc_unique: dict[str, npt.NDArray[np.uint32]] = {}
        """Each document's sorted unique concept ids, kept up to date as chunks are added
        (a huge document added page by page is not re-read whole for every page)."""

    @classmethod
    def from_texts(cls, items: Iterable[tuple[str, str, str]]) -> ConceptIndex:
        """Build from ``(chunk_id, document_id, text)`` triples."""
        index = cls()
        index.add(items)
        return index

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._rows

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (the id strings come on top)."""
        rows = sum(r.ids.nbytes + r.counts.nbytes for r in self._rows.values())
        return rows + self._df.nbytes + self._doc_df.nbytes

    def copy(self) -> ConceptIndex:
        """A cheap copy (per-chunk arrays are shared; they are never mutated)."""
        other = ConceptIndex()
        other._rows = dict(self._rows)
        other._df = self._df.copy()
        other._doc_df = self._doc_df.copy()
        other._doc_chunks = {doc: set(ids) for doc, ids in self._doc_chunks.items()}
        other._doc_counts = dict(self._doc_counts)
        other._doc_unique = dict(self._doc_unique)
        return other

    def add(self, items: Iterable[tuple[str, str, str]]) -> None:
        """Add (or replace) chunks given as ``(chunk_id, document_id, text)``."""
        batch: dict[str, tuple[str, str]] = {}
        for chunk_id, document_id, text in items:
            batch[chunk_id] = (document_id, text)
            if len(batch) >= _ADD_BATCH:
                self._add_batch(batch)
                batch = {}
        if batch:
            self._add_batch(batch)

    def _add_batch(self, batch: dict[str, tuple[str, str]]) -> None:
        for chunk_id in batch:
            if chunk_id in self._rows:
                self._drop(chunk_id)
        docs = sorted({doc for doc, _ in batch.values()})
        before = {doc: self._doc_ids(doc) for doc in docs}
        hashed = hashed_concepts([text for _, text in batch.values()])
        for (chunk_id, (document_id, _)), (ids, counts) in zip(batch.items(), hashed, strict=True):
            self._rows[chunk_id] = _Row(document_id, ids, counts)
            self._doc_chunks.setdefault(document_id, set()).add(chunk_id)
        if hashed:
            _bump(self._df, np.concatenate([ids for ids, _ in hashed]), 1)
        added: dict[str, list[npt.NDArray[np.uint32]]] = {doc: [] for doc in docs}
        for (document_id, _), (ids, _counts) in zip(batch.values(), hashed, strict=True):
            added[document_id].append(ids)
        fresh = []
        for doc in docs:
            new = np.unique(np.concatenate(added[doc])) if added[doc] else _EMPTY_IDS
            fresh.append(np.setdiff1d(new, before[doc], assume_unique=True))
            self._doc_unique[doc] = np.union1d(before[doc], new).astype(np.uint32)
        if fresh:
            _bump(self._doc_df, np.concatenate(fresh), 1)
        for doc in docs:
            self._doc_counts.pop(doc, None)
        if self._flat is not None and hashed:
            self._flat.append([(chunk_id, self._rows[chunk_id]) for chunk_id in batch])

    def remove_document(self, document_id: str) -> int:
        """Forget every chunk of a document; returns how many were removed."""
        gone = sorted(self._doc_chunks.get(document_id, ()))
        if not gone:
            return 0
        _bump(self._doc_df, self._doc_ids(document_id), -1)
        rows = [self._rows.pop(cid) for cid in gone]
        _bump(self._df, np.concatenate([r.ids for r in rows]), -1)
        del self._doc_chunks[document_id]
        self._doc_counts.pop(document_id, None)
        self._doc_unique.pop(document_id, None)
        if self._flat is not None:
            self._flat.kill(gone)
        return len(gone)

    def _drop(self, chunk_id: str) -> None:
        document_id = self._rows[chunk_id].document_id
        before = self._doc_ids(document_id)
        row = self._rows.pop(chunk_id)
        _bump(self._df, row.ids, -1)
        chunks = self._doc_chunks[document_id]
        chunks.discard(chunk_id)
        if not chunks:
            del self._doc_chunks[document_id]
        self._doc_counts.pop(document_id, None)  # before reading the ids again
        self._doc_unique.pop(document_id, None)
        gone = np.setdiff1d(before, self._doc_ids(document_id), assume_unique=True)
        _bump(self._doc_df, gone, -1)
        if self._flat is not None:
            self._flat.kill([chunk_id])

    def _doc_ids(self, document_id: str) -> npt.NDArray[np.uint32]:
        """Sorted unique concept ids of a document."""
        cached = self._doc_counts.get(document_id)
        if cached is not None:
            return cached[0]
        unique = self._doc_unique.get(document_id)
        if unique is not None:
            return unique
        rows = [self._rows[c].ids for c in self._doc_chunks.get(document_id, ())]
        if not rows:
            return _EMPTY_IDS
        unique = self._doc_unique[document_id] = np.unique(np.concatenate(rows))
        return unique

    def document_of(self, chunk_id: str) -> str:
        return self._rows[chunk_id].document_id

    def ids_of(self, chunk_id: str) -> npt.NDArray[np.uint32]:
        return self._rows[chunk_id].ids

    def counts_of(self, chunk_id: str) -> dict[int, int]:
        row = self._rows[chunk_id]
        return dict(zip(row.ids.tolist(), row.counts.tolist(), strict=True))

    def document_chunks(self, document_id: str) -> list[str]:
        return sorted(self._doc_chunks.get(document_id, ()))

    def document_counts(
        self, document_id: str
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
        """Concept ids of a whole document and how often each occurs (cached)."""
        found = self._doc_counts.get(document_id)
        if found is None:
            rows = [self._rows[c] for c in self.document_chunks(document_id)]
            if rows:
                ids = np.concatenate([r.ids for r in rows])
                counts = np.concatenate([r.counts for r in rows]).astype(np.int64)
                unique, inverse = np.unique(ids, return_inverse=True)
                totals = np.bincount(inverse, weights=counts, minlength=unique.size)
                found = (unique, totals.astype(np.int64))
            else:
                found = (_EMPTY_IDS, np.zeros(0, dtype=np.int64))
            self._doc_counts[document_id] = found
        return found

    def keyphrases(
        self,
        document_id: str,
        k: int,
        *,
        min_rarity: float = 0.0,
        min_mentions: int = 1,
        exclude: npt.NDArray[np.uint32] | None = None,
    ) -> dict[int, int]:
        """The document's ``k`` most characteristic concepts (mentions x document rarity,
        i.e. TF-IDF) that pass the filters: hashed id -> mentions in the document."""
        ids, counts = self.document_counts(document_id)
        if ids.size == 0:
            return {}
        rarity = self.document_rarities(ids)
        keep = (rarity >= min_rarity) & (counts >= min_mentions)
        if exclude is not None and exclude.size:
            keep &= ~_excluded(ids, exclude)
        ids, counts, rarity = ids[keep], counts[keep], rarity[keep]
        order = np.lexsort((ids, -(counts * rarity)))[:k]
        return dict(zip(ids[order].tolist(), counts[order].tolist(), strict=True))

    def df(self, concept: str | int) -> int:
        """In how many chunks the concept occurs (may over-count on a hash collision)."""
        cid = concept_id(concept) if isinstance(concept, str) else concept
        return int(self._df[cid & _BUCKET_MASK])

    def rarity(self, concept: str | int) -> float:
        """Normalised IDF in 0..1: ``ln(N/df) / ln(N)`` (1 = in one chunk, 0 = in all)."""
        n = len(self._rows)
        if n < 2:
            return 0.0
        df = self.df(concept)
        if df <= 0:
            return 1.0
        return max(0.0, min(1.0, math.log(n / df) / math.log(n)))

    def document_rarity(self, concept: str | int) -> float:
        """Like :meth:`rarity` over documents: ``ln(D/df) / ln(D)`` where ``df`` counts
        the documents that mention the concept at all."""
        cid = concept_id(concept) if isinstance(concept, str) else concept
        return float(self.document_rarities(np.array([cid], dtype=np.uint32))[0])

    def document_rarities(self, ids: npt.NDArray[np.uint32]) -> npt.NDArray[np.float64]:
        n = len(self._doc_chunks)
        if n < 2 or ids.size == 0:
            return np.zeros(ids.shape, dtype=np.float64)
        df = np.maximum(self._doc_df[ids & _BUCKET_MASK].astype(np.float64), 1.0)
        out: npt.NDArray[np.float64] = np.clip(np.log(n / df) / math.log(n), 0.0, 1.0)
        return out

    def rarities(self, ids: npt.NDArray[np.uint32]) -> npt.NDArray[np.float64]:
        """Vectorised :meth:`rarity` for hashed ids."""
        n = len(self._rows)
        if n < 2 or ids.size == 0:
            return np.zeros(ids.shape, dtype=np.float64)
        df = np.maximum(self._df[ids & _BUCKET_MASK].astype(np.float64), 1.0)
        out: npt.NDArray[np.float64] = np.clip(np.log(n / df) / math.log(n), 0.0, 1.0)
        return out

    def find(
        self,
        concept_ids: Iterable[int],
        *,
        min_mentions: int = 1,
        exclude_document: str | None = None,
    ) -> list[ConceptHit]:
        """Every (chunk, concept) occurrence of the given hashed ids, keeping only
        documents that mention the concept at least ``min_mentions`` times in all, and
        none of ``exclude_document`` (dropped before any object is made: a huge document
        looking up its own key concepts would otherwise make one per chunk).

        Vectorised: one gather through a bucket bitmap over all chunks' ids, then an
        exact check on the few candidates; no sorting of the library.
        """
        wanted = np.fromiter(set(concept_ids), dtype=np.uint32)
        if wanted.size == 0 or not self._rows:
            return []
        flats = self._flat_view()
        excluded = flats.doc_code.get(exclude_document) if exclude_document else None
        bitmap = np.zeros(1 << _BUCKET_BITS, dtype=bool)
        bitmap[wanted & _BUCKET_MASK] = True
        parts: list[tuple[npt.NDArray[Any], ...]] = []
        for number, flat in enumerate(flats.segments):
            if flat.ids.size >= _SORTED_SEGMENT:
                # a big segment: binary search in its ids sorted once, not a pass over all
                order, sorted_ids = flats.sorted(number)
                lo = np.searchsorted(sorted_ids, wanted, side="left")
                hi = np.searchsorted(sorted_ids, wanted, side="right")
                found = [order[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True) if b > a]
                positions = np.sort(np.concatenate(found)) if found else order[:0]
            else:
                candidates = np.flatnonzero(bitmap[flat.ids & _BUCKET_MASK])
                positions = candidates[np.isin(flat.ids[candidates], wanted)]
            positions = positions[flats.alive[flat.rows[positions]]]
            if excluded is not None:
                positions = positions[flat.docs[positions] != excluded]
            parts.append(
                (
                    flat.ids[positions],
                    flat.counts[positions],
                    flat.rows[positions],
                    flat.docs[positions],
                )
            )
        concepts_ = np.concatenate([p[0] for p in parts])
        counts = np.concatenate([p[1] for p in parts]).astype(np.int64)
        entry_rows = np.concatenate([p[2] for p in parts])
        entry_docs = np.concatenate([p[3] for p in parts])
        if min_mentions > 1 and concepts_.size:
            key = (entry_docs.astype(np.uint64) << np.uint64(32)) | concepts_.astype(np.uint64)
            unique, inverse = np.unique(key, return_inverse=True)
            per_doc = np.bincount(inverse, weights=counts, minlength=unique.size)
            keep = per_doc[inverse] >= min_mentions
            concepts_, counts = concepts_[keep], counts[keep]
            entry_rows, entry_docs = entry_rows[keep], entry_docs[keep]
        chunk_ids, document_ids = flats.chunk_ids, flats.document_ids
        return [
            ConceptHit(chunk_ids[r], document_ids[d], c, n)
            for r, d, c, n in zip(
                entry_rows.tolist(),
                entry_docs.tolist(),
                concepts_.tolist(),
                counts.tolist(),
                strict=True,
            )
        ]

    def _flat_view(self) -> _Flats:
        if self._flat is not None and self._flat.worn:
            self._flat = None
        if self._flat is None:
            chunk_ids = list(self._rows)
            rows = [self._rows[c] for c in chunk_ids]
            doc_code: dict[str, int] = {}
            row_docs = np.fromiter(
                (doc_code.setdefault(r.document_id, len(doc_code)) for r in rows),
                dtype=np.int64,
                count=len(rows),
            )
            sizes = np.fromiter((r.ids.size for r in rows), dtype=np.int64, count=len(rows))
            row_of_entry = np.repeat(np.arange(len(rows), dtype=np.int64), sizes)
            self._flat = _Flats(
                _Flat(
                    ids=np.concatenate([r.ids for r in rows]) if rows else _EMPTY_IDS,
                    counts=(
                        np.concatenate([r.counts for r in rows])
                        if rows
                        else np.zeros(0, dtype=np.uint16)
                    ),
                    rows=row_of_entry,
                    docs=row_docs[row_of_entry],
                    chunk_ids=chunk_ids,
                    document_ids=list(doc_code),
                )
            )
        return self._flat


def rank_concepts(shared: Iterable[str], index: ConceptIndex | None, limit: int = 2) -> list[str]:
    """The most telling concepts first: bigrams, then rarer, then alphabetical; a word
    already named inside a chosen bigram is skipped."""

    def key(c: str) -> tuple[int, float, str]:
        return (0 if " " in c else 1, -(index.rarity(c) if index else 0.0), c)

    chosen: list[str] = []
    for concept in sorted(shared, key=key):
        if any(concept in c.split(" ") for c in chosen):
            continue
        chosen.append(concept)
        if len(chosen) >= limit:
            break
    return chosen


def quote(concepts_: Sequence[str], forms: dict[str, str] | None = None) -> str:
    """``'coral reef', 'bleaching'`` using surface forms where known."""
    return ", ".join(f"'{(forms or {}).get(c, c)}'" for c in concepts_)
