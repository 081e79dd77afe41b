"""The portability API on both stores: export → download (streamed, scoped to the user),
ZIP upload → import with the 409 conflict report and then a strategy, highlights, and the
storage scan with its one-click import and re-export; the Import/Export page renders."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.storage import LocalStorage
from tests.helpers import make_worker
from tests.portability import snapshot, synthetic_library

OTHER = {"X-Rhizome-User": "mallory"}


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")


def _run(store: SqlJobStore, storage: LocalStorage) -> None:
    make_worker(store, storage, burst=True).run()


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_export_download_upload_conflict_and_import(
    client: TestClient, store: SqlJobStore, storage: LocalStorage
) -> None:
    ids = synthetic_library(store, storage, 2, chunks=3, words=20)
    before = snapshot(store, storage)
    job = _ok(client.post("/api/exports", json={}), 201)["job"]
    assert job["job_type"] == "export_documents" and job["type_label"] == "Export"
    early = client.get(f"/api/exports/{job['id']}/download")
    assert early.status_code == 409 and "not finished" in early.json()["error"]["message"]
    _run(store, storage)
    listed = _ok(client.get("/api/exports"))["exports"]
    assert listed[0]["job"]["id"] == job["id"]
    assert listed[0]["output"]["download_url"] == f"/api/exports/{job['id']}/download"
    response = client.get(f"/api/exports/{job['id']}/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    payload = response.content
    assert zipfile.ZipFile(io.BytesIO(payload)).testzip() is None
    # another user sees no such job
    assert client.get(f"/api/exports/{job['id']}/download", headers=OTHER).status_code == 404

    files = {"file": ("library.zip", payload, "application/zip")}
    upload = _ok(client.post("/api/imports/uploads", files=files), 201)["upload"]
    assert upload["key"].startswith("imports/local/") and len(upload["documents"]) == 2
    conflict = client.post("/api/imports", json={"upload": upload["key"]})
    assert conflict.status_code == 409
    body = conflict.json()
    assert body["error"]["type"] == "ImportConflict" and body["error"]["hint"]
    report = body["conflict"]
    assert report["conflicting"] == 2 and report["recommended"] == "merge_smart"
    assert {c["document_id"] for c in report["conflicts"]} == set(ids)
    assert store.list_jobs(job_types=["import_document"]) == []  # no job was created
    # mallory cannot import local's upload
    assert (
        client.post("/api/imports", json={"upload": upload["key"]}, headers=OTHER).status_code
        == 422
    )

    created = _ok(
        client.post("/api/imports", json={"upload": upload["key"], "strategy": "merge_smart"}), 201
    )
    assert created["job"]["type_label"] == "Import"
    _run(store, storage)
    done = _ok(client.get(f"/api/jobs/{created['job']['id']}"))["job"]
    assert done["status"] == "completed", done
    assert done["output_data"]["changed_documents"] == 0
    assert snapshot(store, storage) == before
    assert not storage.exists(upload["key"])  # removed once imported

    # an earlier export can be imported again by its job id
    again = _ok(
        client.post("/api/imports", json={"export_job_id": job["id"], "strategy": "skip"}), 201
    )
    _run(store, storage)
    assert _ok(client.get(f"/api/jobs/{again['job']['id']}"))["job"]["status"] == "completed"


def test_bad_uploads_are_refused(client: TestClient, store: SqlJobStore) -> None:
    bad = client.post("/api/imports/uploads", files={"file": ("x.zip", b"PK\x03\x04junk", "x")})
    assert bad.status_code == 422 and "ZIP" in bad.json()["error"]["message"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("../evil.txt", b"x")
    evil = client.post("/api/imports/uploads", files={"file": ("e.zip", out.getvalue(), "x")})
    assert evil.status_code == 422 and "leaves its folder" in evil.json()["error"]["message"]
    nothing = client.post("/api/imports", json={})
    assert nothing.status_code == 422
    missing = client.post("/api/imports", json={"upload": "imports/local/nope.zip"})
    assert missing.status_code == 404
    assert client.post("/api/exports", json={}).status_code == 422  # nothing to export


def test_highlights_api(client: TestClient, store: SqlJobStore, storage: LocalStorage) -> None:
    [doc_id] = synthetic_library(store, storage, 1)
    content = storage.get(f"documents/local/{doc_id}/content.md").decode()
    chunk = Library(store).list_chunks(doc_id, "local")[2]
    start = chunk.start + 5
    made = _ok(
        client.post(
            f"/api/documents/{doc_id}/highlights",
            json={
                "text": content[start : start + 30],
                "start": start,
                "end": start + 30,
                "note": "n",
                "color": "pink",
                "tags": ["x"],
            },
        ),
        201,
    )["highlight"]
    assert made["chunk_ids"] == [chunk.id] and made["status"] == "matched"
    by_text = _ok(
        client.post(f"/api/documents/{doc_id}/highlights", json={"text": chunk.text[:20]}), 201
    )["highlight"]
    assert (by_text["start"], by_text["match_method"]) == (chunk.start, "exact")
    wrong = client.post(
        f"/api/documents/{doc_id}/highlights", json={"text": "nope", "start": 0, "end": 4}
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["hint"]
    listed = _ok(client.get(f"/api/documents/{doc_id}/highlights"))["highlights"]
    assert len(listed) == 3
    assert (
        len(_ok(client.get("/api/highlights", params={"document_id": doc_id}))["highlights"]) == 3
    )
    assert _ok(client.get("/api/highlights", headers=OTHER))["highlights"] == []
    assert client.delete(f"/api/highlights/{made['id']}", headers=OTHER).status_code == 404
    _ok(client.delete(f"/api/highlights/{made['id']}"))
    assert client.get(f"/api/highlights/{made['id']}").status_code == 404


def test_storage_scan_and_its_actions(
    client: TestClient, store: SqlJobStore, storage: LocalStorage
) -> None:
    ids = synthetic_library(store, storage, 2)
    Library(store).delete_document(ids[0], "local")
    scan = _ok(client.get("/api/admin/storage-scan"))["result"]
    assert {r["document_id"]: r["status"] for r in scan["documents"]} == {
        ids[0]: "missing_from_db",
        ids[1]: "healthy",
    }
    assert _ok(client.get("/api/admin/storage-scan", headers=OTHER))["result"]["documents"] == []
    job = _ok(client.post("/api/imports", json={"document_id": ids[0]}), 201)["job"]
    _run(store, storage)
    assert _ok(client.get(f"/api/jobs/{job['id']}"))["job"]["status"] == "completed"
    export = _ok(
        client.post("/api/exports", json={"document_ids": [ids[1]], "sync_storage": True}), 201
    )
    _run(store, storage)
    assert _ok(client.get(f"/api/jobs/{export['job']['id']}"))["job"]["status"] == "completed"
    counts = _ok(client.get("/api/admin/storage-scan"))["result"]["counts"]
    assert counts["healthy"] == 2

    page = client.get("/portability")
    assert page.status_code == 200
    assert "Download ZIP" in page.text and "Storage scan" in page.text
    assert client.get(f"/documents/{ids[0]}").status_code == 200
