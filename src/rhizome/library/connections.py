"""Connections the user curates: validate, star, reject (and undo); the library-wide
search with filters and sorting; saving a detection without losing user decisions;
backups of the decisions before a reprocess deletes anything, and restoring them.

A **decision** is one of three flags on a connection row: ``user_validated`` (kept
forever), ``starred`` (kept forever, and marked), ``rejected`` (hidden). A rejection is
also remembered in ``connection_rejections`` under the *content* of the two chunks
(:func:`pair_key`), so a later detection never shows the pair again, even after the
chunks were re-made with new ids. When a document's chunks are replaced (re-processing,
an import's ``replace``, a sync), decided connections whose chunk texts survive are
re-attached to the new chunks (:func:`remember_decisions`, :func:`reattach_decisions`).

Saving a detection (:meth:`Curation.save_detection`) is one transaction per document:
delete the connections the mode replaces, insert the new ones (a rejected pair comes
back hidden, a pair already there in either direction is not duplicated), and report
``before``/``after``/``added``/``kept``/``removed`` counts of visible connections.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from rhizome.errors import InvalidInputError
from rhizome.jobs.model import Job, parse_time
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.base import Tx
from rhizome.jobs.store.queries import load_queries
from rhizome.library.repo import DocumentNotFoundError
from rhizome.pipeline.connect import ENGINES, Weights
from rhizome.storage import Storage

Mode = Literal["all", "add_new", "smart"]
MODES: tuple[str, ...] = ("all", "add_new", "smart")
ACTIONS: tuple[str, ...] = (
    "validate",
    "unvalidate",
    "star",
    "unstar",
    "reject",
    "unreject",
    "reset",
)
STATES: tuple[str, ...] = ("visible", "validated", "starred", "rejected", "undecided", "all")
"""``visible`` (the default): every connection but the rejected ones."""
SORTS: tuple[str, ...] = ("score", "score_asc", "newest", "decided", "document")
BACKUP_VERSION = 1


class ConnectionNotFoundError(DocumentNotFoundError):
    default_hint = "List connections with `rhizome connections list` to find a valid id."


# --- content keys -----------------------------------------------------------------------------


def text_key(text: str) -> str:
    """A chunk's content key: SHA-256 of its text with whitespace runs folded."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:32]


def pair_key(text_a: str, text_b: str) -> str:
    """The key of an unordered pair of chunk texts (a rejection's identity)."""
    a, b = sorted((text_key(text_a), text_key(text_b)))
    return f"{a}-{b}"


def _pair(a: Any, b: Any) -> tuple[str, str]:
    x, y = str(a), str(b)
    return (x, y) if x <= y else (y, x)


def _now() -> datetime:
    return datetime.now(UTC)


def _bool(value: Any) -> bool:
    return bool(value) and value not in ("0", "false")


def _json(value: Any, default: Any) -> Any:
    if value is None:
        return default
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def _iso(value: Any) -> str | None:
    t = parse_time(value)
    return t.isoformat() if t else None


def _check_uuid(value: str, what: str = "connection") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        if what == "document":
            raise DocumentNotFoundError(f"{value!r} is not a document id.") from None
        raise ConnectionNotFoundError(f"{value!r} is not a connection id.") from None


# --- records ----------------------------------------------------------------------------------


