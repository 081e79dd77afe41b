"""A user's embedding index, kept in memory by a long-running worker (issue 18).

Connection detection compares a document with every other embedded chunk of the user's
library. Loading those from the database and building the vector and concept indexes
took seconds per job at 100k chunks (27 s cold); a worker now keeps one
:class:`LibraryIndex` per (database, user, embedding model) and updates it document by
document.

**Safe across processes.** Library migration 0005 keeps a version stamp per (user,
document) in ``library_index_versions``: triggers on ``chunks`` (insert, delete, update
of the text or the vector) and on a document's title give it a new value from one
library-wide sequence, whichever process or code path made the change. Before each use
the index reads the stamps (one small query), compares them document by document with
the ones it loaded, and reloads only the documents whose stamp moved (or drops those
gone). The stamps are read *before* the chunks, so a change committed in between is seen
again next time rather than missed; values are compared for equality, never ordered
(sequence order is not commit order).

Only vectors of one model (``chunks.embedding_model``, e.g. ``all-MiniLM-L6-v2+int8-r2``)
are ever in one index.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.queries import load_queries
from rhizome.library.model import decode_vector
from rhizome.pipeline.connect import ChunkView, ConceptIndex, VectorIndex

__all__ = ["LibraryIndex", "clear_indexes", "library_index"]

MAX_INDEXES = 4
"""Indexes a process keeps (least recently used goes first): one per user and model."""
LOAD_PAGE = 1000
"""Chunks read and indexed between two safe points of a refresh (a huge document is
loaded in pages: its concept analysis costs ~0.1-0.2 ms per chunk)."""


@dataclass
class RefreshStats:
    documents_reloaded: int = 0
    documents_dropped: int = 0
    chunks_loaded: int = 0
    seconds: float = 0.0


@dataclass
class _Loading:
    """Where a paged load of some documents (at given stamps) has got to."""

    target: dict[str, Any]
    first: bool
    after: tuple[str | None, int] = (None, -1)
    """The (document, chunk index) of the last row loaded (keyset of the next page)."""
    loaded: int = 0
    complete: bool = False


@dataclass
class LibraryIndex:
    """Chunk views, a :class:`VectorIndex` and a :class:`ConceptIndex` over one user's
    chunks embedded by one model, with the version stamp each document was loaded at.

    Use under :attr:`lock` (the engines read it; :meth:`refresh` changes it)."""

    user_id: str
    model: str | None
    versions: dict[str, Any] = field(default_factory=dict)
    views: dict[str, ChunkView] = field(default_factory=dict)
    by_document: dict[str, list[str]] = field(default_factory=dict)
    vectors: VectorIndex = field(default_factory=VectorIndex)
    concepts: ConceptIndex = field(default_factory=ConceptIndex)
    cache: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    """Per-chunk results the engines may keep between jobs (claims, concept strings),
    by kind; dropped with the chunk."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    last: RefreshStats = field(default_factory=RefreshStats)
    _loading: _Loading | None = field(default=None, repr=False)
    """A load stopped after a page (see :meth:`refresh`)."""

    def refresh(
        self,
        store: SqlJobStore,
        on_page: Callable[[int], None] | None = None,
        *,
        page: int | None = None,
    ) -> RefreshStats:
        """Bring the index up to date with the database: reload the documents whose
        version stamp changed, drop those gone.

        Chunks are read and indexed in pages of ``page`` rows (default :data:`LOAD_PAGE`);
        ``on_page(chunks loaded so far)`` runs after each page but the last (a job's safe
        point: it may raise to stop the job). A refresh stopped there leaves the pages it
        loaded in the index without their documents' stamps: the next refresh continues
        after the last page when the same documents at the same stamps are still to load,
        else drops them and starts over. Either way a document counts as loaded only once
        all its chunks are."""
        started = time.monotonic()
        queries = _queries(store)
        with store.session(queries) as s:
            current = {
                str(r["document_id"]): r["version"]
                for r in s.all("index_versions", {"user_id": self.user_id})
            }
        changed = sorted(d for d, v in current.items() if self.versions.get(d) != v)
        gone = sorted(d for d in self.versions if d not in current)
        stats = RefreshStats(documents_dropped=len(gone))
        first = not self.versions
        target = {d: current[d] for d in changed}
        loading = self._loading
        if loading is not None and loading.first == first and loading.target == target:
            self._drop(gone)  # the same load, stopped after a page: go on from there
        else:
            self._drop(sorted({*changed, *gone, *(loading.target if loading else ())}))
            loading = _Loading(target, first) if changed else None
        for doc in gone:
            self.versions.pop(doc, None)
        self._loading = loading
        size = page or LOAD_PAGE
        while loading is not None and not loading.complete:
            params: dict[str, Any] = {
                "user_id": self.user_id,
                "model": self.model,
                "after_document": loading.after[0],
                "after_index": loading.after[1],
                "limit": size,
            }
            with store.session(queries) as s:
                if first:  # the first load: the whole library
                    rows = s.all("index_all_chunks_page", params)
                else:
                    rows = s.all("index_chunks_page", {**params, "documents": changed})
            self._add(rows)
            stats.chunks_loaded += len(rows)
            loading.loaded += len(rows)
            if rows:
                loading.after = (str(rows[-1]["document_id"]), int(rows[-1]["chunk_index"]))
            if len(rows) < size:
                loading.complete = True
            elif on_page is not None:
                on_page(loading.loaded)
        for doc in changed:
            self.versions[doc] = current[doc]
        self._loading = None
        stats.documents_reloaded = len(changed)
        stats.seconds = round(time.monotonic() - started, 4)
        self.last = stats
        return stats

    def chunks_of(self, document_id: str) -> list[ChunkView]:
        return [self.views[c] for c in self.by_document.get(document_id, ())]

    def documents(self) -> set[str]:
        return set(self.by_document)

    def __len__(self) -> int:
        return len(self.views)

    # --- internals ------------------------------------------------------------------------

    def _drop(self, documents: Iterable[str]) -> None:
        ids: list[str] = []
        for doc in documents:
            for chunk_id in self.by_document.pop(doc, ()):
                ids.append(chunk_id)
                self.views.pop(chunk_id, None)
                for kind in self.cache.values():
                    kind.pop(chunk_id, None)
            self.concepts.remove_document(doc)
        if ids:
            self.vectors.remove(ids)  # one compaction for all of them

    def _add(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        views = []
        for r in rows:
            vector = decode_vector(r["embedding"])
            if vector is None:
                continue
            views.append(
                ChunkView(
                    id=str(r["id"]),
                    document_id=str(r["document_id"]),
                    text=r["text"],
                    embedding=vector,
                    document_title=r.get("document_title") or "",
                )
            )
        if not views:
            return
        dims = {v.embedding.shape[0] for v in views}
        if self.vectors.dim is not None:
            dims.add(self.vectors.dim)
        if len(dims) != 1:  # unknown vectors of mixed sizes: keep the most common size
            size = max(dims, key=lambda d: sum(v.embedding.shape[0] == d for v in views))
            views = [v for v in views if v.embedding.shape[0] == size]
        for v in views:
            self.views[v.id] = v
            self.by_document.setdefault(v.document_id, []).append(v.id)
        self.vectors.add(
            [v.id for v in views],
            [v.document_id for v in views],
            np.stack([v.embedding for v in views]),
        )
        self.concepts.add((v.id, v.document_id, v.text) for v in views)


_INDEXES: OrderedDict[tuple[str, str, str | None], LibraryIndex] = OrderedDict()
_LOCK = threading.Lock()
_QUERIES: dict[str, dict[str, str]] = {}


def _queries(store: SqlJobStore) -> dict[str, str]:
    found = _QUERIES.get(store.dialect)
    if found is None:
        found = _QUERIES[store.dialect] = load_queries(store.dialect, "rhizome.library")
    return found


def library_index(store: SqlJobStore, user_id: str, model: str | None) -> LibraryIndex:
    """The process's index of ``user_id``'s chunks embedded by ``model`` (not refreshed:
    call :meth:`LibraryIndex.refresh` under its lock)."""
    key = (str(getattr(store, "url", id(store))), user_id, model)
    with _LOCK:
        index = _INDEXES.get(key)
        if index is None:
            index = _INDEXES[key] = LibraryIndex(user_id, model)
        _INDEXES.move_to_end(key)
        while len(_INDEXES) > MAX_INDEXES:
            _INDEXES.popitem(last=False)
        return index


def clear_indexes() -> None:
    """Forget every index of this process (tests; a worker never needs to)."""
    with _LOCK:
        _INDEXES.clear()
