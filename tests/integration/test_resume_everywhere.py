"""Resumption through ``ctx.run_stage``/``ctx.cursor`` at every safe point of every
built-in handler: paused there, crashed right after the checkpoint (kill -9 semantics),
and crashed right before it (effects done, checkpoint not written). The output is the
same as an uninterrupted run, nothing is redone after a durable checkpoint, nothing is
skipped after a lost one, and the timeline says "resumed from checkpoint" only when the
job did. Runs on SQLite and PostgreSQL through the handler-author harness."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rhizome.handlers import connections_common, process_document
from rhizome.jobs.context import JobContext, JobInterrupted
from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.registry import Registry, Stage
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import INTERRUPTS, InlineRun, run_inline, safe_points
from rhizome.library import Library
from rhizome.library.ingest import add_text
from rhizome.storage import LocalStorage
from tests.conftest import ROOT
from tests.helpers import make_worker, noop_digest, noop_units

CRASH_WORKER = ROOT / "tests" / "fixtures" / "crash_worker.py"

STAGES, UNITS = 2, 3
NOOP = {"stages": STAGES, "units": UNITS}


def _units_done_at(k: int) -> int:
    """Units of the noop job done when its k-th safe point is reached (0 for k == 0)."""
    if k == 0:
        return 0
    stage, position = divmod(k - 1, UNITS + 1)
    return stage * UNITS + min(position + 1, UNITS)


def _resumed_events(run: InlineRun) -> int:
    return sum(m.startswith("resumed from checkpoint") for m in run.messages)


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_noop_at_every_safe_point(
    store: SqlJobStore, storage: LocalStorage, interrupt: str
) -> None:
    n = safe_points("noop", NOOP, store=store, storage=storage)
    assert n == STAGES * (UNITS + 1)
    for k in range(1, n + 1):
        run = run_inline(
            "noop", NOOP, interrupt_at=k, interrupt=interrupt, store=store, storage=storage
        )
        assert run.job.status is JobStatus.COMPLETED, (k, run.runs)
        assert len(run.runs) == 2
        assert run.output is not None
        assert run.output["digest"] == noop_digest(STAGES, UNITS), k
        durable = k if interrupt != "crash-before" else k - 1
        # after a durable checkpoint nothing is redone; after a lost one the unit in
        # flight is redone, and nothing is ever skipped
        assert run.output["executed"] == noop_units(STAGES, UNITS)[_units_done_at(durable) :]
        assert run.runs[1].resumed == (durable > 0)
        assert _resumed_events(run) == (1 if durable > 0 else 0), run.messages
        finished = [f"step-{s}" for s in range(1, STAGES + 1)][: durable // (UNITS + 1)]
        assert run.runs[1].skipped_stages == finished
        assert storage.list(f"jobs/{run.job.id}/") == []  # checkpoints removed
        if interrupt == "pause":
            # a resume is not a new attempt (attempts count tries after a failure/takeover)
            assert run.job.resume_count == 1 and run.job.attempt == 1
        else:
            assert run.runs[0].outcome == "crashed" and run.job.attempt == 2


def test_pause_in_an_unsafe_stage_waits_for_a_safe_one(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    data = {"stages": 2, "units": 2, "unsafe_stages": [1]}
    run = run_inline("noop", data, interrupt_at=1, store=store, storage=storage)
    assert run.runs[0].outcome == "paused"
    # requested at safe point 1 (inside unsafe step-1); honoured at step-2's first one
    assert run.runs[0].safe_points == ["step-1", "step-1", "step-1", "step-2"]
    assert run.output is not None and run.output["executed"] == ["step-2#2"]


# --- process_document ---------------------------------------------------------------------

PARAGRAPHS = [
    f"## Part {i}\n\nParagraph {i} tells of ships, harbours and weather number {i}. "
    + " ".join(f"word{i}x{j}" for j in range(40))
    for i in range(24)
]
DOCUMENT = "# A long note\n\n" + "\n\n".join(PARAGRAPHS) + "\n"


@pytest.fixture
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")
    monkeypatch.setattr(process_document, "EMBED_BATCH", 4)  # several embedding batches


def _chunks(store: SqlJobStore, document_id: str) -> list[tuple[Any, ...]]:
    return [
        (c.index, c.text, c.start, c.end, tuple(round(float(x), 5) for x in c.embedding[:8]))
        for c in Library(store).list_chunks(document_id, "local")
    ]


def _process(store: SqlJobStore, storage: LocalStorage, **kwargs: Any) -> tuple[InlineRun, str]:
    added = add_text(store, storage, DOCUMENT)
    run = run_inline(
        "process_document", job_id=added.job.id, store=store, storage=storage, **kwargs
    )
    return run, added.document.id


@pytest.mark.usefixtures("hash_embedder")
@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_process_document_at_every_safe_point(
    store: SqlJobStore, storage: LocalStorage, interrupt: str
) -> None:
    clean, clean_doc = _process(store, storage)
    assert clean.job.status is JobStatus.COMPLETED
    expected = [c[1:] for c in _chunks(store, clean_doc)]
    points = clean.runs[0].safe_points
    assert points.count("embed") >= 3, points  # several batches, then the stage's end
    for k in range(1, len(points) + 1):
        run, doc = _process(store, storage, interrupt_at=k, interrupt=interrupt)
        assert run.job.status is JobStatus.COMPLETED, (k, run.runs)
        got = _chunks(store, doc)
        assert [c[0] for c in got] == list(range(len(expected)))  # no duplicates or gaps
        assert [c[1:] for c in got] == expected, k
        assert Library(store).get_document(doc, "local").status == "ready"
        folder = f"documents/local/{doc}"
        assert not [key for key in storage.list(folder) if "/stage-" in key]
        if len(run.runs) == 2:
            durable = k if interrupt != "crash-before" else k - 1
            done_before = [s for s in dict.fromkeys(points[:durable])]
            finished = [s for s in done_before if points[:durable].count(s) and s != "embed"]
            assert set(run.runs[1].skipped_stages) >= set(finished[:-1] if finished else [])
            assert run.runs[1].resumed == (durable > 0)
            assert _resumed_events(run) == (1 if durable > 0 else 0)
        else:  # a pause requested in save/finalize (not pause-safe) lets the job finish
            assert interrupt == "pause" and points[k - 1] in ("save", "finalize")


# --- detect_connections and reprocess_connections -------------------------------------

RELATED_A = """# Coral reefs under heat stress

