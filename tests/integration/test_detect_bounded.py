"""``detect_connections`` on a large document is bounded in time per safe point and
pausable (issue 17: a 96,200-chunk document held a worker for over 10 minutes).

Time is simulated, never measured: the batches are timed by an injected clock that
advances by a fixed cost per chunk an engine (or the merge) looks at, so the tests check
how the batches are sized and what a pause does, not how fast the machine is. Runs on
SQLite and PostgreSQL through the handler-author harness.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rhizome.handlers import connections_common
from rhizome.jobs.model import JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.library import Library, embedding_index
from rhizome.library.ingest import add_bytes, add_text
from rhizome.storage import LocalStorage
from tests.helpers import make_worker

COST = 0.01
"""Simulated seconds per chunk looked at."""
TARGET = 0.1
"""Simulated seconds a batch should take (so about 10 chunks)."""

TOPICS = [
    "Coral bleaching happens when ocean temperatures rise and corals expel the symbiotic "
    "algae living in their tissues. Marine heatwaves have caused mass bleaching on the "
    "Great Barrier Reef, and repeated bleaching leaves little time for reefs to recover.",
    "Coral bleaching is not caused by ocean warming. Reefs recover quickly, and the Great "
    "Barrier Reef shows no lasting damage from marine heatwaves, whatever scientists say.",
    "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough; "
    "a longer cold fermentation gives the crumb more flavour and a more open structure.",
    "Entropy measures the disorder of a thermodynamic system; in information theory the "
    "same entropy measures the uncertainty of a message source, in bits per symbol.",
]


def _big_text(paragraphs: int) -> str:
    """A generated document of many chunks that connects to the small library."""
    parts = []
    for i in range(paragraphs):  # a heading per section: a chunk each
        base = TOPICS[i % len(TOPICS)]
        parts.append(f"# Part {i}\n\n{base} Note {i} adds detail number {i * 7 % 13}.")
    return "\n\n".join(parts)


class FakeClock:
    """The batches' clock: advances by ``COST`` per chunk an engine or the merge handles."""

    def __init__(self) -> None:
        self.now = 0.0
        self.batches: list[tuple[str, int]] = []

    def __call__(self) -> float:
        return self.now

    def spend(self, kind: str, chunks: int) -> None:
        self.now += COST * chunks
        self.batches.append((kind, chunks))


@pytest.fixture
def big_library(store: SqlJobStore, storage: LocalStorage) -> Iterator[str]:
    """A small library and one large document, processed (hash embeddings, detection
    off: the tests run it)."""
    for topic in TOPICS:
        add_text(store, storage, f"# {topic[:30]}\n\n{topic}\n\n{topic}")
    big = add_bytes(store, storage, _big_text(150).encode(), filename="big.md").document.id
    make_worker(store, storage, burst=True).run()
    embedding_index.clear_indexes()
    yield big
    embedding_index.clear_indexes()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(connections_common, "clock", fake)
    monkeypatch.setattr(connections_common, "BATCH_SECONDS", TARGET)
    run_batch = connections_common.Detection.run_batch
    combine_batch = connections_common.Detection.combine_batch

    def timed_run(self: Any, engine: str, batch: Any) -> Any:
        fake.spend(engine, len(batch))
        return run_batch(self, engine, batch)

    def timed_combine(self: Any, batch: Any, found: Any) -> Any:
        fake.spend("combine", len(batch))
        return combine_batch(self, batch, found)

    monkeypatch.setattr(connections_common.Detection, "run_batch", timed_run)
    monkeypatch.setattr(connections_common.Detection, "combine_batch", timed_combine)
    return fake


def _connections(store: SqlJobStore, document_id: str) -> list[tuple[Any, ...]]:
    return sorted(
        (
            c.source_chunk_id,
            c.target_chunk_id,
            round(c.combined_score, 6),
            tuple(sorted((k, round(v, 6)) for k, v in c.engine_scores.items())),
            c.reason,
        )
        for c in Library(store).list_connections(document_id, "local")
    )


