"""Shared by ``detect_connections`` and ``reprocess_connections``: run the connection
engines for one document against the rest of the user's library.

Detection is split into engines and, inside each engine, into batches of the document's
chunks: every batch is a checkpoint (``ctx.cursor``), so a pause or a crash loses at most
one batch and never a finished engine. The engines are pure functions; results go to the
database only in the save step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from rhizome.jobs.context import JobContext
from rhizome.library.embedding_index import LibraryIndex, library_index
from rhizome.library.repo import Library
from rhizome.pipeline.connect import (
    ENGINES,
    ChunkView,
    ConceptIndex,
    VectorIndex,
    Weights,
    combine,
    contradiction_engine,
    semantic_engine,
    thematic_engine,
)
from rhizome.pipeline.connect.index import Neighbor
from rhizome.pipeline.connect.model import embeddings_of

ENGINE_BATCH = 64
"""Source chunks per checkpoint inside an engine."""
SHARED_SEARCH_K = 10
SHARED_SEARCH_FLOOR = 0.3
"""One nearest-neighbour search per new chunk serves the semantic engine (top 5 at cosine
>= 0.55) and the contradiction engine (10 candidates at >= 0.3, its defaults)."""

ENGINE_LABELS = {
    "semantic": "Semantic similarity",
    "contradiction": "Contradictions",
    "thematic": "Thematic bridges",
}


@dataclass
class Detection:
    """One document's chunks against the rest of the user's library.

    The library comes from the worker's in-memory :class:`LibraryIndex` (one per user and
    embedding model, kept across jobs and refreshed from the database's version stamps at
    the first use in a run), so a warm worker reloads only what changed. Only chunks
    embedded by the document's own model (and precision) are compared."""

    library: Library
    document_id: str
    user_id: str
    weights: Weights

    @cached_property
    def model(self) -> str | None:
        """The model (and precision) of the document's vectors: the library is compared
        through this model's vectors only, never a mix of two."""
        with self.library.store.session(self._queries) as s:
            row = s.one(
                "document_embedding_model",
                {"document_id": self.document_id, "user_id": self.user_id},
            )
        return row["model"] if row else None

    @cached_property
    def _queries(self) -> dict[str, str]:
        return self.library.queries

    @cached_property
    def shared(self) -> LibraryIndex:
        """The user's index for the document's model, brought up to date."""
        index = library_index(self.library.store, self.user_id, self.model)
        with index.lock:
            index.refresh(self.library.store)
        return index

    @cached_property
    def new(self) -> list[ChunkView]:
        with self.shared.lock:
            return self.shared.chunks_of(self.document_id)

    @property
    def rest(self) -> list[ChunkView]:
        with self.shared.lock:
            return [v for v in self.shared.views.values() if v.document_id != self.document_id]

    @cached_property
    def other_model_documents(self) -> int:
        """Documents left out because their vectors come from another model or precision
        (a reprocess re-embeds them)."""
        with self.library.store.session(self._queries) as s:
            row = s.one(
                "index_other_models",
                {"user_id": self.user_id, "model": self.model, "document_id": self.document_id},
            )
        return int(row["n"]) if row else 0

    @property
    def pool(self) -> dict[str, ChunkView]:
        return self.shared.views

    @property
    def index(self) -> VectorIndex:
        return self.shared.vectors

    @property
    def concepts(self) -> ConceptIndex:
        return self.shared.concepts

    @property
    def empty(self) -> bool:
        return not self.new or len(self.shared) <= len(self.new)

    @cached_property
    def compared(self) -> int:
        """How many other documents (with embedded chunks) the document is compared with."""
        with self.shared.lock:
            documents = self.shared.documents()
        return len(documents - {self.document_id})

    def counts(self) -> dict[str, int]:
        counts = {
            "new_chunks": len(self.new),
            "library_chunks": len(self.shared) - len(self.new),
            "documents_compared": self.compared,
        }
        if self.other_model_documents:
            counts["documents_other_model"] = self.other_model_documents
        return counts

    @cached_property
    def _run(self) -> dict[str, Any]:
        """What the engines keep between batches of this run: each new chunk's nearest
        chunks (one search shared by the semantic and contradiction engines), the
        thematic engine's document-level results."""
        return {"hits": {}, "thematic": {}}

    def _hits(self, batch: Sequence[ChunkView]) -> list[list[Neighbor]]:
        hits: dict[str, list[Neighbor]] = self._run["hits"]
        missing = [c for c in batch if c.id not in hits]
        if missing:
            # the whole document at once: one pass over the library's vectors, not one
            # per batch
            wanted = {c.id for c in missing}
            missing += [c for c in self.new if c.id not in hits and c.id not in wanted]
            documents = {c.document_id for c in missing}
            if len(documents) == 1:  # one document's chunks: one column mask for all
                found = self.shared.vectors.search(
                    embeddings_of(missing),
                    SHARED_SEARCH_K,
                    exclude_document_ids=documents,
                    min_score=SHARED_SEARCH_FLOOR,
                )
            else:
                found = self.shared.vectors.search(
                    embeddings_of(missing),
                    SHARED_SEARCH_K,
                    query_document_ids=[c.document_id for c in missing],
                    min_score=SHARED_SEARCH_FLOOR,
                )
            hits.update(zip((c.id for c in missing), found, strict=True))
        return [hits[c.id] for c in batch]

    def run_batch(self, engine: str, batch: Sequence[ChunkView]) -> list[list[Any]]:
        """One engine over some of the document's chunks (rows as JSON-friendly lists)."""
        shared = self.shared
        with shared.lock:
            if engine == "semantic":
                rows: Sequence[Sequence[Any]] = semantic_engine(
                    batch, shared.vectors, hits=self._hits
                )
            elif engine == "contradiction":
                rows = contradiction_engine(
                    batch,
                    (),
                    index=shared.vectors,
                    concepts_index=shared.concepts,
                    pool=shared.views,
                    claims=shared.cache["claims"],
                    hits=self._hits,
                )
            else:
                rows = thematic_engine(
                    batch,
                    (),
                    index=shared.vectors,
                    concepts_index=shared.concepts,
                    pool=shared.views,
                    concepts_cache=shared.cache["concepts"],
                    run_cache=self._run["thematic"],
                )
        return [list(r) for r in rows]

    def combine(self, found: dict[str, list[list[Any]]]) -> list[dict[str, Any]]:
        with self.shared.lock:
            return self._combine(found)

    def _combine(self, found: dict[str, list[list[Any]]]) -> list[dict[str, Any]]:
        # another job of this process may have refreshed the shared index meanwhile (a
        # document re-chunked): rows of chunks that are gone are dropped
        found = {
            engine: [r for r in rows if r[0] in self.pool and r[1] in self.pool]
            for engine, rows in found.items()
        }
        merged = combine(
            self.pool,
            semantic=[(s, t, float(x)) for s, t, x in found.get("semantic", [])],
            contradiction=[(s, t, float(x), r) for s, t, x, r in found.get("contradiction", [])],
            thematic=[(s, t, float(x), r) for s, t, x, r in found.get("thematic", [])],
            new_ids=[c.id for c in self.new],
            weights=self.weights,
            concepts_index=self.concepts
            if self.weights.contradiction > 0 or self.weights.thematic > 0
            else None,
            concepts_cache=self.shared.cache["concepts"],
        )
        return [
            {
                "source_chunk_id": f.source_chunk_id,
                "target_chunk_id": f.target_chunk_id,
                "source_document_id": f.source_document_id,
                "target_document_id": f.target_document_id,
                "scores": f.scores,
                "combined": f.combined,
                "reason": f.reason,
                # for the rejection check (a rejected pair is keyed by the two texts)
                "source_text": self.pool[f.source_chunk_id].text,
                "target_text": self.pool[f.target_chunk_id].text,
            }
            for f in merged
        ]


