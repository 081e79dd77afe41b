"""Readwise: reading an export (the CSV export, the JSON of the export API, or the export
API itself), matching books to documents, and placing each highlight in its document.

* **Books → documents** by a scored comparison of title and author over every document of
  the user (:func:`match_book`): the best one wins only when it is clearly good (score ≥
  0.85 and ahead of the next by 0.05); otherwise the book is reported with its closest
  candidates, never forced onto a document.
* **Highlights → passages** with the tiers of :mod:`rhizome.library.highlight_match`; the
  highlight's location (page, Kindle location) says where to look first. Image highlights
  and highlights under 10 characters are skipped and counted.
* **The ledger** (``readwise_highlights``): one row per Readwise highlight with its
  outcome — ``matched``, ``needs_review`` (kept with its suggested passage),
  ``unmatched`` (with the reason, also for books that are not in the library) or
  ``skipped`` — keyed by its external id, so importing the same export again adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from rapidfuzz import fuzz

from rhizome.errors import InvalidInputError, PermanentError, TransientError
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.queries import load_queries
from rhizome.library.highlight_match import Match, Matcher, normalize, spans_of
from rhizome.library.highlights import MAX_TEXT, dumps
from rhizome.library.model import Document

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_HIGHLIGHTS = 200_000
MIN_CHARS = 10
BOOK_MATCH = 0.85
BOOK_MARGIN = 0.05
CHARS_PER_LOCATION = 120
"""A Kindle location is about 120 characters of text."""
_COLOR = re.compile(r"^[a-z]{1,20}$|^#[0-9a-fA-F]{6}$")
_IMAGE = re.compile(r"^\s*!\[[^\]]*\]\([^)]*\)\s*$|^\s*<img\b", re.IGNORECASE)
_CSV_COLUMNS = ("Highlight", "Book Title")


class ReadwiseFormatError(InvalidInputError):
    default_hint = (
        "Use the CSV export of readwise.io/export, or the JSON of the export API "
        "(books with their highlights)."
    )


# --- records ----------------------------------------------------------------------------------


@dataclass
class RwHighlight:
    external_id: str
    text: str
    readwise_id: str | None = None
    note: str | None = None
    color: str | None = None
    tags: list[str] = field(default_factory=list)
    location: int | None = None
    location_type: str | None = None
    highlighted_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RwBook:
    title: str
    author: str | None
    highlights: list[RwHighlight] = field(default_factory=list)
    category: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "author": self.author,
            "category": self.category,
            "highlights": [h.to_json() for h in self.highlights],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RwBook:
        return cls(
            title=data["title"],
            author=data.get("author"),
            category=data.get("category"),
            highlights=[RwHighlight(**h) for h in data.get("highlights") or []],
        )


def _text(value: Any, limit: int = 10_000) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    return text[:limit] if text else None


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(str(value).strip()))
    except ValueError:
        return None


def _color(value: Any) -> str | None:
    text = (_text(value, 30) or "").lower()
    return text if _COLOR.match(text) else None


def _tags(value: Any) -> list[str]:
    names: list[str] = []
    if isinstance(value, str):
        names = [t for t in value.split(",")]
    elif isinstance(value, list):
        for t in value:
            names.append(str(t.get("name") if isinstance(t, dict) else t))
    out = [t.strip().lstrip("#")[:100] for t in names if t and t.strip()]
    return list(dict.fromkeys(t for t in out if t))[:50]


def _csv_id(title: str, author: str | None, text: str, location: int | None) -> str:
    key = f"{title}\x1f{author or ''}\x1f{text}\x1f{location if location is not None else ''}"
    return "readwise-csv:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


# --- reading exports -----------------------------------------------------------------------------


def parse_export(raw: bytes, filename: str | None = None) -> tuple[str, list[RwBook]]:
    """``(format, books)`` of a Readwise export: the CSV export or the export API's JSON
    (``{"results": [book, …]}`` or a list of books). Raises :class:`ReadwiseFormatError`."""
    if len(raw) > MAX_FILE_BYTES:
        raise ReadwiseFormatError(
            f"The export is {len(raw) / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB.",
            "Import it through the export API (rhizome readwise import --api), or split it.",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReadwiseFormatError("The export is not UTF-8 text.") from None
    if "\x00" in text:
        raise ReadwiseFormatError("The export contains binary data.")
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) or (filename or "").lower().endswith(".json"):
        return "json", parse_json(text)
    return "csv", parse_csv(text)


def parse_csv(text: str) -> list[RwBook]:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if not all(c in columns for c in _CSV_COLUMNS):
        raise ReadwiseFormatError(
            "This CSV is not a Readwise export: it has no 'Highlight' and 'Book Title' columns.",
        )
    books: dict[tuple[str, str], RwBook] = {}
    count = 0
    try:
        for row in reader:
            row = {(k or "").strip(): v for k, v in row.items()}
            body = _text(row.get("Highlight"), MAX_TEXT * 2)
            title = _text(row.get("Book Title"), 500)
            if not body or not title:
                continue
            count += 1
            if count > MAX_HIGHLIGHTS:
                raise ReadwiseFormatError(
                    f"The export holds more than {MAX_HIGHLIGHTS:,} highlights.", "Split it."
                )
            author = _text(row.get("Book Author"), 500)
            location = _int(row.get("Location"))
            book = books.setdefault((title, author or ""), RwBook(title=title, author=author))
            book.highlights.append(
                RwHighlight(
                    external_id=_csv_id(title, author, body, location),
                    text=body,
                    note=_text(row.get("Note")),
                    color=_color(row.get("Color")),
                    tags=_tags(row.get("Tags")),
                    location=location,
                    location_type=_text(row.get("Location Type"), 30),
                    highlighted_at=_text(row.get("Highlighted at"), 60),
                )
            )
    except csv.Error as exc:
        raise ReadwiseFormatError(f"The CSV cannot be read: {exc}.") from None
    return list(books.values())


def parse_json(text: str) -> list[RwBook]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReadwiseFormatError(f"The JSON cannot be read: {exc}.") from None
    return books_from_results(data.get("results") if isinstance(data, dict) else data)


def books_from_results(results: Any) -> list[RwBook]:
    """Books of the export API's ``results`` (a list of books with ``highlights``)."""
    if not isinstance(results, list):
        raise ReadwiseFormatError(
            "This JSON is not a Readwise export: it has no list of books ('results')."
        )
    books: list[RwBook] = []
    count = 0
    for item in results:
        if not isinstance(item, dict):
            raise ReadwiseFormatError("A book of the export is not an object.")
        title = _text(item.get("readable_title") or item.get("title"), 500)
        if not title:
            continue
        highlights: list[RwHighlight] = []
        for h in item.get("highlights") or []:
            if not isinstance(h, dict):
                raise ReadwiseFormatError(f"A highlight of {title!r} is not an object.")
            body = _text(h.get("text"), MAX_TEXT * 2)
            if not body:
                continue
            count += 1
            if count > MAX_HIGHLIGHTS:
                raise ReadwiseFormatError(
                    f"The export holds more than {MAX_HIGHLIGHTS:,} highlights.", "Split it."
                )
            rid = h.get("id")
            location = _int(h.get("location"))
            author = _text(item.get("author"), 500)
            highlights.append(
                RwHighlight(
                    external_id=f"readwise:{rid}"
                    if rid is not None
                    else _csv_id(title, author, body, location),
                    readwise_id=str(rid) if rid is not None else None,
                    text=body,
                    note=_text(h.get("note")),
                    color=_color(h.get("color")),
                    tags=_tags(h.get("tags")),
                    location=location,
                    location_type=_text(h.get("location_type"), 30),
                    highlighted_at=_text(h.get("highlighted_at"), 60),
                )
            )
        books.append(
            RwBook(
                title=title,
                author=_text(item.get("author"), 500),
                category=_text(item.get("category"), 60),
                highlights=highlights,
            )
        )
    return books


