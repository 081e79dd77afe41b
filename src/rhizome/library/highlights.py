"""Highlights: passages of a document's ``content.md`` the user marked (by hand, or
imported from Readwise or Obsidian), with a note, a colour and tags.

A highlight is anchored by ``start``/``end`` offsets into ``content.md`` (the same offsets
chunks have, so ``content[start:end] == text``) and lists the ids of the chunks it spans.
When the document's chunks are replaced the highlight is re-anchored from its offsets;
one whose offsets no longer hold its text is marked ``needs_review``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from rhizome.errors import InvalidInputError
from rhizome.jobs.model import parse_time
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.queries import load_queries
from rhizome.library.repo import DocumentNotFoundError, Library

SOURCES = ("manual", "readwise", "obsidian")
STATUSES = ("matched", "needs_review", "unmatched")
HighlightSource = Literal["manual", "readwise", "obsidian"]
HighlightStatus = Literal["matched", "needs_review", "unmatched"]
MAX_TEXT = 20_000
_COLOR = re.compile(r"^[a-z]{1,20}$|^#[0-9a-fA-F]{6}$")


class HighlightNotFoundError(DocumentNotFoundError):
    default_hint = "List highlights with `rhizome highlights list` to find a valid id."


def _json_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | bytes):
        loaded = json.loads(value)
        return list(loaded) if isinstance(loaded, list) else []
    return list(value)


def dumps(value: Any) -> str:
    """JSON text as both dialects store it (and compare it)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Highlight:
    id: str
    user_id: str
    document_id: str
    text: str
    start: int | None
    end: int | None
    chunk_ids: list[str] = field(default_factory=list)
    note: str | None = None
    color: str | None = None
    tags: list[str] = field(default_factory=list)
    source: str = "manual"
    external_id: str | None = None
    match_method: str | None = None
    confidence: float | None = None
    status: str = "matched"
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Highlight:
        start, end = row.get("start_offset"), row.get("end_offset")
        return cls(
            id=str(row["id"]),
            user_id=row["user_id"],
            document_id=str(row["document_id"]),
            text=row["text"],
            start=None if start is None else int(start),
            end=None if end is None else int(end),
            chunk_ids=[str(c) for c in _json_list(row.get("chunk_ids"))],
            note=row.get("note"),
            color=row.get("color"),
            tags=[str(t) for t in _json_list(row.get("tags"))],
            source=row.get("source") or "manual",
            external_id=row.get("external_id"),
            match_method=row.get("match_method"),
            confidence=None if row.get("confidence") is None else float(row["confidence"]),
            status=row.get("status") or "matched",
            created_at=parse_time(row.get("created_at")),
            updated_at=parse_time(row.get("updated_at")),
        )

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("created_at", "updated_at"):
            value = out[key]
            out[key] = value.isoformat() if value else None
        return out


def spanned_chunks(spans: Sequence[tuple[str, int, int]], start: int, end: int) -> list[str]:
    """Ids of the chunks (``(id, start, end)``, in order) that overlap ``[start, end)``."""
    return [cid for cid, s, e in spans if s < end and start < e]


def locate(content: str, text: str) -> tuple[int, int, str] | None:
    """Where ``text`` is in ``content``: ``(start, end, method)``: an exact match first,
    then one that ignores differences in whitespace."""
    at = content.find(text)
    if at >= 0:
        return at, at + len(text), "exact"
    words = text.split()
    if not words:
        return None
    pattern = r"\s+".join(re.escape(w) for w in words)
    match = re.search(pattern, content)
    if match:
        return match.start(), match.end(), "normalized"
    return None


