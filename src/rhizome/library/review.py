"""The review queue: highlights whose passage was only *suggested* (``needs_review``, after
an Obsidian edit or a Readwise import). Accepting one makes the suggested passage the
highlight (its text becomes the passage, the old text is kept as ``original_text``);
rejecting one marks it ``unmatched`` with that reason (and clears the suggestion). The
Readwise ledger follows. Every call is scoped by the user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rhizome.errors import InvalidInputError
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.queries import load_queries
from rhizome.library.highlights import Highlight, HighlightNotFoundError, dumps, spanned_chunks
from rhizome.storage import Storage

MAX_IDS = 10_000


@dataclass
class ReviewOutcome:
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check(ids: list[str]) -> list[str]:
    import uuid

    if len(ids) > MAX_IDS:
        raise InvalidInputError(f"At most {MAX_IDS:,} highlights at once.", "Send fewer ids.")
    out = []
    for i in ids:
        try:
            out.append(str(uuid.UUID(str(i))))
        except ValueError:
            raise HighlightNotFoundError(f"{i!r} is not a highlight id.") from None
    return out


class Review:
    def __init__(self, store: SqlJobStore, storage: Storage) -> None:
        self.store = store
        self.storage = storage
        self.queries = load_queries(store.dialect, "rhizome.library")
        self._contents: dict[str, str | None] = {}

    def _content(self, folder: str) -> str | None:
        if folder not in self._contents:
            try:
                raw = self.storage.get(f"{folder}/content.md")
                self._contents[folder] = raw.decode("utf-8")
            except FileNotFoundError:
                self._contents[folder] = None
        return self._contents[folder]

    def count(self, user_id: str) -> int:
        with self.store.session(self.queries) as s:
            row = s.one("review_count", {"user_id": user_id})
        return int(row["n"]) if row else 0

    def pending(
        self,
        user_id: str,
        *,
        document_id: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The highlights waiting for review, each with its suggested passage (and a
        little text around it) and its document's title."""
        if document_id is not None:
            from rhizome.library.repo import Library

            document_id = Library(self.store).get_document(document_id, user_id).id
        with self.store.session(self.queries) as s:
            rows = s.all(
                "review_list",
                {"user_id": user_id, "document_id": document_id, "limit": limit, "offset": offset},
            )
        return [self._view(r) for r in rows]

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        h = Highlight.from_row(row)
        out = h.to_dict()
        out["match_reason"] = row.get("match_reason")
        out["original_text"] = row.get("original_text")
        out["document_title"] = row.get("document_title")
        content = self._content(str(row["storage_folder"]))
        suggested = before = after = None
        if (
            content is not None
            and h.start is not None
            and h.end is not None
            and 0 <= h.start < h.end <= len(content)
        ):
            suggested = content[h.start : h.end]
            before = content[max(0, h.start - 80) : h.start]
            after = content[h.end : h.end + 80]
        out.update(suggested=suggested, before=before, after=after)
        return out

    def decide(self, user_id: str, *, accept: list[str], reject: list[str]) -> ReviewOutcome:
        """Accept and reject highlights waiting for review (others are skipped, with why)."""
        accept, reject = _check(accept), _check(reject)
        both = set(accept) & set(reject)
        if both:
            raise InvalidInputError(
                "A highlight cannot be accepted and rejected at once.",
                "Name each highlight once.",
            )
        outcome = ReviewOutcome()
        with self.store.transaction(self.queries) as tx:
            for hid, verdict in [(i, True) for i in accept] + [(i, False) for i in reject]:
                row = tx.one("review_get", {"user_id": user_id, "id": hid})
                if row is None:
                    raise HighlightNotFoundError(f"No highlight with id {hid}.")
                if row.get("status") != "needs_review":
                    outcome.skipped.append({"id": hid, "reason": f"it is {row.get('status')}"})
                    continue
                h = Highlight.from_row(row)
                params = self._params(tx, user_id, h, row, verdict, outcome)
                if params is None:
                    continue
                tx.run("review_decide", params)
                tx.run(
                    "review_ledger",
                    {
                        "user_id": user_id,
                        "highlight_id": hid,
                        "status": params["status"],
                        "reason": params["match_reason"],
                        "confidence": params["confidence"],
                    },
                )
                (outcome.accepted if verdict else outcome.rejected).append(hid)
        return outcome

    def _params(
        self,
        tx: Any,
        user_id: str,
        h: Highlight,
        row: dict[str, Any],
        accept: bool,
        outcome: ReviewOutcome,
    ) -> dict[str, Any] | None:
        base = {
            "id": h.id,
            "user_id": user_id,
            "match_method": "reviewed",
            "original_text": None,
        }
        if not accept:
            return {
                **base,
                "status": "unmatched",
                "text": h.text,
                "start_offset": None,
                "end_offset": None,
                "chunk_ids": dumps([]),
                "chunk_id": None,
                "confidence": row.get("confidence"),
                "match_reason": "the suggested passage was rejected in review",
            }
        content = self._content(str(row["storage_folder"]))
        if (
            content is None
            or h.start is None
            or h.end is None
            or not (0 <= h.start < h.end <= len(content))
        ):
            outcome.skipped.append({"id": h.id, "reason": "no suggested passage to accept"})
            return None
        passage = content[h.start : h.end]
        spans = [
            (str(r["id"]), int(r["start_offset"]), int(r["end_offset"]))
            for r in tx.all("chunk_spans", {"user_id": user_id, "document_id": h.document_id})
        ]
        ids = spanned_chunks(spans, h.start, h.end)
        return {
            **base,
            "status": "matched",
            "text": passage,
            "original_text": h.text if passage != h.text else None,
            "start_offset": h.start,
            "end_offset": h.end,
            "chunk_ids": dumps(ids),
            "chunk_id": ids[0] if ids else None,
            "confidence": 1.0,
            "match_reason": None,
        }
