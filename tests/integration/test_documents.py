"""The document pipeline as jobs, on both stores, with the real embedding model: every
corpus document end to end, offsets, pause and crash in each stage, connections, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from rhizome.errors import InvalidInputError
from rhizome.jobs.admin import Admin
from rhizome.jobs.model import ErrorType, JobStatus
from rhizome.jobs.retry import RetryPolicy
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.library.ingest import Added, add_bytes, add_text, add_url
from rhizome.storage import LocalStorage
from tests.conftest import CORPUS, ROOT
from tests.helpers import PauseAfterPuts, make_worker

CORPUS_FILES = sorted(
    p for folder in ("pdf", "epub", "html") for p in (CORPUS / folder).iterdir() if p.is_file()
)
ENCRYPTED = "libreoffice-writer-password.pdf"
SMALL = CORPUS / "epub" / "wasteland.epub"


def _add(store: SqlJobStore, storage: LocalStorage, path: Path) -> Added:
    return add_bytes(store, storage, path.read_bytes(), filename=path.name)


def _run(store: SqlJobStore, storage: LocalStorage) -> None:
    make_worker(store, storage, burst=True, concurrency=2, lease_seconds=60).run()


def _check_document(store: SqlJobStore, storage: LocalStorage, added: Added) -> list[str]:
    """Invariants of a processed document; returns its chunk texts."""
    library = Library(store)
    doc = library.get_document(added.document.id, "local")
    assert doc.status == "ready", doc.error_message
    chunks = library.list_chunks(doc.id, "local")
    assert chunks and doc.chunk_count == len(chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))  # no duplicates, no gaps
    content = storage.get(f"{doc.storage_folder}/content.md").decode("utf-8")
    for c in chunks:
        assert content[c.start : c.end] == c.text  # offsets round-trip
        assert c.embedding is not None and c.embedding.shape == (384,)
    names = {k.rsplit("/", 1)[-1] for k in storage.list(doc.storage_folder)}
    assert {"content.md", "chunks.json", "metadata.json", "manifest.json"} <= names
    assert not any(n.startswith("stage-") for n in names)  # checkpoints removed
    return [c.text for c in chunks]


def test_every_corpus_document(store: SqlJobStore, storage: LocalStorage, db_url: str) -> None:
    """All of corpus/pdf, epub and html on SQLite; a representative subset on PostgreSQL
    (same code path; embedding all of Moby-Dick twice would double CI time)."""
    files = CORPUS_FILES
    if not db_url.startswith("sqlite"):
        files = [p for p in CORPUS_FILES if p.stat().st_size < 120_000 or p.name == ENCRYPTED]
    added = {p.name: _add(store, storage, p) for p in files}
    _run(store, storage)
    for name, item in added.items():
        job = store.get(item.job.id)
        if name == ENCRYPTED:
            assert job.status is JobStatus.FAILED
            assert job.error_type is ErrorType.INVALID
            assert "password" in (job.error_message or "").lower()
            doc = Library(store).get_document(item.document.id, "local")
            assert doc.status == "failed" and doc.error_message
            continue
        assert job.status is JobStatus.COMPLETED, (name, job.error_message, job.last_error)
        _check_document(store, storage, item)
        doc = Library(store).get_document(item.document.id, "local")
        assert doc.word_count and doc.word_count > 0
    if "moby-dick.epub" in added:
        moby = Library(store).get_document(added["moby-dick.epub"].document.id, "local")
        assert moby.title and "Moby" in moby.title
        assert moby.word_count and moby.word_count > 150_000
    # every completed process_document queued its detect_connections, which ran too
    detect = store.list_jobs(job_types=["detect_connections"], limit=1000)
    assert len(detect) == len(files) - 1
    assert all(j.status is JobStatus.COMPLETED for j in detect)


def _reference(store: SqlJobStore, storage: LocalStorage) -> list[str]:
    ref = _add(store, storage, SMALL)
    _run(store, storage)
    texts = _check_document(store, storage, ref)
    return texts


# checkpoints of wasteland.epub: extract, clean, chunk, then one per embedding batch
@pytest.mark.parametrize(("k", "stage"), [(1, "extract"), (2, "clean"), (3, "chunk"), (4, "embed")])
def test_pause_in_each_stage_resumes_without_duplicates(
    store: SqlJobStore, storage: LocalStorage, k: int, stage: str
) -> None:
    expected = _reference(store, storage)
    added = _add(store, storage, SMALL)
    make_worker(store, PauseAfterPuts(storage, store, k, added.job.id), burst=True).run()
    paused = store.get(added.job.id)
    assert paused.status is JobStatus.PAUSED
    assert paused.last_checkpoint_stage == stage
    Admin(store, storage).resume(added.job.id)
    _run(store, storage)
    assert store.get(added.job.id).status is JobStatus.COMPLETED
    assert _check_document(store, storage, added) == expected


@pytest.mark.parametrize(
    "k",
    [
        pytest.param(1, id="extract"),
        pytest.param(2, id="clean"),
        pytest.param(3, id="chunk"),
        pytest.param(4, id="embed"),
    ],
)
def test_crash_in_each_stage_resumes_without_duplicates(
    store: SqlJobStore, storage: LocalStorage, db_url: str, k: int
) -> None:
    """The worker process dies right after writing checkpoint k to storage, before the
    database heard of it; another worker takes the job over after the lease."""
    expected = _reference(store, storage)
    added = _add(store, storage, SMALL)
    script = ROOT / "tests" / "fixtures" / "crash_worker.py"
    proc = subprocess.run(
        [sys.executable, str(script), db_url, str(storage.root), str(k)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert store.get(added.job.id).status is JobStatus.PROCESSING
    time.sleep(1.2)  # the dead worker's 1 s lease runs out
    _run(store, storage)
    job = store.get(added.job.id)
    assert job.status is JobStatus.COMPLETED
    assert job.attempt == 2
    assert _check_document(store, storage, added) == expected


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
UNRELATED = """# Baking sourdough bread