class Highlights:
    """Reads and writes of the ``highlights`` table (every call scoped by the user)."""

    def __init__(self, store: SqlJobStore) -> None:
        self.store = store
        self.queries = load_queries(store.dialect, "rhizome.library")
        self.library = Library(store)

    def create(
        self,
        document_id: str,
        user_id: str,
        *,
        text: str,
        start: int | None,
        end: int | None,
        content: str | None,
        note: str | None = None,
        color: str | None = None,
        tags: Sequence[str] = (),
        source: str = "manual",
        external_id: str | None = None,
        confidence: float | None = None,
    ) -> Highlight:
        """A highlight on the document. ``content`` is its ``content.md``: the offsets must
        hold ``text`` there; without offsets the text is looked up in it."""
        doc = self.library.get_document(document_id, user_id)
        if start is None:
            text = text.strip("\n")
        if not text.strip():
            raise InvalidInputError("A highlight needs some text.", "Select a passage first.")
        if len(text) > MAX_TEXT:
            raise InvalidInputError(
                f"A highlight holds at most {MAX_TEXT:,} characters.", "Select a shorter passage."
            )
        if source not in SOURCES:
            raise InvalidInputError(
                f"Unknown highlight source {source!r}.", "Use one of: " + ", ".join(SOURCES) + "."
            )
        if color is not None and not _COLOR.match(color):
            raise InvalidInputError(
                f"{color!r} is not a colour.", "Use a name such as yellow, or #rrggbb."
            )
        clean_tags = [t.strip() for t in tags if t and t.strip()]
        if len(clean_tags) > 50 or any(len(t) > 100 for t in clean_tags):
            raise InvalidInputError("Too many or too long tags.", "Use at most 50 short tags.")
        method: str | None = "offsets"
        status = "matched"
        if (start is None) != (end is None):
            raise InvalidInputError("Give both start and end, or neither.", "Send both offsets.")
        if content is None:
            if start is None:
                raise InvalidInputError(
                    "The document has no markdown yet, so the text cannot be found in it.",
                    "Wait for its processing to finish, or give the offsets.",
                )
            status, method = "needs_review", None
        elif start is not None and end is not None:
            if not (0 <= start < end <= len(content)) or content[start:end] != text:
                raise InvalidInputError(
                    f"The offsets {start}-{end} do not hold the highlighted text in "
                    "the document's markdown.",
                    "Send offsets into content.md (as chunks have them), or only the text.",
                )
        else:
            found = locate(content, text)
            if found is None:
                raise InvalidInputError(
                    "The highlighted text is not in the document's markdown.",
                    "Select the passage again, or give its offsets.",
                )
            start, end, method = found
            text = content[start:end]
        spans = self.chunk_spans(doc.id, user_id)
        chunk_ids = spanned_chunks(spans, start or 0, end or 0) if start is not None else []
        row = {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "document_id": doc.id,
            "chunk_id": chunk_ids[0] if chunk_ids else None,
            "chunk_ids": dumps(chunk_ids),
            "text": text,
            "note": note or None,
            "color": color,
            "tags": dumps(clean_tags),
            "source": source,
            "external_id": external_id,
            "start_offset": start,
            "end_offset": end,
            "match_method": method,
            "confidence": confidence if confidence is not None else 1.0,
            "status": status,
            "created_at": None,
            "updated_at": None,
        }
        with self.store.transaction(self.queries) as tx:
            if tx.run("insert_highlight", row) != 1:
                raise InvalidInputError(
                    "This highlight exists already.", "List the document's highlights."
                )
        return self.get(str(row["id"]), user_id)

    def get(self, highlight_id: str, user_id: str) -> Highlight:
        with self.store.session(self.queries) as s:
            row = s.one("get_highlight", {"id": _check_id(highlight_id), "user_id": user_id})
        if row is None:
            raise HighlightNotFoundError(f"No highlight with id {highlight_id}.")
        return Highlight.from_row(row)

    def find(
        self,
        user_id: str,
        document_id: str | None = None,
        *,
        status: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Highlight]:
        if document_id is not None:
            document_id = self.library.get_document(document_id, user_id).id
        if status is not None and status not in STATUSES:
            raise InvalidInputError(
                f"Unknown highlight status {status!r}.", "Use one of: " + ", ".join(STATUSES)
            )
        with self.store.session(self.queries) as s:
            rows = s.all(
                "list_highlights",
                {
                    "user_id": user_id,
                    "document_id": document_id,
                    "status": status,
                    "limit": limit,
                    "offset": offset,
                },
            )
        return [Highlight.from_row(r) for r in rows]

    def delete(self, highlight_id: str, user_id: str) -> Highlight:
        with self.store.transaction(self.queries) as tx:
            row = tx.one("delete_highlight", {"id": _check_id(highlight_id), "user_id": user_id})
        if row is None:
            raise HighlightNotFoundError(f"No highlight with id {highlight_id}.")
        return Highlight.from_row(row)

    def count(self, document_id: str, user_id: str) -> int:
        with self.store.session(self.queries) as s:
            row = s.one("count_highlights", {"document_id": document_id, "user_id": user_id})
        return int(row["n"]) if row else 0

    def chunk_spans(self, document_id: str, user_id: str) -> list[tuple[str, int, int]]:
        with self.store.session(self.queries) as s:
            rows = s.all("chunk_spans", {"document_id": document_id, "user_id": user_id})
        return [(str(r["id"]), int(r["start_offset"]), int(r["end_offset"])) for r in rows]


def _check_id(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise HighlightNotFoundError(f"{value!r} is not a highlight id.") from None
