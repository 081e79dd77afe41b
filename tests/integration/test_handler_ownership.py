"""Defence in depth: a handler checks every key and id it is given against the job's user,
whatever the API let through."""

from __future__ import annotations

import pytest

from rhizome.jobs.model import ErrorType, JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.library import Library
from rhizome.library.ingest import add_text
from rhizome.storage import LocalStorage


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")


def test_process_document_refuses_another_users_source_key(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    alice = add_text(
        store, storage, "# Alice's secret\n\nOnly Alice may read this.", user_id="alice"
    )
    run_inline("process_document", job_id=alice.job.id, store=store, storage=storage)
    bob = add_text(store, storage, "# Bob's note\n\nHello.", user_id="bob")
    run_inline("process_document", job_id=bob.job.id, store=store, storage=storage)
    alice_source = Library(store).get_document(alice.document.id, "alice").metadata["source_key"]

    [forged] = store.enqueue(
        [
            NewJob(
                "process_document",
                {"document_id": bob.document.id, "source_key": alice_source},
                user_id="bob",
                entity_type="document",
                entity_id=bob.document.id,
            )
        ]
    )
    run = run_inline("process_document", job_id=forged.id, store=store, storage=storage)
    assert run.job.status is JobStatus.FAILED
    assert run.job.error_type is ErrorType.INVALID
    chunks = Library(store).list_chunks(bob.document.id, "bob")
    assert chunks and all("Alice" not in c.text for c in chunks)


def test_process_document_refuses_another_users_document(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    alice = add_text(store, storage, "# Alice\n\nPrivate.", user_id="alice")
    run_inline("process_document", job_id=alice.job.id, store=store, storage=storage)
    [forged] = store.enqueue(
        [NewJob("process_document", {"document_id": alice.document.id}, user_id="mallory")]
    )
    run = run_inline("process_document", job_id=forged.id, store=store, storage=storage)
    assert run.job.status is JobStatus.FAILED
    assert run.job.error_type is ErrorType.INVALID