A sourdough starter is a mix of flour and water fermented by wild yeast and lactic acid
bacteria. Feed it daily, let the dough rise overnight in a cool kitchen and bake it in a
very hot Dutch oven for a crisp crust.
"""


def test_connections_between_related_documents_only(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    a = add_text(store, storage, RELATED_A)
    b = add_text(store, storage, RELATED_B)
    c = add_text(store, storage, UNRELATED)
    _run(store, storage)
    library = Library(store)
    docs_of = {}
    for item in (a, b, c):
        conns = library.list_connections(item.document.id, "local")
        docs_of[item.document.id] = {(x.source_document_id, x.target_document_id) for x in conns}
    pair = {(a.document.id, b.document.id), (b.document.id, a.document.id)}
    assert docs_of[a.document.id] & pair, "related documents were not connected"
    assert not docs_of[c.document.id], "the unrelated document got connections"
    conn = library.list_connections(a.document.id, "local")[0]
    assert conn.engine_scores["semantic"] > 0 and conn.combined_score > 0


def test_reprocess_connections_smart_keeps_validated(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    from rhizome.jobs.client import enqueue

    a = add_text(store, storage, RELATED_A)
    add_text(store, storage, RELATED_B)
    _run(store, storage)
    library = Library(store)
    keep = library.list_connections(a.document.id, "local")[0]
    library.validate_connection(keep.id, "local")
    [job] = enqueue(store, "reprocess_connections", {"mode": "smart"})
    _run(store, storage)
    assert store.get(job.id).status is JobStatus.COMPLETED
    after = library.list_connections(a.document.id, "local")
    assert any(c.id == keep.id and c.user_validated for c in after)
    [job] = enqueue(store, "reprocess_connections", {"mode": "all"})
    _run(store, storage)
    # all replaces every connection but the validated and starred ones (issue 14)
    assert any(c.id == keep.id for c in library.list_connections(a.document.id, "local"))


def _zip_bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        zf.writestr("META-INF/container.xml", "<container/>")
        zf.writestr("OEBPS/bomb.xhtml", b"\0" * (300 * 1024 * 1024))


def test_bad_inputs_fail_cleanly_and_the_worker_survives(
    store: SqlJobStore, storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = CORPUS / "pdf" / "minimal-document.pdf"
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes((CORPUS / "pdf" / "pdflatex-4-pages.pdf").read_bytes()[:3000])
    corrupt = tmp_path / "corrupt.epub"
    corrupt.write_bytes(b"PK\x03\x04" + b"not really a zip" * 100)
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(bytes(range(256)) * 64)
    bomb = tmp_path / "bomb.epub"
    _zip_bomb(bomb)
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 500)
    encrypted = tmp_path / ENCRYPTED
    shutil.copy(CORPUS / "pdf" / ENCRYPTED, encrypted)
    # refused by `rhizome add` before anything is written (as the upload refuses them)
    for path, why in ((corrupt, "damaged"), (junk, "not a valid PDF"), (image, "PNG image")):
        with pytest.raises(InvalidInputError, match=why):
            _add(store, storage, path)
    assert Library(store).list_documents("local") == []
    cases = {
        "encrypted": _add(store, storage, encrypted),
        "truncated": _add(store, storage, truncated),
        "bomb": _add(store, storage, bomb),
    }
    monkeypatch.setenv("RHIZOME_FETCH_ALLOW_PRIVATE", "1")  # a loopback URL on purpose
    url = add_url(store, "http://127.0.0.1:9/unreachable.html")
    ok = _add(store, storage, good)
    # the unreachable URL's retry an hour away: the worker's reaper never makes it due
    make_worker(
        store, storage, burst=True, concurrency=2, retry=RetryPolicy(base_seconds=3600)
    ).run()

    for name, item in cases.items():
        job = store.get(item.job.id)
        assert job.status is JobStatus.FAILED, name
        assert job.error_type is ErrorType.INVALID, (name, job.error_type, job.last_error)
        assert job.next_retry_at is None, name
        assert job.error_message, name
        doc = Library(store).get_document(item.document.id, "local")
        assert doc.status == "failed" and doc.error_message, name
    net = store.get(url.job.id)
    assert net.status is JobStatus.FAILED and net.error_type is ErrorType.TRANSIENT
    assert net.next_retry_at is not None and net.retry_count == 1  # retried automatically
    assert Library(store).get_document(url.document.id, "local").status != "ready"
    assert store.get(ok.job.id).status is JobStatus.COMPLETED  # nothing else affected


def test_empty_and_oversized_uploads_are_refused(store: SqlJobStore, storage: LocalStorage) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        add_bytes(store, storage, b"", filename="empty.pdf")
    with pytest.raises(InvalidInputError, match="limit"):
        add_bytes(store, storage, b"x" * 2000, filename="big.txt", max_bytes=1000)
    assert Library(store).list_documents("local") == []


def test_deleting_a_document_while_it_is_processed(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    """The running job is cancelled and stops before the folder goes; nothing of the
    document is left afterwards, and nothing reappears."""
    from rhizome.library.admin import delete_document
    from tests.helpers import Background, wait_for

    added = _add(store, storage, CORPUS / "epub" / "childrens-literature.epub")
    folder = added.document.storage_folder
    with Background(make_worker(store, storage)):
        wait_for(lambda: store.get(added.job.id).stage == "embed", timeout=120, what="embed")
        delete_document(store, storage, added.document.id, "local")
        assert storage.list(folder) == []
        time.sleep(1.5)  # a job that had not stopped would write again by now
        assert storage.list(folder) == []
    assert Library(store).list_documents("local") == []
    assert store.list_jobs(limit=10) == []
    messages = [e.message or "" for e in store.events(added.job.id)]
    assert any("deleted" in m for m in messages)