@dataclass
class ConnectionDetail:
    """A connection with the passages on both sides and the documents' titles."""

    id: str
    user_id: str
    source_chunk_id: str
    target_chunk_id: str
    source_document_id: str
    target_document_id: str
    engine_scores: dict[str, float]
    combined_score: float
    reason: str | None
    validated: bool
    starred: bool
    rejected: bool
    decided_at: str | None
    created_at: str | None
    source_text: str = ""
    target_text: str = ""
    source_index: int | None = None
    target_index: int | None = None
    source_heading: list[str] = field(default_factory=list)
    target_heading: list[str] = field(default_factory=list)
    source_title: str = ""
    target_title: str = ""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ConnectionDetail:
        return cls(
            id=str(row["id"]),
            user_id=row["user_id"],
            source_chunk_id=str(row["source_chunk_id"]),
            target_chunk_id=str(row["target_chunk_id"]),
            source_document_id=str(row["source_document_id"]),
            target_document_id=str(row["target_document_id"]),
            engine_scores={k: float(v) for k, v in _json(row.get("engine_scores"), {}).items()},
            combined_score=float(row["combined_score"]),
            reason=row.get("reason"),
            validated=_bool(row.get("user_validated")),
            starred=_bool(row.get("starred")),
            rejected=_bool(row.get("rejected")),
            decided_at=_iso(row.get("decided_at")),
            created_at=_iso(row.get("created_at")),
            source_text=row.get("source_text") or "",
            target_text=row.get("target_text") or "",
            source_index=row.get("source_index"),
            target_index=row.get("target_index"),
            source_heading=list(_json(row.get("source_heading"), [])),
            target_heading=list(_json(row.get("target_heading"), [])),
            source_title=row.get("source_title") or "",
            target_title=row.get("target_title") or "",
        )

    @property
    def states(self) -> list[str]:
        """The decisions on it, for display: ``rejected``, or ``validated``/``starred``."""
        if self.rejected:
            return ["rejected"]
        return [s for s, on in (("validated", self.validated), ("starred", self.starred)) if on]

    @property
    def engines(self) -> list[str]:
        """The engines that judged the pair (a positive score), in engine order."""
        return [e for e in ENGINES if self.engine_scores.get(e, 0) > 0]

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["user_validated"] = self.validated
        out["states"] = self.states
        out["engines"] = self.engines
        return out


@dataclass
class ConnectionPage:
    items: list[ConnectionDetail]
    total: int
    counts: dict[str, int]
    """Per state (``visible``, ``validated``, ``starred``, ``rejected``, ``undecided``,
    ``total``) under the same document, engine and score filters."""


@dataclass
class DetectionInfo:
    """Whether a document's connections were detected, against how many documents."""

    document_id: str
    status: str
    detected_at: str | None
    compared: int | None
    visible: int
    rejected: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SaveCounts:
    """What saving one document's detection changed, in visible connections (pairs)."""

    before: int = 0
    after: int = 0
    added: int = 0
    kept: int = 0
    removed: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# --- the repository ---------------------------------------------------------------------------


