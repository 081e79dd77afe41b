"""Ownership everywhere, on both stores: every route that takes an id (found by walking the
app's routes, so a new one is covered or this test says what it needs), every body or query
field that names a document, job, upload or export, and every job input that can be forged
through ``POST /api/jobs``: another user gets 403/404 and alice's things stay as they were."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from rhizome.app import App
from rhizome.errors import ForbiddenError
from rhizome.jobs.model import JobStatus
from rhizome.jobs.registry import registry
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.library.connections import Curation
from rhizome.library.highlights import Highlights
from rhizome.storage import LocalStorage
from rhizome.web.ownership import CHECKS, check_storage_key
from tests.web import helpers as h

ALICE = {"X-Rhizome-User": "alice"}
BOB = {"X-Rhizome-User": "bob"}

BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/documents/{document_id}/highlights"): {"text": "First chunk about trees."},
}
"""Bodies a route needs to get past validation to its ownership check (default: {})."""


@pytest.fixture
def alice(store: SqlJobStore, storage: LocalStorage) -> dict[str, Any]:
    """Alice's things: a pending job, a finished export with its ZIP, two documents with
    chunks, a connection between them and a highlight."""
    job = h.new(store, user="alice")
    export = h.running(store, "export_documents", user="alice")
    key = f"exports/alice/rhizome-export-{export.id}.zip"
    storage.put(key, b"PK\x05\x06" + b"\x00" * 18)
    store.complete(h.WORKER, [(export.id, {"path": key, "download_url": "x"})])
    trees, trees_chunks = h.document_with_chunks(store, storage, user="alice", title="Trees")
    rivers, rivers_chunks = h.document_with_chunks(
        store, storage, user="alice", title="Rivers", texts=("Rivers carry water.",)
    )
    Curation(store).save_detection(
        trees.id,
        "alice",
        [
            {
                "source_chunk_id": trees_chunks[0].id,
                "target_chunk_id": rivers_chunks[0].id,
                "source_document_id": trees.id,
                "target_document_id": rivers.id,
                "source_text": trees_chunks[0].text,
                "target_text": rivers_chunks[0].text,
                "scores": {"semantic": 0.9},
                "combined": 0.9,
                "reason": "similar content",
            }
        ],
        compared=1,
    )
    [connection] = Curation(store).search("alice").items
    content = storage.get(f"{trees.storage_folder}/content.md").decode()
    highlight = Highlights(store).create(
        trees.id, "alice", text="First chunk about trees.", start=None, end=None, content=content
    )
    return {
        "job_id": job.id,
        "export_id": export.id,
        "export_key": key,
        "document_id": trees.id,
        "other_document_id": rivers.id,
        "chunk_id": trees_chunks[0].id,
        "connection_id": connection.id,
        "highlight_id": highlight.id,
    }


def _secrets(alice: dict[str, Any]) -> list[str]:
    return [v for k, v in alice.items() if k != "export_key"] + ["First chunk about trees"]


def _assert_untouched(store: SqlJobStore, storage: LocalStorage, alice: dict[str, Any]) -> None:
    assert store.get(alice["job_id"], "alice").status is JobStatus.PENDING
    assert store.get(alice["export_id"], "alice").status is JobStatus.COMPLETED
    assert storage.exists(alice["export_key"])
    Library(store).get_document(alice["document_id"], "alice")
    Library(store).get_document(alice["other_document_id"], "alice")
    Highlights(store).get(alice["highlight_id"], "alice")
    detail = Curation(store).get(alice["connection_id"], "alice")
    assert not detail.validated and not detail.rejected


def _routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every route, pages included (FastAPI may keep included routers
    as lazy branches: walk into them)."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out += _routes(inner.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            out += [(m, prefix + route.path) for m in sorted(route.methods - {"HEAD"})]
    return out


def _routes_with_ids(web: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p in _routes(web.routes) if "{" in p]


def test_every_route_with_an_id_refuses_another_user(
    client: TestClient,
    web: tuple[App, FastAPI],
    store: SqlJobStore,
    storage: LocalStorage,
    alice: dict[str, Any],
) -> None:
    values = {
        "job_id": alice["job_id"],
        "document_id": alice["document_id"],
        "highlight_id": alice["highlight_id"],
        "connection_id": alice["connection_id"],
        "chunk_id": alice["chunk_id"],
        "action": "validate",
    }
    exports = {"/api/exports/{job_id}/download"}  # the export job, not the pending one
    routes = _routes_with_ids(web[1])
    assert len(routes) >= 20
    secrets = _secrets(alice)
    for method, template in routes:
        names = re.findall(r"\{(\w+)(?::\w+)?\}", template)
        missing = [n for n in names if n not in values]
        assert not missing, f"{method} {template}: add a value of alice's for {missing}"
        path = template
        for name in names:
            value = alice["export_id"] if template in exports else values[name]
            path = re.sub(r"\{" + name + r"(?::\w+)?\}", value, path)
        body = BODIES.get((method, template), {} if method in ("POST", "PUT", "PATCH") else None)
        r = client.request(method, path, json=body, headers={**BOB, "accept": "application/json"})
        assert r.status_code in (403, 404), (method, template, r.status_code, r.text[:300])
        leaked = [s for s in secrets if s in r.text and s not in path]
        assert not leaked, (method, template, leaked)
    _assert_untouched(store, storage, alice)
    # and alice herself gets through (the check is ownership, not a blanket refusal)
    assert client.get(f"/api/documents/{alice['document_id']}", headers=ALICE).status_code == 200
    r = client.get(f"/api/exports/{alice['export_id']}/download", headers=ALICE)
    assert r.status_code == 200


def test_ids_in_bodies_and_queries_are_checked(
    client: TestClient, store: SqlJobStore, storage: LocalStorage, alice: dict[str, Any]
) -> None:
    doc, job, export = alice["document_id"], alice["job_id"], alice["export_id"]
    secrets = _secrets(alice)
    refused = [
        ("POST", "/api/exports", {"document_ids": [doc]}),
        ("POST", "/api/imports", {"export_job_id": export}),
        ("POST", "/api/imports", {"document_id": doc}),
        ("POST", "/api/imports", {"upload": alice["export_key"]}),
        ("POST", "/api/imports", {"upload": "imports/alice/some.zip"}),
        ("POST", "/api/imports", {"upload": "imports/bob/../alice/some.zip"}),
        ("POST", "/api/connections/reprocess", {"document_ids": [doc]}),
    ]
    for method, path, body in refused:
        r = client.request(method, path, json=body, headers=BOB)
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        assert not [s for s in secrets if s in r.text and s not in str(body) + path], path
    r = client.get(f"/api/connections?document_id={doc}", headers=BOB)
    assert r.status_code in (200, 404) and alice["connection_id"] not in r.text
    r = client.get(f"/api/highlights?document_id={doc}", headers=BOB)
    assert r.status_code in (200, 404) and "trees" not in r.text.lower()
    r = client.get(f"/api/documents/{doc}/highlights", headers=BOB)
    assert r.status_code in (200, 404) and alice["highlight_id"] not in r.text
    r = client.post("/api/jobs/bulk", json={"action": "delete", "ids": [job, export]}, headers=BOB)
    assert r.status_code == 200 and r.json()["count"] == 0
    r = client.get("/api/exports", headers=BOB)
    assert export not in r.text
    _assert_untouched(store, storage, alice)


def test_forged_job_inputs_are_refused(
    client: TestClient, store: SqlJobStore, storage: LocalStorage, alice: dict[str, Any]
) -> None:
    doc = alice["document_id"]
    bobs, _ = h.document_with_chunks(store, storage, user="bob", title="Bob's")

    def enqueue(job_type: str, data: dict[str, Any]) -> Any:
        return client.post("/api/jobs", json={"type": job_type, "input": data}, headers=BOB)

    # internal job types: never from POST /api/jobs, whatever their input
    source = f"documents/alice/{doc}/content.md"
    for job_type, data in (
        ("process_document", {"document_id": bobs.id, "source_key": source}),
        ("process_document", {"document_id": bobs.id}),
        ("import_document", {"zip_key": alice["export_key"]}),
        ("import_document", {"document_id": doc, "strategy": "replace"}),
    ):
        r = enqueue(job_type, data)
        assert r.status_code == 403, (job_type, r.text)
        assert "started by the server itself" in r.json()["error"]["message"]
    # public types: inputs naming another user's things
    for job_type, data in (
        ("detect_connections", {"document_id": doc}),
        ("reprocess_connections", {"document_ids": [bobs.id, doc]}),
        ("export_documents", {"document_ids": [doc]}),
    ):
        r = enqueue(job_type, data)
        assert r.status_code == 404, (job_type, r.text)
        assert doc in r.json()["error"]["message"]
    assert store.list_jobs(user_id="bob") == []
    # the same inputs naming bob's own document are fine
    for job_type, data in (
        ("detect_connections", {"document_id": bobs.id}),
        ("reprocess_connections", {"document_ids": [bobs.id]}),
        ("export_documents", {"document_ids": [bobs.id]}),
        ("noop", {}),
    ):
        assert enqueue(job_type, data).status_code == 201, job_type
    types = {t["name"]: t for t in client.get("/api/job-types").json()["job_types"]}
    assert types["process_document"]["public"] is False
    assert types["detect_connections"]["public"] is True
    _assert_untouched(store, storage, alice)


def test_every_public_job_type_declares_the_inputs_that_name_things() -> None:
    """An input field that names a document, job, chunk, highlight or connection (``*_id``,
    ``*_ids``) or a storage key (``*_key``) is checked by the API: it is declared in the
    type's ``owned``, or the type is internal (not public)."""
    naming = re.compile(r"(^|_)(document|job|chunk|highlight|connection)_ids?$|(^|_)key$")
    problems = []
    for jt in registry.all():
        for kind in jt.owned.values():
            assert kind in CHECKS, (jt.name, kind)
        if not jt.public:
            continue
        for field in jt.input_model.model_fields:
            if naming.search(field) and field not in jt.owned:
                problems.append(f"{jt.name}.{field}")
    assert problems == [], "declare owned={field: kind} (or public=False) for: " + ", ".join(
        problems
    )


def test_storage_keys_outside_the_users_folders_are_refused() -> None:
    for ok in ("documents/bob/x/source.txt", "imports/bob/a.zip", "exports/bob/e.zip"):
        check_storage_key(ok, "bob")
    for bad in (
        "documents/alice/x/source.txt",
        "imports/bob/../alice/a.zip",
        "imports/bob/./a.zip",
        "imports//bob/a.zip",
        "jobs/123/stage-x.json",
        "imports/bob",
        "/imports/bob/a.zip",
        "imports/bob/a\\..\\b.zip",
        "documents/bob-evil/x",
    ):
        with pytest.raises(ForbiddenError):
            check_storage_key(bad, "bob")
