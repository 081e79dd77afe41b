"""Shared by ``detect_connections`` and ``reprocess_connections``: run the connection
engines for one document against the rest of the user's library.

Detection is split into engines and, inside each engine, into batches of the document's
chunks. Every batch is a safe point (``ctx.cursor``): a pause or a crash loses at most one
batch and never a finished engine. Batches are **bounded in time, not in chunks**: each
engine measures its time per chunk and sizes its next batch to take about
:data:`BATCH_SECONDS` (at most :data:`ENGINE_BATCH` chunks), so a 200-chunk document
takes one or two batches and a 96,000-chunk one thousands, each reaching a safe point
within about that time. So does every step before them: loading the library and the
document into the worker's index (a safe point per page, see
:meth:`LibraryIndex.refresh`), the nearest-neighbour search (per block of
:data:`SEARCH_BLOCK` chunks, as the batches need it) and the merge into scored
connections (batched the same way).

The rows a batch finds go to a part file next to the job's checkpoints (``stage-*``, so
they go with them), and the cursor records its key and SHA-256: a checkpoint stays small
however large the document, and the time per safe point does not grow with it. A part
that is missing or changed is found again from its chunks (the engines are pure
functions). Results do not depend on where the batches fall, so a resumed detection
finds exactly what an uninterrupted one finds. The engines are pure functions; results
go to the database only in the save step.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rhizome.errors import RhizomeError
from rhizome.jobs.context import JobContext, checkpoint_prefix
from rhizome.pipeline.connect.model import ENGINES, ChunkView, embeddings_of

if TYPE_CHECKING:
    # The engines, numpy and the library index are imported when a detection runs, not
    # when the job types are registered: a starting worker imports this module.
    from rhizome.library.embedding_index import LibraryIndex
    from rhizome.library.repo import Library
    from rhizome.pipeline.connect import ConceptIndex, VectorIndex, Weights
    from rhizome.pipeline.connect.index import Neighbor

ENGINE_BATCH = 4096
"""The most source chunks in one batch of an engine (or of the merge)."""
FIRST_BATCH = 16
"""The first batch of an engine: its time per chunk sizes the next ones."""
BATCH_SECONDS = 0.5
"""What one batch (its work, its part file and its checkpoint) should take."""
SEARCH_BLOCK = 128
"""Nearest-neighbour searches go per block of this many of the document's chunks, aligned
on multiples of it, whatever the batches: one pass over the library's vectors serves a
block, and each chunk's neighbours come from the same search (bit for bit) however the
batches fall."""
SHARED_SEARCH_K = 10
SHARED_SEARCH_FLOOR = 0.3
"""One nearest-neighbour search per new chunk serves the semantic engine (top 5 at cosine
>= 0.55) and the contradiction engine (10 candidates at >= 0.3, its defaults)."""

clock: Callable[[], float] = time.perf_counter
"""The clock batches are timed with (tests replace it)."""

ENGINE_LABELS = {
    "semantic": "Semantic similarity",
    "contradiction": "Contradictions",
    "thematic": "Thematic bridges",
}

Step = Callable[[int], None]
"""``step(chunks loaded so far)``: called between pages while the library loads."""


def loading_step(ctx: JobContext) -> Step:
    """A safe point after each page of a library load, with progress."""

    def step(loaded: int) -> None:
        ctx.progress(details=f"Loading the library into memory: {loaded:,} chunks")
        ctx.safe_point()

    return step


class BatchSizer:
    """The size of the next batch from the time the last one took: about ``target``
    seconds at the measured time per chunk, growing at most 4x per batch (a first batch
    that was quick by luck does not make a huge second one), between 1 and ``most``."""

    def __init__(self, target: float, most: int, first: int) -> None:
        self.target = target
        self.most = max(1, most)
        self.size = max(1, min(first, self.most))

    def next(self, chunks: int, seconds: float) -> int:
        if chunks > 0:
            per_chunk = max(seconds, 1e-9) / chunks
            wanted = int(self.target / per_chunk)
            self.size = max(1, min(wanted, self.size * 4, self.most))
        return self.size


@dataclass
class Detection:
    """One document's chunks against the rest of the user's library.

    The library comes from the worker's in-memory :class:`LibraryIndex` (one per user and
    embedding model, kept across jobs and refreshed from the database's version stamps at
    the first use in a run), so a warm worker reloads only what changed. Only chunks
    embedded by the document's own model (and precision) are compared. Call
    :meth:`prepare` with a job's :func:`loading_step` first, so that a long load (a cold
    worker, a huge document) reaches safe points."""

    library: Library
    document_id: str
    user_id: str
    weights: Weights
    _shared: LibraryIndex | None = field(default=None, init=False, repr=False)

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

    def prepare(self, step: Step | None = None) -> LibraryIndex:
        """The user's index for the document's model, brought up to date once per run
        (``step`` after each page loaded: see :meth:`LibraryIndex.refresh`)."""
        if self._shared is None:
            from rhizome.library.embedding_index import library_index

            index = library_index(self.library.store, self.user_id, self.model)
            with index.lock:
                index.refresh(self.library.store, step)
            self._shared = index
        return self._shared

    @property
    def shared(self) -> LibraryIndex:
        return self.prepare()

    @cached_property
    def new(self) -> list[ChunkView]:
        with self.shared.lock:
            return self.shared.chunks_of(self.document_id)

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each new chunk's position in :attr:`new`."""
        return {c.id: i for i, c in enumerate(self.new)}

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
            # per aligned block of the document's chunks, whatever the batch: a chunk's
            # neighbours never depend on where the batches fall
            positions = self.positions
            blocks = sorted({positions[c.id] // SEARCH_BLOCK for c in missing if c.id in positions})
            groups = [self.new[b * SEARCH_BLOCK : (b + 1) * SEARCH_BLOCK] for b in blocks]
            strays = [c for c in missing if c.id not in positions]
            groups += [strays[i : i + SEARCH_BLOCK] for i in range(0, len(strays), SEARCH_BLOCK)]
            for group in groups:
                hits.update(zip((c.id for c in group), self._search(group), strict=True))
        return [hits[c.id] for c in batch]

    def _search(self, chunks: Sequence[ChunkView]) -> list[list[Neighbor]]:
        documents = {c.document_id for c in chunks}
        if len(documents) == 1:  # one document's chunks: one column mask for all
            return self.shared.vectors.search(
                embeddings_of(chunks),
                SHARED_SEARCH_K,
                exclude_document_ids=documents,
                min_score=SHARED_SEARCH_FLOOR,
            )
        return self.shared.vectors.search(
            embeddings_of(chunks),
            SHARED_SEARCH_K,
            query_document_ids=[c.document_id for c in chunks],
            min_score=SHARED_SEARCH_FLOOR,
        )

    def run_batch(self, engine: str, batch: Sequence[ChunkView]) -> list[list[Any]]:
        """One engine over some of the document's chunks (rows as JSON-friendly lists)."""
        from rhizome.pipeline.connect import (
            contradiction_engine,
            semantic_engine,
            thematic_engine,
        )

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

    def combine_batch(
        self, batch: Sequence[ChunkView], found: dict[str, list[list[Any]]]
    ) -> list[list[Any]]:
        """The engines' rows whose source is one of ``batch`` merged into scored
        connections (``[source, target, scores, combined, reason]``). Every row of a
        single new document starts at one of its chunks, so merging batch by batch gives
        what one merge of all rows gives."""
        from rhizome.pipeline.connect import combine

        with self.shared.lock:
            pool = self.pool
            # another job of this process may have refreshed the shared index meanwhile
            # (a document re-chunked): rows of chunks that are gone are dropped
            found = {
                engine: [r for r in rows if r[0] in pool and r[1] in pool]
                for engine, rows in found.items()
            }
            merged = combine(
                pool,
                semantic=[(s, t, float(x)) for s, t, x in found.get("semantic", [])],
                contradiction=[
                    (s, t, float(x), r) for s, t, x, r in found.get("contradiction", [])
                ],
                thematic=[(s, t, float(x), r) for s, t, x, r in found.get("thematic", [])],
                new_ids=[c.id for c in batch],
                weights=self.weights,
                concepts_index=self.concepts
                if self.weights.contradiction > 0 or self.weights.thematic > 0
                else None,
                concepts_cache=self.shared.cache["concepts"],
            )
        return [
            [f.source_chunk_id, f.target_chunk_id, f.scores, f.combined, f.reason] for f in merged
        ]

    def connections(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """Merged rows as the dicts ``Curation.save_detection`` takes, best first."""
        with self.shared.lock:
            pool = self.pool
            kept = [r for r in rows if r[0] in pool and r[1] in pool]
            kept.sort(key=lambda r: (-float(r[3]), r[0], r[1]))
            return [
                {
                    "source_chunk_id": source,
                    "target_chunk_id": target,
                    "source_document_id": pool[source].document_id,
                    "target_document_id": pool[target].document_id,
                    "scores": scores,
                    "combined": combined,
                    "reason": reason,
                    # for the rejection check (a rejected pair is keyed by the two texts)
                    "source_text": pool[source].text,
                    "target_text": pool[target].text,
                }
                for source, target, scores, combined, reason in kept
            ]

    def combine(self, found: dict[str, list[list[Any]]]) -> list[dict[str, Any]]:
        """All the engines' rows merged at once (no job: tests, benchmarks)."""
        return self.connections(self.combine_batch(self.new, found))


# --- batches with a safe point after each ---------------------------------------------------

Part = list[Any]
"""``[start, stop, key, sha256, rows]``: the rows found for chunks ``start..stop`` of the
document, stored at ``key`` (``None`` when there were none: no file)."""


def _part_key(ctx: JobContext, detection: Detection, kind: str, start: int, stop: int) -> str:
    return (
        f"{checkpoint_prefix(ctx.job)}stage-{kind}.{ctx.job.id}.{detection.document_id}"
        f".{start}-{stop}.json"
    )


def _write_part(
    ctx: JobContext, detection: Detection, kind: str, start: int, stop: int, rows: list[Any]
) -> Part:
    if not rows:
        return [start, stop, None, None, 0]
    payload = json.dumps(rows, separators=(",", ":")).encode()
    key = _part_key(ctx, detection, kind, start, stop)
    ctx.storage.put(key, payload)
    return [start, stop, key, hashlib.sha256(payload).hexdigest(), len(rows)]


def _read_part(
    ctx: JobContext,
    part: Part,
    redo: Callable[[int, int], list[Any]],
) -> list[Any]:
    """A part's rows; found again (``redo(start, stop)``) when its file is missing or
    does not match its SHA-256."""
    start, stop, key, digest = part[0], part[1], part[2], part[3]
    if key is None:
        return []
    try:
        payload = ctx.storage.get(key)
        if hashlib.sha256(payload).hexdigest() == digest:
            rows: list[Any] = json.loads(payload)
            return rows
        problem = "does not match its SHA-256"
    except (FileNotFoundError, RhizomeError) as exc:
        problem = f"cannot be read ({exc})"
    ctx.log.warning("detection part %s %s; finding its rows again", key, problem)
    return redo(start, stop)


def _batches(
    ctx: JobContext,
    detection: Detection,
    kind: str,
    work: Callable[[Sequence[ChunkView]], list[Any]],
    on_batch: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """``work`` over the document's chunks in batches of about :data:`BATCH_SECONDS`,
    each batch's rows to a part file and then the cursor (a safe point). Returns the
    summary ``{"parts": [...], "rows": n}`` (what the cursor holds at the end)."""
    cursor = ctx.cursor(f"{kind}-chunks", start={"next": 0, "parts": [], "rows": 0})
    state: dict[str, Any] = dict(cursor.value)
    total = len(detection.new)
    if "found" in state:  # a cursor of an older version: its rows become the first part
        old = state.pop("found")
        state["parts"] = [_write_part(ctx, detection, kind, 0, int(state["next"]), old)]
        state["rows"] = len(old)
    sizer = BatchSizer(BATCH_SECONDS, ENGINE_BATCH, FIRST_BATCH)
    done = int(state["next"])
    while done < total:
        began = clock()
        stop = min(total, done + sizer.size)
        rows = work(detection.new[done:stop])
        part = _write_part(ctx, detection, kind, done, stop, rows)
        if on_batch is not None:
            on_batch(stop, total)
        state = {
            "next": stop,
            "parts": [*state["parts"], part],
            "rows": int(state["rows"]) + len(rows),
        }
        cursor.save(state)  # the safe point
        sizer.next(stop - done, clock() - began)
        done = stop
    return {"parts": state["parts"], "rows": int(state["rows"])}


def _empty() -> dict[str, Any]:
    return {"parts": [], "rows": 0}


def run_engine(
    ctx: JobContext,
    detection: Detection,
    engine: str,
    *,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``engine`` over the document's chunks in timed batches, with a part file and a
    checkpoint after each (inside the current stage). Returns the summary of its parts
    (:func:`engine_rows` reads them)."""
    if detection.weights.of(engine) <= 0:
        return _empty()
    detection.prepare(loading_step(ctx))
    if detection.empty:
        return _empty()
    return _batches(
        ctx, detection, engine, lambda batch: detection.run_batch(engine, batch), on_batch
    )


def engine_rows(ctx: JobContext, detection: Detection, engine: str, found: Any) -> list[Any]:
    """All the rows of an engine's summary (or the rows themselves: an older version's
    stage result)."""
    if isinstance(found, list):
        return found
    rows: list[Any] = []
    for part in found.get("parts", []):
        rows += _read_part(ctx, part, lambda a, b: detection.run_batch(engine, detection.new[a:b]))
    return rows


def _rows_between(
    ctx: JobContext,
    detection: Detection,
    engine: str,
    found: Any,
    start: int,
    stop: int,
    cache: dict[str, tuple[int, list[list[Any]]]],
) -> list[list[Any]]:
    """The engine's rows whose source is one of chunks ``start..stop`` (parts read once
    each while the merge goes forward)."""
    if isinstance(found, list):  # an older version's stage result: all rows at hand
        wanted = {c.id for c in detection.new[start:stop]}
        return [r for r in found if r[0] in wanted]
    rows: list[list[Any]] = []
    for number, part in enumerate(found.get("parts", [])):
        if part[1] <= start or part[0] >= stop:
            continue
        held = cache.get(engine)
        if held is None or held[0] != number:
            loaded = _read_part(
                ctx, part, lambda a, b: detection.run_batch(engine, detection.new[a:b])
            )
            held = cache[engine] = (number, loaded)
        if part[0] >= start and part[1] <= stop:
            rows += held[1]
        else:
            wanted = {c.id for c in detection.new[max(start, part[0]) : min(stop, part[1])]}
            rows += [r for r in held[1] if r[0] in wanted]
    return rows


def merge_found(
    ctx: JobContext,
    detection: Detection,
    found: dict[str, Any],
    *,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Merge the engines' rows into scored connections in timed batches of source
    chunks, with a part file and a checkpoint after each. Returns the summary of the
    merged parts (:func:`merged_connections` reads them)."""
    if not any(f.get("parts") if isinstance(f, dict) else f for f in found.values()):
        return _empty()
    detection.prepare(loading_step(ctx))
    if detection.empty:
        return _empty()
    cache: dict[str, tuple[int, list[list[Any]]]] = {}

    def work(batch: Sequence[ChunkView]) -> list[Any]:
        start = detection.positions[batch[0].id]
        stop = start + len(batch)
        rows = {
            engine: _rows_between(ctx, detection, engine, summary, start, stop, cache)
            for engine, summary in found.items()
        }
        return detection.combine_batch(batch, rows)

    return _batches(ctx, detection, "combine", work, on_batch)


def merged_connections(
    ctx: JobContext, detection: Detection, found: dict[str, Any], merged: dict[str, Any]
) -> list[dict[str, Any]]:
    """The merged parts as the dicts ``Curation.save_detection`` takes, best first."""
    rows: list[Any] = []
    for part in merged.get("parts", []):

        def redo(start: int, stop: int) -> list[Any]:
            batch = detection.new[start:stop]
            again = {
                engine: _rows_between(ctx, detection, engine, summary, start, stop, {})
                for engine, summary in found.items()
            }
            return detection.combine_batch(batch, again)

        rows += _read_part(ctx, part, redo)
    return detection.connections(rows)


def find_all(
    ctx: JobContext, detection: Detection, on_batch: Callable[[str, int, int], None]
) -> list[dict[str, Any]]:
    """All engines and the merge inside one stage (for jobs that detect for many
    documents): nested cursors, a safe point after each batch."""
    found: dict[str, Any] = {}
    for engine in ENGINES:

        def report(done: int, total: int, engine: str = engine) -> None:
            on_batch(engine, done, total)

        found[engine] = run_engine(ctx, detection, engine, on_batch=report)
    merged = merge_found(ctx, detection, found)
    return merged_connections(ctx, detection, found, merged)


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