class Curation:
    """Connection curation over the library's tables (every call scoped by the user)."""

    def __init__(self, store: SqlJobStore) -> None:
        self.store = store
        self.queries = load_queries(store.dialect, "rhizome.library")

    # --- reading ------------------------------------------------------------------------

    def search(
        self,
        user_id: str,
        *,
        document_id: str | None = None,
        state: str | None = None,
        engine: str | None = None,
        min_score: float | None = None,
        sort: str = "score",
        limit: int = 50,
        offset: int = 0,
    ) -> ConnectionPage:
        """The user's connections (by default the visible ones, best first)."""
        state = state or "visible"
        if state not in STATES:
            raise InvalidInputError(
                f"Unknown connection state {state!r}.", "Use one of: " + ", ".join(STATES) + "."
            )
        if engine is not None and engine not in ENGINES:
            raise InvalidInputError(
                f"Unknown engine {engine!r}.", "Use one of: " + ", ".join(ENGINES) + "."
            )
        if sort not in SORTS:
            raise InvalidInputError(
                f"Unknown sort {sort!r}.", "Use one of: " + ", ".join(SORTS) + "."
            )
        if min_score is not None and not 0 <= min_score <= 1:
            raise InvalidInputError(
                f"The minimum score {min_score} is not between 0 and 1.",
                "Scores are weighted means of engine scores, from 0 to 1.",
            )
        params = {
            "user_id": user_id,
            "document_id": _check_uuid(document_id, "document") if document_id else None,
            "engine": engine,
            "min_score": min_score,
            "state": state,
            "sort": sort,
            "limit": limit,
            "offset": offset,
        }
        with self.store.session(self.queries) as s:
            rows = s.all("conn_search", params)
            total = s.one("conn_search_count", params)
            counts = s.one("conn_state_counts", params)
        return ConnectionPage(
            items=[ConnectionDetail.from_row(r) for r in rows],
            total=int(total["n"]) if total else 0,
            counts={k: int(v or 0) for k, v in (counts or {}).items()},
        )

    def get(self, connection_id: str, user_id: str) -> ConnectionDetail:
        with self.store.session(self.queries) as s:
            row = s.one("conn_get", {"id": _check_uuid(connection_id), "user_id": user_id})
        if row is None:
            raise ConnectionNotFoundError(f"No connection with id {connection_id}.")
        return ConnectionDetail.from_row(row)

    def detection_info(self, document_id: str, user_id: str) -> DetectionInfo:
        with self.store.session(self.queries) as s:
            row = s.one(
                "conn_detection_info",
                {"document_id": _check_uuid(document_id, "document"), "user_id": user_id},
            )
        if row is None:
            raise DocumentNotFoundError(f"No document with id {document_id}.")
        compared = row.get("connections_compared")
        return DetectionInfo(
            document_id=str(row["id"]),
            status=row["status"],
            detected_at=_iso(row.get("connections_detected_at")),
            compared=int(compared) if compared is not None else None,
            visible=int(row["visible"]),
            rejected=int(row["rejected"]),
        )

    def count_visible(self, user_id: str, document_ids: Sequence[str]) -> int:
        """Visible connections touching any of the documents."""
        if not document_ids:
            return 0
        with self.store.session(self.queries) as s:
            row = s.one(
                "conn_count_visible", {"user_id": user_id, "document_ids": list(document_ids)}
            )
        return int(row["n"]) if row else 0

    def visible_pairs(self, document_id: str, user_id: str) -> list[list[str]]:
        """The document's visible connections as sorted chunk-id pairs (for counts)."""
        with self.store.session(self.queries) as s:
            rows = s.all("conn_visible_pairs", {"document_id": document_id, "user_id": user_id})
        return sorted(list(_pair(r["source_chunk_id"], r["target_chunk_id"])) for r in rows)

    def new_documents_for(self, document_id: str, user_id: str) -> list[str]:
        """Documents added, re-chunked or otherwise updated (e.g. processed again) since
        ``document_id``'s last detection (all others when it was never detected): what
        ``add_new`` connects to."""
        with self.store.session(self.queries) as s:
            rows = s.all("conn_new_documents", {"document_id": document_id, "user_id": user_id})
        return [str(r["id"]) for r in rows]

    def rejected_keys(self, user_id: str) -> dict[str, str | None]:
        """``{pair key: when rejected}`` of the user's rejections."""
        with self.store.session(self.queries) as s:
            rows = s.all("conn_rejection_keys", {"user_id": user_id})
        return {r["pair_key"]: _iso(r.get("created_at")) for r in rows}

    # --- deciding -----------------------------------------------------------------------

    def decide(self, connection_id: str, user_id: str, action: str) -> ConnectionDetail:
        """Apply ``action`` (:data:`ACTIONS`) to a connection and return it.

        ``validate``/``star`` also lift a rejection; ``reject`` clears validated and
        starred; ``reset`` clears every decision. A rejection is remembered by the content
        of the two chunks, so no later detection re-creates the pair."""
        if action not in ACTIONS:
            raise InvalidInputError(
                f"Unknown action {action!r}.", "Use one of: " + ", ".join(ACTIONS) + "."
            )
        conn = self.get(connection_id, user_id)
        validated, starred, rejected = conn.validated, conn.starred, conn.rejected
        if action == "validate":
            validated, rejected = True, False
        elif action == "unvalidate":
            validated = False
        elif action == "star":
            starred, rejected = True, False
        elif action == "unstar":
            starred = False
        elif action == "reject":
            validated, starred, rejected = False, False, True
        elif action == "unreject":
            rejected = False
        else:
            validated = starred = rejected = False
        now = _now()
        key = pair_key(conn.source_text, conn.target_text)
        with self.store.transaction(self.queries) as tx:
            tx.one(
                "conn_set_decision",
                {
                    "id": conn.id,
                    "user_id": user_id,
                    "validated": validated,
                    "starred": starred,
                    "rejected": rejected,
                    "decided_at": now if (validated or starred or rejected) else None,
                },
            )
            if rejected:
                tx.run(
                    "conn_rejection_add",
                    {
                        "user_id": user_id,
                        "pair_key": key,
                        "source_chunk_id": conn.source_chunk_id,
                        "target_chunk_id": conn.target_chunk_id,
                        "source_document_id": conn.source_document_id,
                        "target_document_id": conn.target_document_id,
                        "created_at": now,
                    },
                )
            else:
                tx.run("conn_rejection_remove", {"user_id": user_id, "pair_key": key})
        return self.get(conn.id, user_id)

    # --- saving a detection -------------------------------------------------------------

    def save_detection(
        self,
        document_id: str,
        user_id: str,
        found: Iterable[dict[str, Any]],
        *,
        mode: str = "smart",
        since: datetime | None = None,
        pending: Sequence[str] = (),
        only_documents: Sequence[str] | None = None,
        compared: int | None = None,
        detected_at: datetime | None = None,
        before: Sequence[Sequence[str]] | None = None,
    ) -> SaveCounts:
        """Save one document's detection (``found``: dicts with the chunk and document ids,
        ``scores``, ``combined``, ``reason`` and the two chunk texts) in one transaction,
        and count what changed.

        Every stored pair the engines found again is marked found (``found_at``); then

        * ``all``: the document's connections the engines did not find again are deleted,
          but validated and starred ones (rejected ones go too: the rejection itself is
          remembered); every pair found again gets the new scores;
        * ``smart``: only undecided connections not found again are deleted; decided ones
          stay exactly as they are, undecided ones found again get the new scores;
        * ``add_new``: nothing is deleted or re-scored; only connections to
          ``only_documents`` are added.

        New pairs are inserted; a pair the user rejected comes back hidden (rejected),
        never visible, and a pair stored in either direction is never stored twice.
        ``since``: connections found at or after it count as found again (a reprocess
        passes its start, so what an earlier document of the same job found stays);
        ``pending``: documents a reprocess has still to do — connections to them are left
        for their own turn, when both sides have been looked at. ``before``: the visible
        pairs counted before (a resumed job passes those it saw before its interruption,
        so the counts do not depend on where it stopped)."""
        if mode not in MODES:
            raise InvalidInputError(
                f"Unknown mode {mode!r}.", "Use one of: " + ", ".join(MODES) + "."
            )
        now = _now()
        rejections = self.rejected_keys(user_id)
        only = set(only_documents) if only_documents is not None else None
        rows = []
        for c in found:
            other = (
                c["target_document_id"]
                if c["source_document_id"] == document_id
                else c["source_document_id"]
            )
            if only is not None and other not in only:
                continue
            rejected = False
            rejected_at: str | None = None
            if "source_text" in c and "target_text" in c:
                key = pair_key(c["source_text"], c["target_text"])
                rejected, rejected_at = key in rejections, rejections.get(key)
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "user_id": user_id,
                    "source_chunk_id": c["source_chunk_id"],
                    "target_chunk_id": c["target_chunk_id"],
                    "source_document_id": c["source_document_id"],
                    "target_document_id": c["target_document_id"],
                    "engine_scores": dict(c["scores"]),
                    "combined_score": float(c["combined"]),
                    "reason": c.get("reason"),
                    "validated": False,
                    "starred": False,
                    "rejected": rejected,
                    "decided_at": (parse_time(rejected_at) or now) if rejected else None,
                    "found_at": now,
                }
            )
        pair_fields = ("user_id", "source_chunk_id", "target_chunk_id")
        with self.store.transaction(self.queries) as tx:
            tx.one("conn_lock_user", {"user_id": user_id})  # see the query
            key_params = {"document_id": document_id, "user_id": user_id}
            seen = {_pair(a, b) for a, b in before} if before is not None else None
            if seen is None:
                seen = {
                    _pair(r["source_chunk_id"], r["target_chunk_id"])
                    for r in tx.all("conn_visible_pairs", key_params)
                }
            # a document with no stored connection (its first detection, e.g. of a huge
            # new document) has nothing to confirm or re-score: skip a statement per row
            stored = tx.one("conn_any_of_document", key_params) is not None
            if mode != "add_new" and stored:
                for part in _parts(rows, 500):
                    tx.many(
                        "conn_confirm",
                        [{**{k: r[k] for k in pair_fields}, "found_at": now} for r in part],
                    )
                    tx.many(
                        "conn_rescore",
                        [
                            {
                                **{k: r[k] for k in pair_fields},
                                "engine_scores": r["engine_scores"],
                                "combined_score": r["combined_score"],
                                "reason": r["reason"],
                                "all_rows": mode == "all",
                            }
                            for r in part
                        ],
                    )
                tx.run(
                    "conn_delete_replaceable",
                    {
                        **key_params,
                        "keep_rejected": mode == "smart",
                        "since": since or now,
                        "pending": list(pending),
                    },
                )
            for part in _parts(rows, 500):
                tx.many("conn_insert", part)
            after = {
                _pair(r["source_chunk_id"], r["target_chunk_id"])
                for r in tx.all("conn_visible_pairs", key_params)
            }
            tx.run(
                "conn_mark_detected",
                {**key_params, "detected_at": detected_at or now, "compared": compared},
            )
        return SaveCounts(
            before=len(seen),
            after=len(after),
            added=len(after - seen),
            kept=len(after & seen),
            removed=len(seen - after),
        )

    # --- backups ------------------------------------------------------------------------

    def backup_data(self, document_id: str, user_id: str) -> dict[str, Any]:
        """The document's decided connections (validated, starred, rejected, with the
        texts' content keys) and the rejections that involve it."""
        params = {"document_id": document_id, "user_id": user_id}
        with self.store.session(self.queries) as s:
            rows = s.all("conn_decided_of_document", params)
            rejections = s.all("conn_rejections_of_document", params)
        connections = []
        for r in rows:
            d = ConnectionDetail.from_row(r)
            connections.append(
                {
                    "id": d.id,
                    "source_chunk_id": d.source_chunk_id,
                    "target_chunk_id": d.target_chunk_id,
                    "source_document_id": d.source_document_id,
                    "target_document_id": d.target_document_id,
                    "source_key": text_key(d.source_text),
                    "target_key": text_key(d.target_text),
                    "engine_scores": d.engine_scores,
                    "combined_score": d.combined_score,
                    "reason": d.reason,
                    "validated": d.validated,
                    "starred": d.starred,
                    "rejected": d.rejected,
                    "decided_at": d.decided_at,
                    "created_at": d.created_at,
                }
            )
        return {
            "version": BACKUP_VERSION,
            "user_id": user_id,
            "document_id": document_id,
            "connections": connections,
            "rejections": [
                {
                    "pair_key": r["pair_key"],
                    "source_chunk_id": _str(r.get("source_chunk_id")),
                    "target_chunk_id": _str(r.get("target_chunk_id")),
                    "source_document_id": str(r["source_document_id"]),
                    "target_document_id": str(r["target_document_id"]),
                    "created_at": _iso(r.get("created_at")),
                }
                for r in rejections
            ],
        }

    def write_backup(
        self,
        storage: Storage,
        document_id: str,
        user_id: str,
        *,
        job_id: str | None = None,
        mode: str | None = None,
    ) -> tuple[str | None, int]:
        """Write ``documents/{user}/{doc}/connections-backup-{time}.json`` when the
        document has decided connections or rejections. Returns (key or None, how many
        connections it holds)."""
        data = self.backup_data(document_id, user_id)
        if not data["connections"] and not data["rejections"]:
            return None, 0
        now = _now()
        data.update({"job_id": job_id, "mode": mode, "created_at": now.isoformat()})
        stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond:06d}Z"
        key = f"documents/{user_id}/{document_id}/connections-backup-{stamp}.json"
        storage.put(key, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
        return key, len(data["connections"])

    def restore(self, data: dict[str, Any], user_id: str, *, include_rejected: bool = True) -> int:
        """Put back the decisions of a backup: a decided connection that is missing is
        inserted again (on the chunks with the same content when they were re-made), an
        existing one without any decision gets the backed-up one, and rejections are
        remembered again. Idempotent; decisions the user changed since are left alone.
        Returns how many connections it inserted or changed."""
        if data.get("user_id") not in (None, user_id):
            raise InvalidInputError("This backup belongs to another user.", "Use your own.")
        entries = [
            c for c in data.get("connections", []) if include_rejected or not c.get("rejected")
        ]
        docs = sorted(
            {c["source_document_id"] for c in entries} | {c["target_document_id"] for c in entries}
        )
        changed = 0
        with self.store.transaction(self.queries) as tx:
            tx.one("conn_lock_user", {"user_id": user_id})  # see the query
            by_key: dict[tuple[str, str], str] = {}
            existing: set[str] = set()
            if docs:
                for r in tx.all("conn_chunk_texts", {"user_id": user_id, "document_ids": docs}):
                    existing.add(str(r["id"]))
                    by_key.setdefault((str(r["document_id"]), text_key(r["text"])), str(r["id"]))
            for c in entries:
                source = c["source_chunk_id"]
                if source not in existing:
                    source = by_key.get((c["source_document_id"], c["source_key"]), "")
                target = c["target_chunk_id"]
                if target not in existing:
                    target = by_key.get((c["target_document_id"], c["target_key"]), "")
                if not source or not target:
                    continue  # the passage is gone
                pair = {"user_id": user_id, "source_chunk_id": source, "target_chunk_id": target}
                found = tx.one("conn_find_pair", pair)
                decided_at = parse_time(c.get("decided_at")) or _now()
                flags = {
                    "validated": bool(c.get("validated")),
                    "starred": bool(c.get("starred")),
                    "rejected": bool(c.get("rejected")),
                    "decided_at": decided_at,
                }
                if found is None:
                    tx.run(
                        "conn_insert",
                        {
                            **pair,
                            "id": str(uuid.uuid4()),
                            "source_document_id": c["source_document_id"],
                            "target_document_id": c["target_document_id"],
                            "engine_scores": dict(c.get("engine_scores") or {}),
                            "combined_score": float(c.get("combined_score") or 0.0),
                            "reason": c.get("reason"),
                            "found_at": None,
                            **flags,
                        },
                    )
                    changed += 1
                elif not any(
                    _bool(found.get(k)) for k in ("user_validated", "starred", "rejected")
                ):
                    tx.one(
                        "conn_set_decision", {"id": str(found["id"]), "user_id": user_id, **flags}
                    )
                    changed += 1
            for r in data.get("rejections", []):
                if not include_rejected:
                    break
                tx.run(
                    "conn_rejection_add",
                    {
                        "user_id": user_id,
                        "pair_key": r["pair_key"],
                        "source_chunk_id": r.get("source_chunk_id"),
                        "target_chunk_id": r.get("target_chunk_id"),
                        "source_document_id": r["source_document_id"],
                        "target_document_id": r["target_document_id"],
                        "created_at": parse_time(r.get("created_at")) or _now(),
                    },
                )
        return changed


# --- decisions across a replacement of a document's chunks ------------------------------------


def remember_decisions(tx: Tx, document_id: str, user_id: str) -> list[dict[str, Any]]:
    """Inside the transaction that replaces a document's chunks, before the delete: the
    document's decided connections with both passages' texts."""
    return tx.all("conn_decided_of_document", {"document_id": document_id, "user_id": user_id})


def reattach_decisions(
    tx: Tx,
    saved: list[dict[str, Any]],
    document_id: str,
    user_id: str,
    chunks: Sequence[dict[str, Any]],
) -> int:
    """After the new chunks are inserted (same transaction): re-create each remembered
    decided connection on the new chunk with the same text (the first such, by index).
    A connection whose passage did not survive is dropped (its rejection, keyed by
    content, stays). Marks the document's content as changed (for ``add_new``).
    Returns how many were re-attached."""
    tx.run(
        "conn_touch_content",
        {"document_id": document_id, "user_id": user_id, "changed_at": _now()},
    )
    if not saved:
        return 0
    new_ids: dict[str, str] = {}
    for c in sorted(chunks, key=lambda c: int(c.get("chunk_index", c.get("index", 0)))):
        new_ids.setdefault(text_key(c["text"]), str(c["id"]))
    done = 0
    for row in saved:
        conn = ConnectionDetail.from_row(row)
        source, target = conn.source_chunk_id, conn.target_chunk_id
        if conn.source_document_id == document_id:
            source = new_ids.get(text_key(conn.source_text), "")
        if conn.target_document_id == document_id:
            target = new_ids.get(text_key(conn.target_text), "")
        if not source or not target:
            continue
        tx.run(
            "conn_insert",
            {
                "id": str(uuid.uuid4()),
                "user_id": user_id,
                "source_chunk_id": source,
                "target_chunk_id": target,
                "source_document_id": conn.source_document_id,
                "target_document_id": conn.target_document_id,
                "engine_scores": conn.engine_scores,
                "combined_score": conn.combined_score,
                "reason": conn.reason,
                "validated": conn.validated,
                "starred": conn.starred,
                "rejected": conn.rejected,
                "decided_at": parse_time(conn.decided_at) or _now(),
                "found_at": None,
            },
        )
        done += 1
    return done


# --- queuing a reprocess --------------------------------------------------------------------


def queue_reprocess(
    store: SqlJobStore,
    user_id: str,
    *,
    mode: str = "smart",
    document_ids: Sequence[str] | None = None,
    backup_first: bool | None = None,
) -> Job:
    """Queue a ``reprocess_connections`` job for the user's documents (None: every ready
    one). For one document the job is attached to it (its page, the dock's title)."""
    from rhizome.jobs.client import enqueue
    from rhizome.library.repo import Library

    library = Library(store)
    ids = [library.get_document(d, user_id).id for d in document_ids] if document_ids else None
    data: dict[str, Any] = {"mode": mode, "document_ids": ids}
    if backup_first is not None:
        data["backup_first"] = backup_first
    one = ids[0] if ids and len(ids) == 1 else None
    [job] = enqueue(
        store,
        "reprocess_connections",
        data,
        user_id=user_id,
        entity_type="document" if one else None,
        entity_id=one,
    )
    return job


# --- weights ----------------------------------------------------------------------------------


def weights_from_settings(
    semantic: float | None = None,
    contradiction: float | None = None,
    thematic: float | None = None,
) -> Weights:
    """The engines' weights: the given ones, the others from the settings
    (``RHIZOME_SEMANTIC_WEIGHT``, ``RHIZOME_CONTRADICTION_WEIGHT``,
    ``RHIZOME_THEMATIC_WEIGHT``; defaults 0.25 / 0.40 / 0.35)."""
    if semantic is None or contradiction is None or thematic is None:
        from rhizome.config import load_settings

        s = load_settings()
        semantic = s.semantic_weight if semantic is None else semantic
        contradiction = s.contradiction_weight if contradiction is None else contradiction
        thematic = s.thematic_weight if thematic is None else thematic
    weights = Weights(semantic, contradiction, thematic)
    if not any(weights.of(e) > 0 for e in ENGINES):
        raise InvalidInputError(
            "Every connection engine has weight 0, so no connection can be found.",
            "Give at least one of RHIZOME_SEMANTIC_WEIGHT, RHIZOME_CONTRADICTION_WEIGHT, "
            "RHIZOME_THEMATIC_WEIGHT a positive weight.",
        )
    return weights


def _parts(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None