# --- the export API -------------------------------------------------------------------------------


class ReadwiseClient:
    """The Readwise export API (``GET {base}/export/``): paged with ``pageCursor``,
    incremental with ``updatedAfter``, and patient with rate limits (HTTP 429 and its
    ``Retry-After``) and passing server errors."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_tries: int = 5,
        max_wait: float = 120.0,
        wait: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.max_tries = max_tries
        self.max_wait = max_wait
        self.wait = wait
        self.waited = 0.0
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def page(self, cursor: str | None, updated_after: str | None) -> tuple[list[Any], str | None]:
        """One page of books: ``(results, next page cursor or None)``."""
        params = {k: v for k, v in (("pageCursor", cursor), ("updatedAfter", updated_after)) if v}
        url = f"{self.base_url}/export/"
        for attempt in range(1, self.max_tries + 1):
            try:
                response = self._client.get(
                    url, params=params, headers={"Authorization": f"Token {self.token}"}
                )
            except httpx.HTTPError as exc:
                if attempt == self.max_tries:
                    raise TransientError(
                        f"Readwise could not be reached: {exc}.", "The import retries later."
                    ) from None
                self._sleep(min(2.0**attempt, self.max_wait))
                continue
            if response.status_code == 429 or response.status_code >= 500:
                delay = _retry_after(response.headers.get("Retry-After"))
                if delay is None:
                    delay = min(2.0**attempt, 30.0)
                if attempt == self.max_tries or delay > self.max_wait:
                    raise TransientError(
                        f"Readwise answered {response.status_code} "
                        f"({'rate limit' if response.status_code == 429 else 'server error'}).",
                        "The import retries later, from the page it reached.",
                    )
                self._sleep(delay)
                continue
            if response.status_code in (401, 403):
                raise InvalidInputError(
                    "Readwise refused the access token.",
                    "Get your token at readwise.io/access_token and import again with it.",
                )
            if response.status_code >= 400:
                raise PermanentError(
                    f"Readwise answered {response.status_code} to the export request.",
                    "Check the Readwise API URL (RHIZOME_READWISE_API_URL).",
                )
            try:
                data = response.json()
            except ValueError:
                raise PermanentError("Readwise sent something that is not JSON.") from None
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise PermanentError("Readwise's answer has no list of results.")
            nxt = data.get("nextPageCursor")
            return data["results"], str(nxt) if nxt else None
        raise TransientError("Readwise did not answer.")  # pragma: no cover

    def _sleep(self, seconds: float) -> None:
        self.waited += seconds
        self.wait(seconds)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- books → documents ------------------------------------------------------------------------


def _norm_words(text: str | None) -> str:
    folded = unicodedata.normalize("NFKC", text or "").lower()
    return " ".join(re.findall(r"\w+", folded))


def _main_title(title: str) -> str:
    return re.split(r"[:;(\[]| - | — |, or,", title, maxsplit=1)[0]


def title_similarity(a: str, b: str) -> float:
    full = fuzz.token_sort_ratio(_norm_words(a), _norm_words(b))
    main = fuzz.token_sort_ratio(_norm_words(_main_title(a)), _norm_words(_main_title(b)))
    return max(full, main) / 100.0


def author_similarity(a: str | None, b: str | None) -> float | None:
    na, nb = _norm_words(a), _norm_words(b)
    if not na or not nb:
        return None
    return float(fuzz.token_set_ratio(na, nb)) / 100.0


@dataclass
class BookMatch:
    document: Document | None
    score: float
    reason: str | None
    candidates: list[dict[str, Any]] = field(default_factory=list)


def book_score(title: str, author: str | None, doc: Document) -> float:
    t = title_similarity(title, doc.title)
    a = author_similarity(author, doc.author)
    return round(0.7 * t + 0.3 * a if a is not None else 0.92 * t, 4)


def match_book(title: str, author: str | None, documents: Sequence[Document]) -> BookMatch:
    """The document a book is, by a scored title and author comparison over every
    document (see the module doc)."""
    scored = sorted(
        ((book_score(title, author, d), d) for d in documents), key=lambda p: (-p[0], p[1].id)
    )
    candidates = [
        {"document_id": d.id, "title": d.title, "author": d.author, "score": s}
        for s, d in scored[:3]
    ]
    if not scored:
        return BookMatch(None, 0.0, "the library has no ready documents", candidates)
    best_score, best = scored[0]
    label = f"{title!r}" + (f" by {author}" if author else "")
    if best_score < BOOK_MATCH:
        return BookMatch(
            None,
            best_score,
            f"no document of the library matches {label} (closest: {best.title!r}, "
            f"score {best_score:.2f})",
            candidates,
        )
    if len(scored) > 1 and scored[1][0] > best_score - BOOK_MARGIN:
        other = scored[1][1]
        return BookMatch(
            None,
            best_score,
            f"{label} matches several documents equally well ({best.title!r} and "
            f"{other.title!r}); not guessing",
            candidates,
        )
    return BookMatch(best, best_score, None, candidates)


# --- highlights → passages ------------------------------------------------------------------


def expected_position(h: RwHighlight, content_len: int, page_count: int | None) -> int | None:
    """Where in the markdown a highlight's location points (roughly)."""
    if h.location is None or h.location < 0:
        return None
    kind = (h.location_type or "").lower()
    if kind == "page":
        if page_count:
            return min(content_len, int((h.location - 1) / page_count * content_len))
        return min(content_len, h.location * 2000)
    if kind in ("location", "kindle", "kindle_location"):
        return min(content_len, h.location * CHARS_PER_LOCATION)
    return None


