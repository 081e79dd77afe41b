"""Embedding models in the document jobs (issue 18), on both stores, behaviour only:

* a pause asked while the embedding model is still loading (a cold import, or the ONNX
  export the first time on a machine) is honoured without waiting for the load, which
  goes on in the background; the resumed job then embeds everything;
* embedding runs in batches with a checkpoint after each, in token-length order, and
  every vector records the model (and precision) that made it;
* a change of model or precision: a job paused with vectors of the old one starts its
  embedding over; connection detection never compares vectors of two models;
  ``reprocess_connections`` embeds the documents of the old model again first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from rhizome.handlers import connections_common, process_document
from rhizome.jobs.model import JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.library import Library
from rhizome.library.ingest import add_text
from rhizome.pipeline.embed import HashEmbedder
from rhizome.storage import LocalStorage

PARAGRAPHS = [
    f"## Part {i}\n\nParagraph {i} tells of ships, harbours and weather number {i}. "
    + " ".join(f"word{i}x{j}" for j in range(10 + 7 * (i % 5)))
    for i in range(30)
]
DOCUMENT = "# A long note\n\n" + "\n\n".join(PARAGRAPHS) + "\n"


class NamedHash(HashEmbedder):
    """The hash embedder under another name (another "model" or precision)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class SlowLoading(HashEmbedder):
    """An embedder whose model load takes until the test lets it finish; the user asks for
    a pause the first time the job looks at the load's progress."""

    def __init__(self, store: SqlJobStore) -> None:
        super().__init__()
        self.store = store
        self.job_id: str | None = None
        self.release = threading.Event()
        self.future: Future[None] | None = None
        self.loaded_when_paused: bool | None = None
        self.calls: list[int] = []

    @property
    def loaded(self) -> bool:
        return self.future is not None and self.future.done()

    def load_async(self) -> Future[None]:
        if self.future is None:
            future: Future[None] = Future()
            self.future = future

            def load() -> None:
                self.release.wait(30)
                future.set_result(None)

            threading.Thread(target=load, daemon=True).start()
        return self.future

    @property
    def loading_step(self) -> str:
        if self.loaded_when_paused is None:  # the first look: the user pauses now
            assert self.job_id is not None
            self.loaded_when_paused = False
            self.store.request_pause(self.job_id)
            threading.Thread(target=self._release_once_paused, daemon=True).start()
        return "Exporting the embedding model to ONNX (once)…"

    def _release_once_paused(self) -> None:
        assert self.job_id is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(e.to_status == "paused" for e in self.store.events(self.job_id)):
                self.loaded_when_paused = self.loaded
                break
            time.sleep(0.01)
        self.release.set()

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls.append(len(texts))
        return super().embed(texts)


