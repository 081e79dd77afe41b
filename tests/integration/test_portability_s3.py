"""The export/import round trip of the corpus on S3-compatible storage (the SeaweedFS
server of tests/s3server.py), on both job stores: the ZIP streamed in parts through the
bucket, a presigned download URL, and the import into a fresh bucket prefix."""

from __future__ import annotations

import io
import secrets
import zipfile

import httpx
import pytest

from rhizome.jobs.model import JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.library import Library
from tests.portability import corpus_library, snapshot
from tests.s3server import S3Server


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")


def test_round_trip_of_the_corpus_on_s3(store: SqlJobStore, s3_server: S3Server) -> None:
    storage = s3_server.storage(f"port-{secrets.token_hex(4)}")
    ids = corpus_library(store, storage)
    before = snapshot(store, storage)

    run = run_inline("export_documents", {}, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    out = run.output
    assert out is not None and out["documents"] == 3
    payload = storage.get(out["path"])
    assert zipfile.ZipFile(io.BytesIO(payload)).testzip() is None
    assert storage.list("jobs") == []  # the parts are gone with the checkpoints
    # a presigned URL, valid for a day, reads the ZIP without credentials
    assert out["signed_url"] and out["signed_url_expires_at"]
    response = httpx.get(out["signed_url"], timeout=30)
    assert response.status_code == 200 and response.content == payload

    # a fresh bucket prefix and an emptied database; then the import
    fresh = s3_server.storage(f"port-{secrets.token_hex(4)}")
    library = Library(store)
    for doc_id in ids:
        library.delete_document(doc_id, "local")
    fresh.put("imports/local/library.zip", payload)
    run = run_inline(
        "import_document", {"zip_key": "imports/local/library.zip"}, store=store, storage=fresh
    )
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    assert snapshot(store, fresh) == before  # files byte for byte, in the other prefix