def _unbatched(
    store: SqlJobStore, storage: LocalStorage, doc: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """Connections of a run whose engines and merge each take the document in one batch."""
    with monkeypatch.context() as m:
        m.setattr(connections_common, "FIRST_BATCH", 10**9)
        m.setattr(connections_common, "ENGINE_BATCH", 10**9)
        run = run_inline("detect_connections", {"document_id": doc}, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED, run.runs
    return _connections(store, doc), run.runs[0].safe_points


STEPS = ("semantic", "contradiction", "thematic", "combine")


def test_a_large_document_passes_many_bounded_safe_points_with_the_same_result(
    store: SqlJobStore,
    storage: LocalStorage,
    big_library: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = big_library
    chunks = len(Library(store).list_chunks(doc, "local"))
    assert chunks >= 100, chunks
    expected, few = _unbatched(store, storage, doc, monkeypatch)
    assert expected, "the generated document must connect to the library"
    assert all(few.count(step) <= 2 for step in STEPS), few  # one batch, the stage's end

    clock.batches.clear()
    run = run_inline("detect_connections", {"document_id": doc}, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED, run.runs
    assert _connections(store, doc) == expected
    points = run.runs[0].safe_points
    for step in STEPS:
        # about chunks / 10 batches of ~TARGET each, a safe point after each
        assert points.count(step) >= chunks // 12, (step, points.count(step))
    for kind, size in clock.batches:
        # the first batch of each step is FIRST_BATCH chunks, the rest are sized to TARGET
        assert size * COST <= max(TARGET, connections_common.FIRST_BATCH * COST) + 1e-9, (
            kind,
            size,
        )
    assert run.output is not None and run.output["found"] == len(expected)


@pytest.mark.parametrize("where", ["semantic", "thematic", "combine"])
def test_a_pause_in_the_middle_of_a_step_resumes_without_redoing_finished_batches(
    store: SqlJobStore,
    storage: LocalStorage,
    big_library: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    doc = big_library
    expected, _ = _unbatched(store, storage, doc, monkeypatch)
    clean = run_inline("detect_connections", {"document_id": doc}, store=store, storage=storage)
    points = clean.runs[0].safe_points
    inside = [i for i, p in enumerate(points, start=1) if p == where]
    k = inside[len(inside) // 2]  # a safe point in the middle of the step
    clock.batches.clear()
    run = run_inline(
        "detect_connections",
        {"document_id": doc},
        interrupt_at=k,
        interrupt="pause",
        store=store,
        storage=storage,
    )
    assert [r.outcome for r in run.runs] == ["paused", "completed"], run.runs
    assert run.job.status is JobStatus.COMPLETED
    assert _connections(store, doc) == expected
    second = run.runs[1]
    assert second.resumed
    done_before = STEPS[: STEPS.index(where)]
    assert set(done_before) <= set(second.skipped_stages), second.skipped_stages
    # every chunk of every step handled exactly once over the two runs: nothing redone
    chunks = len(Library(store).list_chunks(doc, "local"))
    handled = {step: sum(n for kind, n in clock.batches if kind == step) for step in STEPS}
    assert handled == dict.fromkeys(STEPS, chunks), handled


def test_a_pause_while_the_library_loads_resumes_after_the_pages_loaded(
    store: SqlJobStore,
    storage: LocalStorage,
    big_library: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cold worker loads the library in pages, with a safe point after each: a pause
    requested meanwhile stops the job there, and the resumed job (same process, so the
    same index) goes on from the next page instead of loading everything again."""
    doc = big_library
    expected, _ = _unbatched(store, storage, doc, monkeypatch)
    total = sum(len(Library(store).list_chunks(d.id, "local")) for d in _documents(store))
    monkeypatch.setattr(embedding_index, "LOAD_PAGE", 20)
    embedding_index.clear_indexes()  # a cold worker
    loaded: list[int] = []
    add = embedding_index.LibraryIndex._add

    def counting_add(self: Any, rows: list[dict[str, Any]]) -> None:
        loaded.append(len(rows))
        if len(loaded) == 3:  # the user asks for a pause while the third page loads
            [job_id] = store.job_ids_where(statuses=["processing"])
            store.request_pause(job_id, reason="paused while loading")
        add(self, rows)

    monkeypatch.setattr(embedding_index.LibraryIndex, "_add", counting_add)
    run = run_inline("detect_connections", {"document_id": doc}, store=store, storage=storage)
    assert [r.outcome for r in run.runs] == ["paused", "completed"], run.runs
    assert run.runs[0].safe_points == []  # stopped inside the load stage, before a checkpoint
    assert _connections(store, doc) == expected
    assert sum(loaded) == total  # each page loaded once over the two runs
    assert len(loaded) > total // 20


def _documents(store: SqlJobStore) -> list[Any]:
    return Library(store).list_documents("local", limit=1000)


def test_batch_sizes_follow_the_time_per_chunk() -> None:
    sizer = connections_common.BatchSizer(0.5, 1000, 16)
    assert sizer.size == 16
    assert sizer.next(16, 0.016) == 64  # 1 ms per chunk would allow 500: grows 4x at most
    assert sizer.next(64, 0.064) == 256
    assert sizer.next(256, 0.256) == 500
    assert sizer.next(500, 5.0) == 50  # 10 ms per chunk now: shrinks at once
    assert sizer.next(50, 100.0) == 1  # never below one chunk
    assert connections_common.BatchSizer(0.5, 8, 16).size == 8  # never above the bound