def test_pause_while_the_model_loads(
    store: SqlJobStore, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowLoading(store)
    monkeypatch.setattr(process_document, "get_embedder", lambda: slow)
    monkeypatch.setattr(process_document, "MODEL_POLL_SECONDS", 0.01)
    added = add_text(store, storage, DOCUMENT)
    slow.job_id = added.job.id
    run = run_inline("process_document", job_id=added.job.id, store=store, storage=storage)
    first, second = run.runs
    assert first.outcome == "paused" and second.outcome == "completed", run.runs
    assert slow.loaded_when_paused is False  # the pause did not wait for the model
    assert "embed" not in first.safe_points  # paused before the first batch
    assert run.job.status is JobStatus.COMPLETED and run.job.resume_count == 1
    chunks = Library(store).list_chunks(added.document.id, "local")
    assert chunks and all(c.embedding is not None for c in chunks)
    assert sum(slow.calls) == len(chunks)  # each chunk embedded once


def test_batches_in_token_order_record_the_model(
    store: SqlJobStore, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = NamedHash("hash-test+int8")
    seen: list[list[str]] = []
    original = model.embed

    def embed(texts: Sequence[str]) -> Any:
        seen.append(list(texts))
        return original(texts)

    monkeypatch.setattr(model, "embed", embed)
    monkeypatch.setattr(process_document, "get_embedder", lambda: model)
    monkeypatch.setattr(process_document, "EMBED_BATCH", 4)
    added = add_text(store, storage, DOCUMENT)
    run = run_inline("process_document", job_id=added.job.id, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED
    chunks = Library(store).list_chunks(added.document.id, "local")
    assert [len(b) for b in seen[:-1]] == [4] * (len(seen) - 1) and len(chunks) > 8
    # a checkpoint per batch, and one when the stage ends
    assert run.runs[0].safe_points.count("embed") == len(seen) + 1
    tokens = {c.text: c.token_count for c in chunks}
    order = [tokens[t] for batch in seen for t in batch]
    assert order == sorted(order)  # shortest first: batches of similar length
    assert {c.embedding_model for c in chunks} == {"hash-test+int8"}


def test_a_new_precision_restarts_a_paused_embedding(
    store: SqlJobStore, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = iter([NamedHash("m+int8"), NamedHash("m")])
    current = {"model": next(models)}
    monkeypatch.setattr(process_document, "get_embedder", lambda: current["model"])
    monkeypatch.setattr(process_document, "EMBED_BATCH", 4)

    def switch(*_: Any) -> None:  # the setting changes while the job is paused
        current["model"] = next(models, current["model"])

    # pause at the embed stage's second safe point (after two batches)
    points = _safe_points(store, storage)
    k = [i for i, p in enumerate(points, 1) if p == "embed"][1]
    added = add_text(store, storage, DOCUMENT)
    real_resume = store.resume
    monkeypatch.setattr(store, "resume", lambda *a, **k: (switch(), real_resume(*a, **k))[1])
    run = run_inline(
        "process_document", job_id=added.job.id, store=store, storage=storage, interrupt_at=k
    )
    assert [r.outcome for r in run.runs] == ["paused", "completed"]
    chunks = Library(store).list_chunks(added.document.id, "local")
    assert {c.embedding_model for c in chunks} == {"m"}  # no vector of the old precision left


def _safe_points(store: SqlJobStore, storage: LocalStorage) -> list[str]:
    added = add_text(store, storage, DOCUMENT)
    run = run_inline("process_document", job_id=added.job.id, store=store, storage=storage)
    return run.runs[0].safe_points


RELATED = [
    "# Coral reefs\n\nCoral bleaching happens when ocean temperatures rise and corals expel "
    "the algae living in their tissues; marine heatwaves bleach reefs again and again.\n",
    "# Reefs and heat\n\nWhen sea temperatures stay high, reef corals expel their algae and "
    "bleach; repeated marine heatwaves leave reefs little time to recover.\n",
]


def test_detection_never_mixes_models_and_reprocess_reembeds(
    store: SqlJobStore, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")
    library = Library(store)
    docs = []
    for text in RELATED:
        added = add_text(store, storage, text)
        run = run_inline("process_document", job_id=added.job.id, store=store, storage=storage)
        assert run.job.status is JobStatus.COMPLETED
        docs.append(added.document.id)
    # the second document's vectors now come from "another model"
    other = [c.id for c in library.list_chunks(docs[1], "local")]
    vectors = np.stack([c.embedding for c in library.list_chunks(docs[1], "local")])
    library.set_embeddings("local", other, vectors, model="another-model")
    detection = connections_common.Detection(library, docs[0], "local", _weights())
    assert detection.model == "hash-bow-256"
    assert detection.rest == [] and detection.counts()["documents_other_model"] == 1
    # a reprocess embeds the other model's document again, then both are compared
    run = run_inline("reprocess_connections", {"mode": "all"}, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED, run.runs
    assert run.output is not None and run.output["reembedded_chunks"] == len(other)
    assert {c.embedding_model for d in docs for c in library.list_chunks(d, "local")} == {
        "hash-bow-256"
    }
    detection = connections_common.Detection(library, docs[0], "local", _weights())
    assert {c.document_id for c in detection.rest} == {docs[1]}


def _weights() -> Any:
    from rhizome.pipeline.connect import Weights

    return Weights()
