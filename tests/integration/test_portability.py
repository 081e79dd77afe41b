"""Export and import of the library on both stores: the round trip of the corpus (PDF,
EPUB, HTML with highlights and validated connections), every strategy with and without a
conflict, the conflict report, idempotent re-imports, pause and crash (in-process at
chosen safe points, and kill -9 of a real worker process) in the middle of a 20-document
export and import, and bad archives, each ``invalid`` with nothing changed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from typing import Any

import pytest

from rhizome.errors import InvalidInputError
from rhizome.jobs.client import enqueue
from rhizome.jobs.model import JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.library import Library
from rhizome.library.admin import delete_document
from rhizome.library.portability import (
    ImportConflictError,
    ZipSource,
    plan_import,
    request_import,
    scan_storage,
)
from rhizome.storage import LocalStorage
from tests.conftest import ROOT
from tests.helpers import make_worker
from tests.portability import (
    corpus_library,
    files,
    rewrite_zip,
    snapshot,
    synthetic_library,
)

CRASH_WORKER = ROOT / "tests" / "fixtures" / "crash_worker.py"


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")


def export_zip(store: SqlJobStore, storage: LocalStorage, **data: Any) -> tuple[str, bytes]:
    run = run_inline("export_documents", data, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    assert run.output is not None
    key = run.output["path"]
    return key, storage.get(key)


def upload(storage: LocalStorage, payload: bytes, name: str = "x.zip") -> str:
    key = f"imports/local/{name}"
    storage.put(key, payload)
    return key


def import_run(store: SqlJobStore, storage: LocalStorage, key: str, **data: Any) -> Any:
    return run_inline("import_document", {"zip_key": key, **data}, store=store, storage=storage)


# --- the round trip ------------------------------------------------------------------------------


def test_round_trip_of_the_corpus(store: SqlJobStore, storage: LocalStorage) -> None:
    ids = corpus_library(store, storage)
    before = snapshot(store, storage)
    assert sum(len(v) for v in before["highlights"].values()) == 3
    assert any(c[3] for v in before["connections"].values() for c in v)  # a validated one
    assert {d[2] for d in before["documents"].values()} == {"pdf", "epub", "html"}

    key, payload = export_zip(store, storage)
    archive = zipfile.ZipFile(io.BytesIO(payload))
    assert archive.testzip() is None
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "rhizome-export" and manifest["version"] == "1.0"
    assert {d["id"] for d in manifest["documents"]} == set(ids)
    for d in manifest["documents"]:
        names = {f["name"] for f in d["files"]}
        assert {"content.md", "chunks.json", "metadata.json", "manifest.json"} <= names
        assert {"highlights.json", "connections.json", "embeddings.f32"} <= names
        assert any(n.startswith("source.") for n in names)
        assert d["chunk_count"] == len(before["chunks"][d["id"]]) and d["highlight_count"] == 1
    assert key.startswith("exports/local/rhizome-export-") and key.endswith(".zip")

    # delete everything, then import the ZIP
    for doc_id in ids:
        delete_document(store, storage, doc_id, "local")
    assert files(storage) == {} and Library(store).list_documents("local") == []
    zkey = upload(storage, payload)
    run = import_run(store, storage, zkey)
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    assert run.output is not None and run.output["imported"] == 3
    assert snapshot(store, storage) == before  # ids, text, offsets, embeddings, files…

    # a fresh library is no conflict; a second import conflicts and merge_smart changes nothing
    with pytest.raises(ImportConflictError) as conflict:
        request_import(store, storage, "local", zip_key=zkey)
    assert conflict.value.report["conflicting"] == 3
    again = import_run(store, storage, zkey, strategy="merge_smart")
    assert again.output is not None and again.output["changed_documents"] == 0
    assert again.output["totals"]["chunks_updated"] == 0
    assert snapshot(store, storage) == before


def test_export_options_and_one_document(store: SqlJobStore, storage: LocalStorage) -> None:
    ids = synthetic_library(store, storage, 3)
    _, payload = export_zip(
        store, storage, document_ids=[ids[1]], include_connections=False, include_highlights=False
    )
    archive = zipfile.ZipFile(io.BytesIO(payload))
    names = archive.namelist()
    assert all(n == "manifest.json" or n.startswith(ids[1] + "/") for n in names)
    assert f"{ids[1]}/connections.json" not in names and f"{ids[1]}/highlights.json" not in names
    key2, _ = export_zip(store, storage, document_ids=[ids[1]])
    assert len([k for k in storage.list("exports/local")]) == 2  # never overwritten
    assert key2 in storage.list("exports/local")
    assert storage.list("jobs") == []  # the parts went with the checkpoints


# --- strategies and the conflict report ---------------------------------------------------------


def _chunks_of(payload: bytes, doc_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        zipfile.ZipFile(io.BytesIO(payload)).read(f"{doc_id}/chunks.json")
    )
    return data


def test_strategies_with_and_without_a_conflict(store: SqlJobStore, storage: LocalStorage) -> None:
    ids = synthetic_library(store, storage, 3)
    _, payload = export_zip(store, storage)
    before = snapshot(store, storage)

    # enrich two chunks of the first document in the archive (merge_smart's fields)
    chunks = _chunks_of(payload, ids[0])
    chunks["chunks"][0]["themes"] = ["whales", "sea"]
    chunks["chunks"][1]["importance"] = 0.9
    chunks["chunks"][1]["summary"] = "A summary."
    enriched = rewrite_zip(payload, {f"{ids[0]}/chunks.json": json.dumps(chunks).encode()})
    key = upload(storage, enriched, "enriched.zip")

    # no strategy: a report, no job; a job without one fails as invalid and changes nothing
    with pytest.raises(ImportConflictError) as info:
        request_import(store, storage, "local", zip_key=key)
    report = info.value.report
    assert report["conflicting"] == 3 and report["new"] == 0
    assert report["recommended"] == "merge_smart"
    first = next(c for c in report["conflicts"] if c["document_id"] == ids[0])
    assert first["database"]["chunk_count"] == first["import"]["chunk_count"] == 5
    assert len(first["database"]["samples"]) == len(first["import"]["samples"]) == 3
    assert first["database"]["created_at"] and first["import"]["exported_at"]
    assert set(report["strategies"]) == {"skip", "replace", "merge_smart"}
    failed = import_run(store, storage, key)
    assert failed.job.status is JobStatus.FAILED and failed.job.error_type is not None
    assert failed.job.error_type.value == "invalid" and "strategy" in (
        failed.job.error_message or ""
    )
    assert snapshot(store, storage) == before

    # skip: nothing changes
    skipped = import_run(store, storage, key, strategy="skip")
    assert skipped.output is not None and skipped.output["skipped"] == 3
    assert skipped.output["changed_documents"] == 0
    assert snapshot(store, storage) == before

    # merge_smart: only the enrichment of the two chunks; a second time nothing
    merged = import_run(store, storage, key, strategy="merge_smart")
    assert merged.output is not None and merged.output["totals"]["chunks_updated"] == 2
    assert merged.output["changed_documents"] == 1
    after = Library(store).list_chunks(ids[0], "local")
    assert after[0].enrichment == {"themes": ["whales", "sea"]}
    assert after[1].enrichment == {"importance": 0.9, "summary": "A summary."}
    snap = snapshot(store, storage)
    assert snap["highlights"] == before["highlights"]
    assert snap["connections"] == before["connections"]
    assert [c[:7] for c in snap["chunks"][ids[0]]] == [c[:7] for c in before["chunks"][ids[0]]]
    twice = import_run(store, storage, key, strategy="merge_smart")
    assert twice.output is not None and twice.output["totals"]["chunks_updated"] == 0
    assert twice.output["changed_documents"] == 0
    assert snapshot(store, storage) == snap

    # replace with fewer chunks: ids kept, the removed chunk's connections dropped
    chunks = _chunks_of(payload, ids[1])
    dropped_id = chunks["chunks"][0]["id"]
    chunks["chunks"] = chunks["chunks"][1:]
    fewer = rewrite_zip(
        payload,
        {f"{ids[1]}/chunks.json": json.dumps(chunks).encode(), f"{ids[1]}/embeddings.f32": None},
    )
    key2 = upload(storage, fewer, "fewer.zip")
    with pytest.raises(ImportConflictError) as info2:
        request_import(store, storage, "local", zip_key=key2)
    rec = {c["document_id"]: c["recommended"] for c in info2.value.report["conflicts"]}
    assert rec[ids[1]] == "replace" and rec[ids[2]] == "merge_smart"
    replaced = import_run(store, storage, key2, strategy="replace")
    assert replaced.job.status is JobStatus.COMPLETED, replaced.job.error_message
    detail = next(d for d in replaced.output["details"] if d["id"] == ids[1])  # type: ignore[index]
    assert detail["chunks_deleted"] == 1 and detail["connections_dropped"] >= 1
    assert detail["highlights_kept"] == 1
    kept = Library(store).list_chunks(ids[1], "local")
    assert [c.id for c in kept] == [c["id"] for c in chunks["chunks"]]
    assert dropped_id not in {c.id for c in kept}
    assert all(c.embedding is not None for c in kept)  # from the database or re-embedded
    conns = Library(store).list_connections(ids[1], "local")
    assert all(dropped_id not in (c.source_chunk_id, c.target_chunk_id) for c in conns)


@pytest.mark.parametrize("strategy", [None, "skip", "replace", "merge_smart"])
def test_strategies_without_a_conflict_import_everything(
    store: SqlJobStore, storage: LocalStorage, strategy: str | None
) -> None:
    ids = synthetic_library(store, storage, 2)
    _, payload = export_zip(store, storage)
    before = snapshot(store, storage)
    for doc_id in ids:
        delete_document(store, storage, doc_id, "local")
    key = upload(storage, payload)
    job, plan = request_import(store, storage, "local", zip_key=key, strategy=strategy)  # type: ignore[arg-type]
    assert [d.action for d in plan.documents] == ["create", "create"]
    make_worker(store, storage, burst=True).run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED, done.error_message
    assert snapshot(store, storage) == before


def test_regenerate_embeddings_and_reprocess_connections(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    ids = synthetic_library(store, storage, 2)
    _, payload = export_zip(store, storage)
    key = upload(storage, payload)
    run = import_run(
        store,
        storage,
        key,
        strategy="merge_smart",
        regenerate_embeddings=True,
        reprocess_connections=True,
    )
    assert run.output is not None
    assert run.output["embedded_chunks"] == 10
    queued = run.output["detect_connections_jobs"]
    assert len(queued) == 2
    assert {store.get(j).job_type for j in queued} == {"detect_connections"}
    assert {store.get(j).entity_id for j in queued} == set(ids)
    vectors = [c.embedding for c in Library(store).list_chunks(ids[0], "local")]
    assert all(v is not None and v.shape != (16,) for v in vectors)  # embedded again


def test_import_a_document_folder_from_storage_and_the_scan(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    ids = synthetic_library(store, storage, 3)
    library = Library(store)
    doc = library.get_document(ids[0], "local")
    library.delete_document(ids[0], "local")  # the row goes, the folder stays
    storage.delete_prefix(library.get_document(ids[1], "local").storage_folder)
    chunks = json.loads(storage.get(f"documents/local/{ids[2]}/chunks.json"))
    chunks["chunks"] = chunks["chunks"][:2]
    storage.put(f"documents/local/{ids[2]}/chunks.json", json.dumps(chunks).encode())
    result = scan_storage(store, storage, "local")
    status = {r["document_id"]: (r["status"], r["action"]) for r in result["documents"]}
    assert status == {
        ids[0]: ("missing_from_db", "import"),
        ids[1]: ("missing_from_storage", "export"),
        ids[2]: ("out_of_sync", "export"),
    }
    job, plan = request_import(store, storage, "local", document_id=ids[0])
    assert job.entity_id == ids[0] and plan.documents[0].action == "create"
    make_worker(store, storage, burst=True).run()
    assert store.get(job.id).status is JobStatus.COMPLETED, store.get(job.id).error_message
    back = library.get_document(ids[0], "local")
    assert (back.title, back.status, back.chunk_count) == (doc.title, "ready", 5)
    assert all(c.embedding is not None for c in library.list_chunks(ids[0], "local"))
    # the re-export of the out-of-sync one rewrites its chunks.json from the database
    run = run_inline(
        "export_documents",
        {"document_ids": [ids[2]], "sync_storage": True},
        store=store,
        storage=storage,
    )
    assert run.job.status is JobStatus.COMPLETED
    result = scan_storage(store, storage, "local")
    assert {r["document_id"]: r["status"] for r in result["documents"]} == {
        ids[0]: "healthy",
        ids[1]: "missing_from_storage",
        ids[2]: "healthy",
    }


def test_another_users_ids_are_never_touched(store: SqlJobStore, storage: LocalStorage) -> None:
    synthetic_library(store, storage, 2, user="alice")
    alice = snapshot(store, storage, "alice")
    run = run_inline("export_documents", {}, store=store, storage=storage, user_id="alice")
    assert run.output is not None
    payload = storage.get(run.output["path"])
    storage.put("imports/bob/a.zip", payload)
    with pytest.raises(InvalidInputError):  # not bob's upload
        request_import(store, storage, "bob", zip_key=run.output["path"])
    job, _ = request_import(store, storage, "bob", zip_key="imports/bob/a.zip")
    make_worker(store, storage, burst=True).run()
    assert store.get(job.id).status is JobStatus.COMPLETED, store.get(job.id).error_message
    assert snapshot(store, storage, "alice") == alice
    bob = snapshot(store, storage, "bob")
    assert len(bob["documents"]) == 2 and not set(bob["documents"]) & set(alice["documents"])
    assert [len(v) for v in bob["highlights"].values()] == [1, 1]
    assert sum(len(v) for v in bob["connections"].values()) == 4  # 2, seen from both ends


# --- pause and crash in the middle of 20 documents ---------------------------------------------

N = 20


@pytest.mark.parametrize(("interrupt", "k"), [("pause", 6), ("crash", 12), ("crash-before", 9)])
def test_export_of_20_documents_resumes_without_duplicates(
    store: SqlJobStore, storage: LocalStorage, interrupt: str, k: int
) -> None:
    ids = synthetic_library(store, storage, N, chunks=3, words=20)
    run = run_inline(
        "export_documents",
        {},
        interrupt_at=k,
        interrupt=interrupt,
        store=store,
        storage=storage,  # type: ignore[arg-type]
    )
    assert run.job.status is JobStatus.COMPLETED, run.runs
    assert len(run.runs) == 2 and run.runs[1].resumed
    assert "collect" in run.runs[1].skipped_stages
    assert run.output is not None
    _check_export(storage.get(run.output["path"]), ids)
    assert storage.list("jobs") == []


def _check_export(payload: bytes, ids: list[str]) -> None:
    archive = zipfile.ZipFile(io.BytesIO(payload))
    assert archive.testzip() is None
    names = archive.namelist()
    assert len(names) == len(set(names))  # no duplicated entry
    manifest = json.loads(archive.read("manifest.json"))
    assert [d["id"] for d in manifest["documents"]] == ids  # each once, in order
    assert {n.split("/")[0] for n in names if "/" in n} == set(ids)


@pytest.mark.parametrize(("interrupt", "k"), [("pause", 8), ("crash", 30), ("crash-before", 3)])
def test_import_of_20_documents_resumes_without_duplicates(
    store: SqlJobStore, storage: LocalStorage, interrupt: str, k: int
) -> None:
    ids = synthetic_library(store, storage, N, chunks=3, words=20)
    _, payload = export_zip(store, storage)
    before = snapshot(store, storage)
    for doc_id in ids:
        delete_document(store, storage, doc_id, "local")
    key = upload(storage, payload)
    run = import_run(store, storage, key)
    assert run.job.status is JobStatus.COMPLETED
    run = run_inline(
        "import_document",
        {"zip_key": key, "strategy": "replace"},
        interrupt_at=k,
        interrupt=interrupt,  # type: ignore[arg-type]
        store=store,
        storage=storage,
    )
    assert run.job.status is JobStatus.COMPLETED, run.runs
    assert len(run.runs) == 2
    assert snapshot(store, storage) == before


def _crash_then_finish(store: SqlJobStore, storage: LocalStorage, db_url: str, k: int) -> None:
    proc = subprocess.run(
        [sys.executable, str(CRASH_WORKER), db_url, str(storage.root), str(k)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "RHIZOME_EMBEDDER": "hash"},
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    time.sleep(1.2)  # the dead worker's 1 s lease runs out
    make_worker(store, storage, burst=True).run()


def test_kill_9_during_export_and_import(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    ids = synthetic_library(store, storage, N, chunks=3, words=20)
    before = snapshot(store, storage)
    [job] = enqueue(store, "export_documents", {})
    _crash_then_finish(store, storage, db_url, 11)  # after 10 of the 20 documents
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempt == 2, done.error_message
    messages = [e.message or "" for e in store.events(job.id)]
    assert any(m.startswith("resumed from checkpoint") for m in messages)
    assert done.output_data is not None
    payload = storage.get(done.output_data["path"])
    _check_export(payload, ids)

    for doc_id in ids[:10]:
        delete_document(store, storage, doc_id, "local")
    key = upload(storage, payload)
    [job] = enqueue(store, "import_document", {"zip_key": key, "strategy": "merge_smart"})
    _crash_then_finish(store, storage, db_url, 9)  # inside the apply stage
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempt == 2, done.error_message
    assert snapshot(store, storage) == before


# --- bad archives --------------------------------------------------------------------------------


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in links:
                info.create_system = 3
                info.external_attr = (0o120777) << 16
            z.writestr(info, data)
    return out.getvalue()


def _bad_archives(payload: bytes, doc_id: str) -> dict[str, bytes]:
    zin = zipfile.ZipFile(io.BytesIO(payload))
    good = {n: zin.read(n) for n in zin.namelist()}
    chunks = json.loads(good[f"{doc_id}/chunks.json"])
    return {
        "dotdot": _zip({**good, f"{doc_id}/../../../escape.txt": b"x"}),
        "absolute": _zip({**good, "/etc/rhizome-escape": b"x"}),
        "symlink": _zip({**good, f"{doc_id}/link": b"/etc/passwd"}, links=(f"{doc_id}/link",)),
        "bomb": _zip({**good, f"{doc_id}/bomb.txt": b"\0" * (30 * 1024 * 1024)}),
        "truncated": payload[: len(payload) // 2],
        "malformed_chunks": rewrite_zip(
            payload, {f"{doc_id}/chunks.json": b'{"version": "1.0", "chunks": [{"index": 0'}
        ),
        "chunk_without_text": rewrite_zip(
            payload,
            {
                f"{doc_id}/chunks.json": json.dumps(
                    {"version": "1.0", "chunks": [{"index": 0}]}
                ).encode()
            },
        ),
        "wrong_version": rewrite_zip(
            payload, {f"{doc_id}/chunks.json": json.dumps({**chunks, "version": "2.0"}).encode()}
        ),
        "not_an_export": _zip({"notes/a.md": b"# hello", "manifest.json": b'{"name": "x"}'}),
        "tampered_file": _tampered(payload, f"{doc_id}/content.md"),
    }


def _tampered(payload: bytes, name: str) -> bytes:
    zin = zipfile.ZipFile(io.BytesIO(payload))
    return _zip({n: (zin.read(n) + b"!" if n == name else zin.read(n)) for n in zin.namelist()})


def test_bad_archives_are_invalid_and_change_nothing(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    ids = synthetic_library(store, storage, 2)
    _, payload = export_zip(store, storage)
    library = Library(store)
    library.delete_document(ids[1], "local")  # a document the archives would create
    storage.delete_prefix(f"documents/local/{ids[1]}")
    before = snapshot(store, storage)
    keys_before = set(storage.list())
    jobs: list[str] = []
    for case, bad in _bad_archives(payload, ids[1]).items():
        key = upload(storage, bad, f"{case}.zip")
        if case != "tampered_file":  # the API and the CLI refuse these at once; a file
            with pytest.raises(InvalidInputError):  # whose hash is wrong, only the job sees
                request_import(store, storage, "local", zip_key=key, strategy="replace")
        [job] = enqueue(store, "import_document", {"zip_key": key, "strategy": "replace"})
        jobs.append(job.id)
        make_worker(store, storage, burst=True).run()
        done = store.get(job.id)
        assert done.status is JobStatus.FAILED, (case, done.status)
        assert done.error_type is not None and done.error_type.value == "invalid", case
        assert done.retry_count == 0, case
        assert snapshot(store, storage) == before, case
        own = tuple(f"jobs/{j}/" for j in jobs)  # the failed jobs' own folders
        outside = {k for k in storage.list() if not k.startswith((*own, "imports/"))}
        assert outside == {k for k in keys_before if not k.startswith("imports/")}, case
        assert not (storage.root.parent / "escape.txt").exists()
    with (
        open(storage.root / "imports/local/bomb.zip", "rb") as fh,
        pytest.raises(InvalidInputError, match="zip bomb"),
    ):
        plan_import(store, ZipSource(fh, "bomb.zip"), "local", None)


@pytest.mark.parametrize(
    "key", ["imports/local/../../documents/x.zip", "exports/other/a.zip", "documents/local/a.zip"]
)
def test_an_import_names_only_the_users_own_uploads_and_exports(
    store: SqlJobStore, storage: LocalStorage, key: str
) -> None:
    run = import_run(store, storage, key)
    assert run.job.status is JobStatus.FAILED
    assert run.job.error_type is not None and run.job.error_type.value == "invalid"
    assert "not one of your uploads" in (run.job.error_message or "")