def run_engine(
    ctx: JobContext,
    detection: Detection,
    engine: str,
    *,
    batch: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[list[Any]]:
    """Run ``engine`` over the document's chunks in batches, with a checkpoint after each
    batch (inside the current stage). Returns the engine's rows."""
    if detection.weights.of(engine) <= 0 or detection.empty:
        return []
    cursor = ctx.cursor(f"{engine}-chunks", start={"next": 0, "found": []})
    done, found = int(cursor.value["next"]), list(cursor.value["found"])
    total = len(detection.new)
    batch = batch or ENGINE_BATCH
    while done < total:
        part = detection.new[done : done + batch]
        found.extend(detection.run_batch(engine, part))
        done += len(part)
        if on_batch is not None:
            on_batch(done, total)
        cursor.save({"next": done, "found": found})
    return found


def find_all(
    ctx: JobContext, detection: Detection, on_batch: Callable[[str, int, int], None]
) -> list[dict[str, Any]]:
    """All engines inside one stage (for jobs that detect for many documents)."""
    found: dict[str, list[list[Any]]] = {}
    for engine in ENGINES:

        def report(done: int, total: int, engine: str = engine) -> None:
            on_batch(engine, done, total)

        found[engine] = run_engine(ctx, detection, engine, on_batch=report)
    return detection.combine(found)


REEMBED_BATCH = 16
"""Chunks per batch when a reprocess re-embeds a document (a safe point after each)."""


def reembed_stale(
    ctx: JobContext,
    library: Library,
    document_id: str,
    user_id: str,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Embed again the document's chunks whose vectors another model or precision made
    (or none): a change of ``RHIZOME_EMBEDDER`` or ``RHIZOME_EMBEDDING_PRECISION`` takes
    effect on reprocess. Resumable without a cursor (what is done is in the database);
    a safe point after each batch. Returns how many chunks were embedded."""
    from rhizome.handlers.process_document import EMBED_MAX_CHARS, wait_for_model
    from rhizome.pipeline.embed import get_embedder

    embedder = get_embedder()
    name = embedder.name
    stale = sorted(
        (
            c
            for c in library.list_chunks(document_id, user_id)
            if c.embedding is None or c.embedding_model != name
        ),
        key=lambda c: (c.token_count, c.index),
    )
    if not stale:
        return 0
    wait_for_model(ctx, embedder)
    for start in range(0, len(stale), REEMBED_BATCH):
        batch = stale[start : start + REEMBED_BATCH]
        vectors = embedder.embed([c.text[:EMBED_MAX_CHARS] for c in batch])
        library.set_embeddings(user_id, [c.id for c in batch], vectors, model=name)
        if on_batch is not None:
            on_batch(start + len(batch), len(stale))
        ctx.safe_point()
    return len(stale)


def _view(row: dict[str, Any]) -> ChunkView:
    return ChunkView(
        id=row["id"],
        document_id=row["document_id"],
        text=row["text"],
        embedding=row["embedding"],
        document_title=row.get("document_title") or "",
    )