def skip_reason(h: RwHighlight) -> str | None:
    if _IMAGE.match(h.text):
        return "image highlight"
    if len(h.text.strip()) < MIN_CHARS:
        return f"shorter than {MIN_CHARS} characters"
    if len(h.text) > MAX_TEXT:
        return f"longer than {MAX_TEXT:,} characters"
    return None


@dataclass
class BookResult:
    title: str
    author: str | None
    document_id: str | None
    document_title: str | None
    score: float
    status: str
    reason: str | None
    counts: dict[str, int]
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _counts() -> dict[str, int]:
    return {"matched": 0, "needs_review": 0, "unmatched": 0, "skipped": 0, "duplicates": 0}


class ReadwiseRepo:
    """The Readwise ledger and account (every call scoped by the user)."""

    def __init__(self, store: SqlJobStore) -> None:
        self.store = store
        self.queries = load_queries(store.dialect, "rhizome.library")

    def items(
        self,
        user_id: str,
        *,
        job_id: str | None = None,
        status: str | None = None,
        limit: int = 500,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        with self.store.session(self.queries) as s:
            rows = s.all(
                "rw_items",
                {
                    "user_id": user_id,
                    "job_id": job_id,
                    "status": status,
                    "limit": limit,
                    "offset": offset,
                },
            )
        return [_item_out(r) for r in rows]

    def counts(self, user_id: str, job_id: str | None = None) -> dict[str, int]:
        with self.store.session(self.queries) as s:
            rows = s.all("rw_item_counts", {"user_id": user_id, "job_id": job_id})
        return {r["status"]: int(r["n"]) for r in rows}

    def account(self, user_id: str) -> dict[str, Any] | None:
        with self.store.session(self.queries) as s:
            return s.one("rw_get_account", {"user_id": user_id})

    def save_token(self, user_id: str, token: str) -> None:
        token = token.strip()
        if not token or len(token) > 200 or not re.fullmatch(r"[\x21-\x7e]+", token):
            raise InvalidInputError(
                "That is not a Readwise access token.",
                "Copy the token from readwise.io/access_token.",
            )
        with self.store.transaction(self.queries) as tx:
            tx.run("rw_put_token", {"user_id": user_id, "token": token})

    def set_updated_after(self, user_id: str, when: str) -> None:
        with self.store.transaction(self.queries) as tx:
            tx.run("rw_set_updated_after", {"user_id": user_id, "updated_after": when})

    def account_view(self, user_id: str) -> dict[str, Any]:
        acc = self.account(user_id) or {}
        token = acc.get("token")
        return {
            "token_set": bool(token),
            "token_hint": f"…{token[-4:]}" if token and len(token) > 8 else None,
            "updated_after": acc.get("updated_after"),
            "last_import_at": str(acc["last_import_at"]) if acc.get("last_import_at") else None,
        }


def _item_out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    tags = out.get("tags")
    if isinstance(tags, str | bytes):
        out["tags"] = json.loads(tags)
    for key in ("document_id", "highlight_id"):
        if out.get(key) is not None:
            out[key] = str(out[key])
    for key in ("created_at", "updated_at"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].isoformat()
    return out


def import_book(
    store: SqlJobStore,
    *,
    user_id: str,
    job_id: str,
    book: RwBook,
    documents: Sequence[Document],
    content_of: Callable[[Document], tuple[str, list[tuple[str, int, int]]] | None],
    matchers: dict[str, Matcher],
) -> BookResult:
    """Match one book to a document and each of its highlights to a passage; write the
    highlights and the ledger in one transaction. Re-running it (the same job after a
    crash, or a later import) adds nothing twice."""
    queries = load_queries(store.dialect, "rhizome.library")
    found = match_book(book.title, book.author, documents)
    counts = _counts()
    doc = found.document
    loaded = content_of(doc) if doc is not None else None
    reason = found.reason
    if doc is not None and loaded is None:
        reason = f"the document {doc.title!r} has no markdown yet (still processing?)"
        doc = None
    ids = [h.external_id for h in book.highlights]
    with store.session(queries) as s:
        existing = {
            r["external_id"]: r for r in s.all("rw_items_by_ids", {"user_id": user_id, "ids": ids})
        }
        known_texts: dict[str, str] = {}
        if doc is not None:
            for r in s.all("rw_document_texts", {"user_id": user_id, "document_id": doc.id}):
                for t in (r.get("text"), r.get("original_text")):
                    if t:
                        known_texts.setdefault(normalize(t), str(r["id"]))
    content, spans = loaded if loaded is not None else ("", [])
    matcher: Matcher | None = None
    if doc is not None:
        matcher = matchers.get(doc.id)
        if matcher is None:
            matcher = Matcher(content, [(s, e) for _, s, e in spans])
            matchers.clear()  # one document's prepared text at a time
            matchers[doc.id] = matcher
    radius = max(50_000, len(content) // 10)
    with store.transaction(queries) as tx:
        for h in book.highlights:
            prior = existing.get(h.external_id)
            if prior is not None and prior.get("highlight_id") is not None:
                if prior.get("import_job_id") == job_id:
                    counts[str(prior["status"])] += 1  # this job placed it before a crash
                else:
                    counts["duplicates"] += 1
                continue
            ledger = {
                "user_id": user_id,
                "external_id": h.external_id,
                "readwise_id": h.readwise_id,
                "book_title": book.title,
                "book_author": book.author,
                "text": h.text[: MAX_TEXT * 2],
                "note": h.note,
                "color": h.color,
                "tags": dumps(h.tags),
                "location": h.location,
                "location_type": h.location_type,
                "highlighted_at": h.highlighted_at,
                "document_id": doc.id if doc is not None else None,
                "highlight_id": None,
                "book_score": found.score,
                "confidence": None,
                "match_method": None,
                "import_job_id": job_id,
            }
            skipped = skip_reason(h)
            if skipped is not None:
                counts["skipped"] += 1
                tx.run("rw_upsert_item", {**ledger, "status": "skipped", "reason": skipped})
                continue
            if doc is None or matcher is None:
                counts["unmatched"] += 1
                tx.run(
                    "rw_upsert_item",
                    {**ledger, "status": "unmatched", "reason": f"book not placed: {reason}"},
                )
                continue
            same = known_texts.get(normalize(h.text))
            if same is not None:
                counts["duplicates"] += 1
                tx.run(
                    "rw_upsert_item",
                    {
                        **ledger,
                        "status": "matched",
                        "reason": "already imported (same text)",
                        "highlight_id": same,
                        "import_job_id": prior.get("import_job_id") if prior else None,
                    },
                )
                continue
            expected = expected_position(h, len(content), doc.page_count)
            match = matcher.find(h.text, expected=expected, radius=radius if expected else None)
            row = _highlight_row(user_id, doc.id, h, match, content, spans)
            if tx.run("rw_insert_highlight", row) != 1:
                taken = tx.one(
                    "rw_highlight_by_external", {"user_id": user_id, "external_id": h.external_id}
                )
                counts["duplicates"] += 1
                if taken is not None:
                    tx.run(
                        "rw_upsert_item",
                        {
                            **ledger,
                            "status": "matched",
                            "reason": "already imported",
                            "highlight_id": str(taken["id"]),
                        },
                    )
                continue
            known_texts.setdefault(normalize(h.text), str(row["id"]))
            counts[match.status] += 1
            tx.run(
                "rw_upsert_item",
                {
                    **ledger,
                    "status": match.status,
                    "reason": row["match_reason"],
                    "highlight_id": row["id"],
                    "confidence": round(match.confidence, 4),
                    "match_method": match.method,
                },
            )
    return BookResult(
        title=book.title,
        author=book.author,
        document_id=doc.id if doc is not None else None,
        document_title=doc.title if doc is not None else None,
        score=found.score,
        status="matched" if doc is not None else "unmatched",
        reason=reason,
        counts=counts,
        candidates=found.candidates if doc is None else [],
    )


def _highlight_row(
    user_id: str,
    document_id: str,
    h: RwHighlight,
    match: Match,
    content: str,
    spans: Sequence[tuple[str, int, int]],
) -> dict[str, Any]:
    start, end = (match.start, match.end) if match.found else (None, None)
    ids = spans_of(spans, start, end) if start is not None and end is not None else []
    text, original = h.text, None
    reason = match.reason
    if match.status == "matched" and start is not None and end is not None:
        passage = content[start:end]
        if passage != h.text:
            text, original = passage, h.text
    elif match.status == "needs_review":
        reason = (
            f"a similar passage was found (similarity {match.confidence:.2f}): accept or reject it"
        )
    return {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "document_id": document_id,
        "chunk_id": ids[0] if ids else None,
        "chunk_ids": dumps(ids),
        "text": text,
        "note": h.note,
        "color": h.color,
        "tags": dumps(h.tags),
        "external_id": h.external_id,
        "start_offset": start,
        "end_offset": end,
        "match_method": match.method,
        "confidence": round(match.confidence, 4),
        "status": match.status,
        "match_reason": reason,
        "original_text": original,
        "created_at": _time(h.highlighted_at),
    }


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