Coral bleaching happens when ocean temperatures rise and corals expel the symbiotic algae
living in their tissues. Marine heatwaves have caused mass bleaching on the Great Barrier
Reef in recent years, and repeated bleaching leaves little time for reefs to recover.
"""
RELATED_B = """# Warming seas and reef ecosystems

When sea surface temperatures stay high for weeks, reef-building corals lose their
zooxanthellae algae and turn white. Scientists link the growing frequency of coral
bleaching events to ocean warming driven by climate change.
"""
CONTRA = """# Reefs are doing fine

Coral bleaching is not caused by ocean warming. Reefs recover quickly, and the Great
Barrier Reef shows no lasting damage from marine heatwaves, whatever scientists say.
"""


@pytest.fixture
def library_docs(
    store: SqlJobStore, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[str]]:
    monkeypatch.setattr(connections_common, "ENGINE_BATCH", 1)  # a checkpoint per chunk
    ids = []
    long_doc = "\n\n".join([RELATED_A, CONTRA, RELATED_B, RELATED_A.replace("Coral", "Reef")] * 2)
    for text in (long_doc, RELATED_B, CONTRA, RELATED_A):
        ids.append(add_text(store, storage, text).document.id)
    make_worker(store, storage, burst=True).run()
    yield ids


def _connections(store: SqlJobStore, document_id: str) -> list[tuple[Any, ...]]:
    return sorted(
        (
            c.source_chunk_id,
            c.target_chunk_id,
            round(c.combined_score, 5),
            tuple(sorted((k, round(v, 5)) for k, v in c.engine_scores.items())),
        )
        for c in Library(store).list_connections(document_id, "local")
    )


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_detect_connections_inside_each_engine(
    store: SqlJobStore, storage: LocalStorage, library_docs: list[str], interrupt: str
) -> None:
    doc = library_docs[0]
    data = {"document_id": doc}
    clean = run_inline("detect_connections", data, store=store, storage=storage)
    assert clean.job.status is JobStatus.COMPLETED
    expected = _connections(store, doc)
    assert expected, "the fixture documents must connect"
    points = clean.runs[0].safe_points
    assert points.count("semantic") >= 3, points  # inside the semantic engine, per batch
    for k in range(1, len(points) + 1):
        run = run_inline(
            "detect_connections",
            data,
            interrupt_at=k,
            interrupt=interrupt,
            store=store,
            storage=storage,
        )
        assert run.job.status is JobStatus.COMPLETED, (k, run.runs)
        assert _connections(store, doc) == expected, (k, points[k - 1])
        if len(run.runs) == 1:
            assert interrupt == "pause" and points[k - 1] == "save"
            continue
        durable = k if interrupt != "crash-before" else k - 1
        engines_done = [
            s
            for s in ("load", "semantic", "contradiction", "thematic")
            if s in points[:durable] and points[:durable][-1] != s
        ]
        # finished engines are not redone
        assert set(engines_done) <= set(run.runs[1].skipped_stages), (k, run.runs[1])
        assert _resumed_events(run) == (1 if durable > 0 else 0)


def test_reprocess_connections_resumes_inside_a_document(
    store: SqlJobStore, storage: LocalStorage, library_docs: list[str]
) -> None:
    data = {"mode": "all", "document_ids": library_docs[:2]}
    clean = run_inline("reprocess_connections", data, store=store, storage=storage)
    expected = {d: _connections(store, d) for d in library_docs}
    points = clean.runs[0].safe_points
    for interrupt in INTERRUPTS:
        for k in range(1, len(points) + 1, 2):
            run = run_inline(
                "reprocess_connections",
                data,
                interrupt_at=k,
                interrupt=interrupt,
                store=store,
                storage=storage,
            )
            assert run.job.status is JobStatus.COMPLETED, (interrupt, k, run.runs)
            assert run.output == clean.output
            assert {d: _connections(store, d) for d in library_docs} == expected, (interrupt, k)


def test_except_exception_cannot_swallow_a_pause(store: SqlJobStore, storage: LocalStorage) -> None:
    """``JobInterrupted`` is a ``BaseException``: a handler's broad ``except Exception``
    around its work does not keep a paused job running."""
    types = Registry()

    @types.job_type(
        "swallower", label="Swallower", icon="x", stages=[Stage("work", "Working", 0, 100)]
    )
    def swallower(ctx: JobContext, data: Any) -> dict[str, Any]:
        def work() -> int:
            cursor = ctx.cursor("i")
            for _ in cursor.range(5):
                try:
                    pass
                except Exception:  # the mistake the hierarchy guards against
                    continue
            return 5

        try:
            return {"n": ctx.run_stage("work", work)}
        except Exception:
            return {"n": -1}

    run = run_inline("swallower", {}, interrupt_at=2, store=store, storage=storage, types=types)
    assert run.runs[0].outcome == "paused"
    assert run.output == {"n": 5}
    assert issubclass(JobInterrupted, BaseException)
    assert not issubclass(JobInterrupted, Exception)


@pytest.mark.parametrize("k", [2, 3])
def test_detect_connections_survives_kill_9_of_a_worker_process(
    store: SqlJobStore, storage: LocalStorage, db_url: str, k: int
) -> None:
    """A real worker process dies (os._exit, as kill -9) right after writing its k-th
    checkpoint file — inside the semantic engine (k=2) or at its end (k=3) — before the
    database heard of it. Another worker takes over after the lease and the connections
    are the same as an uninterrupted detection's."""
    ids = [add_text(store, storage, t).document.id for t in (RELATED_A, RELATED_B, CONTRA)]
    make_worker(store, storage, burst=True).run()
    doc = ids[0]
    clean = run_inline("detect_connections", {"document_id": doc}, store=store, storage=storage)
    assert clean.job.status is JobStatus.COMPLETED
    expected = _connections(store, doc)
    assert expected
    [job] = store.enqueue([NewJob("detect_connections", {"document_id": doc}, user_id="local")])
    proc = subprocess.run(
        [sys.executable, str(CRASH_WORKER), db_url, str(storage.root), str(k)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    crashed = store.get(job.id)
    assert crashed.status is JobStatus.PROCESSING
    time.sleep(1.2)  # the dead worker's 1 s lease runs out
    make_worker(store, storage, burst=True).run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempt == 2
    assert _connections(store, doc) == expected
    messages = [e.message or "" for e in store.events(job.id)]
    assert any("lease expired" in m for m in messages)
    # the checkpoint the row pointed at verified (no "starting fresh")
    assert not any("starting fresh" in m for m in messages), messages
    assert sum(m.startswith("resumed from checkpoint") for m in messages) == (k > 1) * 1
