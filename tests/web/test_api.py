"""The HTTP API on both stores: every endpoint, its happy path and its bad requests (clear
4xx with an error body, never a 500)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rhizome.app import App
from rhizome.jobs.model import JobStatus
from rhizome.jobs.registry import registry
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.storage import LocalStorage
from tests.helpers import Background, make_worker, wait_status
from tests.web import helpers as h

MISSING = str(uuid.uuid4())


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) >= {"type", "message", "hint"}, body
    assert body["error"]["message"]
    return dict(body["error"])


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [j["id"] for j in response.json()["jobs"]]


# --- ops ------------------------------------------------------------------------------------------


def test_health_metrics_openapi(client: TestClient, store: SqlJobStore) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["checks"]["storage"] == "ok"

    h.new(store, "reprocess_connections")
    h.failed(store, retry_in=60)
    text = client.get("/metrics").text
    assert 'rhizome_jobs{job_type="reprocess_connections",status="pending"} 1.0' in text
    assert 'rhizome_jobs_retry_scheduled{job_type="noop"} 1.0' in text
    assert "# TYPE rhizome_job_claim_latency_seconds histogram" in text  # lifetime
    assert "rhizome_worker_heartbeat_age_seconds" in text
    assert "rhizome_database_up 1.0" in text

    with TestClient(client.app) as live:  # with its lifespan: the change feed starts
        assert live.get("/healthz").json()["checks"]["live_updates"] in ("ok", "starting")
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/bulk",
        "/api/events",
        "/api/documents",
        "/api/admin/nuclear-reset",
        "/api/queue/pause",
        "/healthz",
        "/metrics",
    ):
        assert path in paths, path
    assert "/jobs" not in paths  # pages are not API


def test_healthz_reports_a_broken_storage(store: SqlJobStore, tmp_path: Any, db_url: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from tests.web.conftest import make_web

    _, web = make_web(store, LocalStorage(blocker / "storage"), db_url)
    with TestClient(web) as c:
        r = c.get("/healthz")
    assert r.status_code == 503
    assert r.json()["checks"]["storage"].startswith("error")


# --- jobs: list, filter, show ---------------------------------------------------------------------


def test_list_filters_search_and_counts(client: TestClient, store: SqlJobStore) -> None:
    imp = h.new(store, "reprocess_connections", input_data={"title": "Moby Dick"})
    exp = h.new(store, "detect_connections")
    chunking = h.running(store, "process_document", stage="chunk", percent=37, details="Chunk 3")
    pausing = h.running(store, "detect_connections", stage="apply")
    store.request_pause(pausing.id)
    retrying = h.failed(store, "reprocess_connections", retry_in=300)
    dead = h.failed(store, "process_document")
    paused = h.paused(store, "detect_connections")
    h.finished(store, "reprocess_connections")
    noop = h.new(store, "noop")
    doc = Library(store).create_document(user_id="local", title="Whale Songs", source_type="text")
    of_doc = h.new(store, "process_document", entity_type="document", entity_id=doc.id)

    listed = client.get("/api/jobs").json()["jobs"]
    everything = [j["id"] for j in listed]
    assert noop.id not in everything  # hidden type
    created = [j["created_at"] for j in listed]
    assert created == sorted(created, reverse=True)  # newest first
    assert len(everything) == 9
    assert noop.id in ids(client.get("/api/jobs?include_hidden=true"))
    assert ids(client.get("/api/jobs?type=noop")) == [noop.id]  # asked for by name

    assert set(ids(client.get("/api/jobs?type=reprocess_connections"))) == {
        imp.id,
        retrying.id,
    } | {j["id"] for j in listed if j["status"] == "completed"}
    assert set(ids(client.get("/api/jobs?type=detect_connections,process_document"))) == {
        exp.id,
        pausing.id,
        paused.id,
        chunking.id,
        dead.id,
        of_doc.id,
    }
    assert set(ids(client.get("/api/jobs?type=detect_connections&type=noop"))) == {
        exp.id,
        pausing.id,
        paused.id,
        noop.id,
    }
    assert ids(client.get("/api/jobs?status=pausing")) == [pausing.id]
    assert set(ids(client.get("/api/jobs?status=processing"))) == {chunking.id, pausing.id}
    assert ids(client.get("/api/jobs?status=retrying")) == [retrying.id]
    assert ids(client.get("/api/jobs?status=failed")) == [dead.id]  # not the retrying one
    assert set(ids(client.get("/api/jobs?status=failed,retrying"))) == {dead.id, retrying.id}
    assert ids(client.get("/api/jobs?status=paused")) == [paused.id]
    assert set(ids(client.get("/api/jobs?status=active"))) == {
        imp.id,
        exp.id,
        chunking.id,
        pausing.id,
        of_doc.id,
    }
    assert ids(client.get("/api/jobs?stage=chunk")) == [chunking.id]
    assert ids(client.get("/api/jobs?stage=chunk&status=completed")) == []
    assert ids(client.get("/api/jobs?q=moby")) == [imp.id]
    assert ids(client.get("/api/jobs?q=whale")) == [of_doc.id]  # the document's title
    assert ids(client.get("/api/jobs?q=Chunk%203")) == [chunking.id]
    assert ids(client.get("/api/jobs?q=100%25")) == []  # LIKE wildcards are literal
    assert ids(client.get("/api/jobs?q=" + dead.short_id)) == [dead.id]  # its short id

    r = client.get("/api/jobs?limit=3&offset=0").json()
    assert r["total"] == 9 and len(r["jobs"]) == 3
    page2 = ids(client.get("/api/jobs?limit=3&offset=3"))
    assert not set(page2) & {j["id"] for j in r["jobs"]}

    counts = client.get("/api/jobs?status=failed").json()["counts"]
    assert counts["by_type"] == {"process_document": 1}  # under status
    assert counts["by_status"]["failed"] == 1 and counts["by_status"]["retrying"] == 1
    assert counts["by_status"]["pausing"] == 1 and counts["by_status"]["processing"] == 2
    assert counts["by_status"]["active"] == 5 and counts["by_status"]["completed"] == 1
    assert counts["total"] == 1
    assert client.get("/api/jobs").json()["counts"]["by_stage"] == {"chunk": 1, "apply": 1}

    job = client.get("/api/jobs?status=pausing").json()["jobs"][0]
    assert job["status_label"] == "pausing" and job["status_text"] == "Pausing…"
    assert job["type_label"] == "Detecting" and job["type_icon"] == "git-branch"
    job = client.get("/api/jobs?type=process_document&stage=chunk").json()["jobs"][0]
    assert job["percent"] == 37 and job["details"] == "Chunk 3"
    assert job["type_label"] == "Ingest" and job["type_icon"] == "zap"
    [job] = client.get("/api/jobs?q=whale").json()["jobs"]
    assert job["title"] == "Whale Songs"


def test_unregistered_types_are_listed_but_never_offered_as_filters(
    client: TestClient, store: SqlJobStore
) -> None:
    ghost = h.new(store, "ghost_import", input_data={})
    [job] = client.get("/api/jobs?status=pending").json()["jobs"]
    assert job["id"] == ghost.id
    assert job["type_label"] == "Ghost import" and job["type_icon"] == "box"
    assert job["title"] == "Ghost import"
    err = error_of(client.get("/api/jobs?type=ghost_import"), 422)
    assert "ghost_import" not in err["hint"] and "process_document" in err["hint"]
    types = [t["name"] for t in client.get("/api/job-types").json()["job_types"]]
    assert "ghost_import" not in types
    page = client.get("/jobs", headers={"accept": "text/html"}).text
    assert 'data-filter-type="ghost_import"' not in page
    assert 'data-filter-type="process_document"' in page


def test_bad_filters_and_paging(client: TestClient) -> None:
    assert error_of(client.get("/api/jobs?status=bogus"), 422)["type"] == "InvalidInputError"
    err = error_of(client.get("/api/jobs?type=nope"), 422)
    assert "process_document" in err["hint"]
    error_of(client.get("/api/jobs?limit=0"), 422)
    error_of(client.get("/api/jobs?limit=100000"), 422)
    error_of(client.get("/api/jobs?offset=-1"), 422)
    error_of(client.get("/api/jobs?offset=99999999999999999999"), 422)
    error_of(client.get("/api/jobs?include_hidden=maybe"), 422)
    error_of(client.get("/api/jobs?stage=" + "x" * 101), 422)
    error_of(client.get("/api/jobs?stage=%00"), 422)
    assert client.get("/api/jobs?q=%ED%A0%80").status_code == 200  # decoded as U+FFFD


def test_show_job_with_stages_timeline_worker_and_checkpoint(
    client: TestClient, store: SqlJobStore, storage: LocalStorage
) -> None:
    job = h.new(store, "noop", input_data={"stages": 2, "units": 3, "sleep_ms": 100})
    with Background(make_worker(store, storage, progress_interval=0.0)):
        h.wait_for_percent(store, job.id, 30)
        assert client.post(f"/api/jobs/{job.id}/pause").status_code == 200
        wait_status(store, job.id, JobStatus.PAUSED)
    detail = client.get(f"/api/jobs/{job.id}").json()["job"]
    assert detail["status"] == "paused"
    assert [s["name"] for s in detail["stages"]] == ["step-1", "step-2"]
    assert detail["stages"][0]["start"] == 0 and detail["stages"][1]["end"] == 100
    cp = detail["checkpoint"]
    assert cp["resumable"] and cp["stage"].startswith("step-")
    assert len(cp["sha256"]) == 64 and cp["size"] > 0 and cp["at"]
    assert cp["path"].startswith(f"jobs/{job.id}/")
    messages = [e["message"] for e in detail["events"]]
    assert "created" in messages and "pause requested" in messages
    assert detail["worker_id"]
    events = client.get(f"/api/jobs/{job.id}/events").json()["events"]
    assert [e["id"] for e in events] == [e["id"] for e in detail["events"]]


def test_show_failed_job_with_retry_and_guidance(client: TestClient, store: SqlJobStore) -> None:
    job = h.failed(store, "process_document", retry_in=180)
    detail = client.get(f"/api/jobs/{job.id}").json()["job"]
    assert detail["status_label"] == "retrying"
    assert detail["retry"]["attempt"] == 1 and detail["retry"]["of"] == 3
    assert 100 < detail["retry"]["in_seconds"] <= 180
    assert "retries automatically" in detail["error_guidance"]
    assert detail["last_error"] == "Traceback: boom"
    dead = h.failed(store)
    assert "Fix the input" in client.get(f"/api/jobs/{dead.id}").json()["job"]["error_guidance"]


def test_unknown_job_ids(client: TestClient) -> None:
    for method, path in (
        ("GET", "/api/jobs/{}"),
        ("GET", "/api/jobs/{}/events"),
        ("POST", "/api/jobs/{}/pause"),
        ("POST", "/api/jobs/{}/resume"),
        ("POST", "/api/jobs/{}/cancel"),
        ("POST", "/api/jobs/{}/retry"),
        ("POST", "/api/jobs/{}/force-fail"),
        ("POST", "/api/jobs/{}/cancel-and-delete"),
        ("DELETE", "/api/jobs/{}"),
    ):
        for job_id in (MISSING, "not-a-uuid", "%00"):
            r = client.request(method, path.format(job_id))
            assert error_of(r, 404)["type"] == "JobNotFoundError", (method, path, job_id)


# --- jobs: enqueue and control --------------------------------------------------------------------


def test_enqueue(client: TestClient, store: SqlJobStore) -> None:
    r = client.post("/api/jobs", json={"type": "noop", "input": {"units": 2}, "priority": 5})
    assert r.status_code == 201
    [job] = r.json()["jobs"]
    assert job["status"] == "pending" and job["priority"] == 5 and job["hidden"]
    assert store.get(job["id"]).input_data == {"units": 2}
    r = client.post("/api/jobs", json={"type": "noop", "count": 3, "dedupe_key": "k"})
    assert len({j["id"] for j in r.json()["jobs"]}) == 1  # one unfinished job per key
    later = client.post("/api/jobs", json={"type": "noop", "run_at": "2999-01-01T00:00:00"})
    assert later.json()["jobs"][0]["run_at"].startswith("2999-01-01T00:00:00")


@pytest.mark.parametrize(
    "body",
    [
        {"type": "nope"},
        {"type": "noop", "input": {"bogus": 1}},
        {"type": "noop", "input": {"units": -1}},
        {"type": "noop", "input": []},
        {"type": "noop", "extra": True},
        {"type": "noop", "priority": 10**12},
        {"type": "noop", "count": 0},
        {"type": "noop", "count": 100000},
        {"type": "noop", "run_at": "0001-01-01T00:00:00+01:00"},
        {"type": "noop", "dedupe_key": "a\u0000b"},
        {"type": "NOOP"},
        {},
    ],
)
def test_enqueue_rejects_bad_input(client: TestClient, body: dict[str, Any]) -> None:
    error_of(client.post("/api/jobs", json=body), 422)


def test_enqueue_rejects_bad_json_values(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    for raw in (
        b'{"type": "noop", "input": {"x": NaN}}',
        b'{"type": "noop", "input": {"x": "a\\u0000"}}',
        b'{"type": "noop", "input": {"\\ud800": 1}}',
        b'{"type": "noop", "dedupe_key": "\\udfff"}',
        b'{"type": "noop", "input": ' + b"[" * 100 + b"]" * 100 + b"}",
        b"{not json",
        b"",
    ):
        error_of(client.post("/api/jobs", content=raw, headers=headers), 422)


def test_wrong_content_types(client: TestClient) -> None:
    err = error_of(
        client.post("/api/jobs", content=b"type=noop", headers={"content-type": "text/plain"}),
        415,
    )
    assert "application/json" in err["message"]
    error_of(client.post("/api/jobs", data={"type": "noop"}), 415)
    error_of(
        client.post("/api/documents", json={"files": []}),
        415,
    )
    error_of(client.post("/api/documents/url", data={"url": "https://x.org"}), 415)


def test_job_controls(client: TestClient, store: SqlJobStore) -> None:
    job = h.new(store)
    assert (
        client.post(f"/api/jobs/{job.id}/pause", json={"reason": "lunch"}).json()["job"]["status"]
        == "paused"
    )
    assert store.get(job.id).pause_reason == "lunch"
    err = error_of(client.post(f"/api/jobs/{job.id}/pause"), 409)
    assert err["type"] == "IllegalTransitionError"
    r = client.post(f"/api/jobs/{job.id}/resume", json={"restart": True})
    assert r.json()["job"]["status"] == "pending" and r.json()["job"]["resume_count"] == 1
    error_of(client.post(f"/api/jobs/{job.id}/resume"), 409)
    assert client.post(f"/api/jobs/{job.id}/cancel").json()["job"]["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job.id}/retry").json()["job"]["status"] == "pending"
    assert client.post(f"/api/jobs/{job.id}/force-fail").json()["job"]["status"] == "failed"
    assert client.post(f"/api/jobs/{job.id}/retry", json={"restart": True}).status_code == 200
    error_of(client.post(f"/api/jobs/{job.id}/retry"), 409)
    error_of(client.post(f"/api/jobs/{job.id}/resume", json={"restart": "maybe"}), 422)
    error_of(client.post(f"/api/jobs/{job.id}/pause", json={"reason": ""}), 422)
    assert client.delete(f"/api/jobs/{job.id}").json() == {"deleted": job.id}
    error_of(client.get(f"/api/jobs/{job.id}"), 404)

    run = h.running(store)
    r = client.post(f"/api/jobs/{run.id}/pause")
    assert r.json()["job"]["status_label"] == "pausing"
    r = client.post(f"/api/jobs/{run.id}/cancel")
    assert r.json()["job"]["status_label"] == "cancelling"
    assert client.post(f"/api/jobs/{run.id}/cancel-and-delete").json() == {"deleted": run.id}


def test_bulk_actions(client: TestClient, store: SqlJobStore) -> None:
    a, b, c = (h.new(store, "reprocess_connections") for _ in range(3))
    other = h.new(store, "detect_connections")
    done = h.finished(store, "detect_connections")
    r = client.post("/api/jobs/bulk", json={"action": "pause", "ids": [a.id, b.id, done.id]})
    assert r.status_code == 200
    body = r.json()
    assert sorted(body["done"]) == sorted([a.id, b.id]) and body["count"] == 2
    assert list(body["skipped"]) == [done.id] and "completed" in body["skipped"][done.id]

    r = client.post(
        "/api/jobs/bulk",
        json={
            "action": "resume",
            "filter": {"type": ["reprocess_connections"], "status": ["paused"]},
        },
    )
    assert sorted(r.json()["done"]) == sorted([a.id, b.id])
    r = client.post("/api/jobs/bulk", json={"action": "cancel", "filter": {"q": other.id}})
    assert r.json()["done"] == [other.id]
    r = client.post(
        "/api/jobs/bulk", json={"action": "delete", "filter": {"status": ["completed"]}}
    )
    assert r.json()["done"] == [done.id]
    r = client.post("/api/jobs/bulk", json={"action": "retry", "ids": [MISSING]})
    assert r.json()["count"] == 0 and MISSING in r.json()["skipped"]
    r = client.post("/api/jobs/bulk", json={"action": "delete", "all": True})
    assert sorted(r.json()["done"]) == sorted([a.id, b.id, c.id, other.id])
    assert client.get("/api/jobs?include_hidden=1").json()["total"] == 0

    error_of(client.post("/api/jobs/bulk", json={"action": "pause"}), 422)
    error_of(client.post("/api/jobs/bulk", json={"action": "explode", "all": True}), 422)
    error_of(client.post("/api/jobs/bulk", json={"action": "pause", "ids": ["x"]}), 422)
    error_of(client.post("/api/jobs/bulk", json={"action": "pause", "filter": {}}), 422)
    error_of(
        client.post("/api/jobs/bulk", json={"action": "pause", "filter": {"status": ["x"]}}),
        422,
    )
    error_of(
        client.post("/api/jobs/bulk", json={"action": "pause", "filter": {"type": ["nope"]}}),
        422,
    )


# --- queue, job types, workers --------------------------------------------------------------------


def test_queue_and_type_pause(client: TestClient, store: SqlJobStore) -> None:
    assert client.get("/api/queue").json() == {"paused": False, "controls": {}}
    r = client.post("/api/queue/pause", json={"reason": "maintenance"})
    assert r.json()["queue"]["paused"] is True
    assert client.get("/api/queue").json()["controls"]["*"]["reason"] == "maintenance"
    r = client.post("/api/queue/pause", json={"type": "process_document"})
    assert r.json()["queue"]["controls"]["process_document"]["paused"] is True
    assert client.post("/api/queue/resume", json={"type": "process_document"}).status_code == 200
    assert client.post("/api/queue/resume").json()["queue"]["paused"] is False
    run = h.running(store)
    r = client.post("/api/queue/pause", json={"pause_running": True})
    assert r.json()["paused_jobs"]["done"] == [run.id]
    assert store.get(run.id).pause_requested
    client.post("/api/queue/resume", json={})
    error_of(client.post("/api/queue/pause", json={"type": "nope"}), 422)
    error_of(client.post("/api/queue/resume", json={"type": "nope"}), 422)
    error_of(client.post("/api/queue/pause", json={"type": "Bad Type"}), 422)


def test_job_types_and_workers(client: TestClient, store: SqlJobStore) -> None:
    types = {t["name"]: t for t in client.get("/api/job-types").json()["job_types"]}
    assert set(types) == set(registry.names())  # only registered types are offered
    for name, t in types.items():  # labels and icons come from the registry only
        jt = registry.get(name)
        assert (t["label"], t["icon"], t["registered"]) == (jt.label, jt.icon, True), name
    assert types["noop"]["hidden"] and types["noop"]["registered"]
    assert types["noop"]["input_schema"]["properties"]["units"]
    for name, t in types.items():  # every built-in type declares its own time limit
        assert t["time_limit_seconds"] == registry.get(name).time_limit_seconds, name
        assert 0 < t["time_limit_seconds"] <= 6 * 3600, name
    assert types["process_document"]["time_limit_seconds"] == 2 * 3600
    # a memory limit where a run reads untrusted input in a child process, none elsewhere
    assert types["process_document"]["memory_limit_mb"] == 2048
    assert types["export_documents"]["memory_limit_mb"] is None
    store.register_worker("w-1", "host-a", 42, 4, None)
    workers = client.get("/api/workers").json()["workers"]
    assert workers[0]["id"] == "w-1" and workers[0]["host"] == "host-a"
    assert workers[0]["seen_seconds_ago"] is not None


# --- admin actions --------------------------------------------------------------------------------


def test_admin_actions(client: TestClient, store: SqlJobStore) -> None:
    done = h.finished(store)
    bad = h.failed(store)
    pending = h.new(store)
    r = client.post("/api/admin/clear-completed")
    assert r.json() == {"deleted": 1}
    assert client.post("/api/admin/clear-failed").json() == {"deleted": 1}
    for job in (done, bad):
        error_of(client.get(f"/api/jobs/{job.id}"), 404)

    for path in ("/api/admin/stop-all", "/api/admin/clear-all", "/api/admin/nuclear-reset"):
        err = error_of(client.post(path), 422)
        assert "confirm" in err["hint"]
        error_of(client.post(path, json={"confirm": False}), 422)
    assert client.post("/api/admin/stop-all", json={"confirm": True}).json() == {"stopped": 1}
    assert store.get(pending.id).status is JobStatus.FAILED
    r = client.post("/api/admin/clear-all", json={"confirm": True}).json()
    assert r["deleted"] == 1 and "released_jobs" in r["orphans"]
    h.new(store)
    r = client.post("/api/admin/nuclear-reset", json={"confirm": True}).json()
    assert r["deleted_jobs"] == 1
    r = client.post("/api/admin/fix-orphans").json()
    assert "released_jobs" in r and "removed_checkpoint_files" in r


# --- documents ------------------------------------------------------------------------------------


def test_upload_list_show_delete(
    client: TestClient, store: SqlJobStore, storage: LocalStorage
) -> None:
    files = [
        ("files", ("notes.md", b"# Notes\n\nSome words.", "text/markdown")),
        ("files", ("paper.pdf", b"%PDF-1.4 fake", "application/pdf")),
    ]
    r = client.post("/api/documents", files=files)
    assert r.status_code == 201, r.text
    added = r.json()["documents"]
    assert [a["document"]["title"] for a in added] == ["notes", "paper"]
    assert all(a["job"]["job_type"] == "process_document" for a in added)
    doc_id = added[0]["document"]["id"]
    job_id = added[0]["job"]["id"]
    assert store.get(job_id).entity_id == doc_id

    r = client.post(
        "/api/documents",
        files=[("files", ("x.txt", b"hello", "text/plain"))],
        data={"title": "Greeting"},
    )
    assert r.json()["documents"][0]["document"]["title"] == "Greeting"

    listed = client.get("/api/documents").json()["documents"]
    assert {d["id"] for d in listed} >= {doc_id}
    row = next(d for d in listed if d["id"] == doc_id)
    assert row["job"]["id"] == job_id and row["job"]["status"] == "pending"
    assert client.get("/api/documents?status=ready").json()["documents"] == []

    shown = client.get(f"/api/documents/{doc_id}").json()
    assert shown["document"]["id"] == doc_id and shown["chunks"] == []
    assert [j["id"] for j in shown["jobs"]] == [job_id]
    error_of(client.get(f"/api/documents/{doc_id}/content"), 404)

    folder = Library(store).get_document(doc_id, "local").storage_folder
    assert storage.list(folder)
    r = client.delete(f"/api/documents/{doc_id}")
    assert r.status_code == 200 and r.json()["deleted_jobs"] == [job_id]
    assert storage.list(folder) == []
    error_of(client.get(f"/api/documents/{doc_id}"), 404)
    error_of(client.get(f"/api/jobs/{job_id}"), 404)

    r = client.post("/api/documents/url", json={"url": "https://example.org/a", "title": "A"})
    assert r.status_code == 201 and r.json()["document"]["source_url"] == "https://example.org/a"
    r = client.post("/api/documents/text", json={"text": "Pasted words\nmore"})
    assert r.status_code == 201 and r.json()["document"]["title"] == "Pasted words"


def test_document_with_chunks_connections_and_content(
    client: TestClient, store: SqlJobStore, storage: LocalStorage
) -> None:
    a, a_chunks = h.document_with_chunks(store, storage, title="Trees")
    b, b_chunks = h.document_with_chunks(store, storage, title="Rivers")
    Library(store).replace_connections(
        a.id,
        "local",
        [
            {
                "source_chunk_id": a_chunks[1].id,
                "target_chunk_id": b_chunks[0].id,
                "source_document_id": a.id,
                "target_document_id": b.id,
                "scores": {"semantic": 0.9, "thematic": 0.5},
                "combined": 0.72,
                "reason": "both about water",
            }
        ],
    )
    shown = client.get(f"/api/documents/{a.id}").json()
    assert [c["index"] for c in shown["chunks"]] == [0, 1]
    assert shown["chunks"][0]["text"] == "First chunk about trees."
    [conn] = shown["connections"]
    assert conn["combined_score"] == pytest.approx(0.72)
    assert conn["other_document_title"] == "Rivers" and conn["chunk_index"] == 1
    assert conn["engine_scores"] == {"semantic": 0.9, "thematic": 0.5}
    assert shown["has_content"] is True
    r = client.get(f"/api/documents/{a.id}/content")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.text.startswith("# Trees")
    back = client.get(f"/api/documents/{b.id}").json()["connections"]
    assert back[0]["other_document_title"] == "Trees"

    page = client.get(f"/documents/{a.id}", headers={"accept": "text/html"}).text
    assert "First chunk about trees." in page and "0.72" in page and "Rivers" in page
    assert "<h1>Trees</h1>" in page  # the rendered markdown


def test_document_bad_requests(client: TestClient, web: tuple[App, FastAPI]) -> None:
    for method, path in (
        ("GET", "/api/documents/{}"),
        ("GET", "/api/documents/{}/content"),
        ("DELETE", "/api/documents/{}"),
    ):
        for doc_id in (MISSING, "nope"):
            r = client.request(method, path.format(doc_id))
            assert error_of(r, 404)["type"] == "DocumentNotFoundError"
    error_of(client.get("/api/documents?status=weird"), 422)
    error_of(client.get("/api/documents?limit=0"), 422)
    error_of(client.post("/api/documents/url", json={"url": "ftp://x"}), 422)
    error_of(client.post("/api/documents/url", json={}), 422)
    error_of(client.post("/api/documents/text", json={"text": ""}), 422)
    error_of(client.post("/api/documents/text", json={"text": "   "}), 422)
    # the web fixture allows 200 kB per file
    big = [("files", ("big.txt", b"x" * 300_000, "text/plain"))]
    assert error_of(client.post("/api/documents", files=big), 413)["type"] == (
        "PayloadTooLargeError"
    )
    huge = [("files", ("huge.txt", b"x" * 2_000_000, "text/plain"))]
    assert error_of(client.post("/api/documents", files=huge), 413)["type"] == "RequestTooLarge"
    empty = [("files", ("empty.pdf", b"", "application/pdf"))]
    assert "empty" in error_of(client.post("/api/documents", files=empty), 422)["message"]
    binary = [("files", ("blob.bin", bytes(range(256)) * 10, "application/octet-stream"))]
    error_of(client.post("/api/documents", files=binary), 415)
    error_of(client.post("/api/documents", data={"title": "no files"}, files={}), 415)
    r = client.post(
        "/api/documents",
        content=b"--b\r\nContent-Disposition: form-data; name=title\r\n\r\nx\r\n--b--\r\n",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    error_of(r, 422)
    r = client.post(
        "/api/documents",
        content=b"garbage",
        headers={"content-type": "multipart/form-data; boundary=zz"},
    )
    assert r.status_code in (400, 422)
    error_of(
        client.post(
            "/api/documents", content=b"x", headers={"content-type": "multipart/form-data"}
        ),
        422,
    )


# --- users ----------------------------------------------------------------------------------------


def test_users_see_only_their_own(
    client: TestClient, store: SqlJobStore, storage: LocalStorage
) -> None:
    alice = {"X-Rhizome-User": "alice"}
    bob = {"X-Rhizome-User": "bob"}
    mine = client.post("/api/jobs", json={"type": "noop"}, headers=alice).json()["jobs"][0]
    doc, _ = h.document_with_chunks(store, storage, user="alice")
    assert ids(client.get("/api/jobs?include_hidden=1", headers=alice)) == [mine["id"]]
    assert ids(client.get("/api/jobs?include_hidden=1", headers=bob)) == []
    assert ids(client.get("/api/jobs?include_hidden=1")) == []  # "local"
    error_of(client.get(f"/api/jobs/{mine['id']}", headers=bob), 404)
    error_of(client.get(f"/api/jobs/{mine['id']}/events", headers=bob), 404)
    for action in ("pause", "cancel", "resume", "retry", "force-fail", "cancel-and-delete"):
        error_of(client.post(f"/api/jobs/{mine['id']}/{action}", headers=bob), 404)
    error_of(client.delete(f"/api/jobs/{mine['id']}", headers=bob), 404)
    r = client.post("/api/jobs/bulk", json={"action": "delete", "ids": [mine["id"]]}, headers=bob)
    assert r.json()["count"] == 0
    client.post("/api/jobs/bulk", json={"action": "delete", "all": True}, headers=bob)
    client.post("/api/admin/clear-all", json={"confirm": True}, headers=bob)
    client.post("/api/admin/nuclear-reset", json={"confirm": True}, headers=bob)
    assert store.get(mine["id"]).status is JobStatus.PENDING

    assert client.get("/api/documents", headers=bob).json()["documents"] == []
    assert [d["id"] for d in client.get("/api/documents", headers=alice).json()["documents"]] == [
        doc.id
    ]
    error_of(client.get(f"/api/documents/{doc.id}", headers=bob), 404)
    error_of(client.delete(f"/api/documents/{doc.id}", headers=bob), 404)
    assert (
        client.get(f"/jobs/{mine['id']}", headers={**bob, "accept": "text/html"}).status_code == 404
    )
    assert client.get(f"/documents/{doc.id}", headers=bob).status_code == 404

    for bad in (b"", b" x", b"a/b", b"x" * 65, "ünï".encode("latin-1"), b"a\tb"):
        error_of(client.get("/api/jobs", headers={"X-Rhizome-User": bad}), 422)


# --- pages ----------------------------------------------------------------------------------------


def test_pages_render(client: TestClient, store: SqlJobStore, storage: LocalStorage) -> None:
    running = h.running(
        store, "process_document", stage="embed", percent=55, details="Embedding chunk 234 of 1,412"
    )
    retrying = h.failed(store, "reprocess_connections", retry_in=180)
    html = {"accept": "text/html"}
    lib = client.get("/", headers=html)
    assert lib.status_code == 200 and 'id="dock"' in lib.text
    jobs = client.get("/jobs", headers=html).text
    assert 'id="dock"' not in jobs  # no dock on the Jobs panel
    for jt in registry.all():  # a chip per registered (visible) type, with its label
        assert (f'{jt.label} <span class="count">' in jobs) is not jt.hidden, jt.name
    assert "Clear completed" in jobs and "Nuclear reset" in jobs
    assert 'data-filter-stage="embed"' in jobs
    assert client.get("/jobs?status=retrying&partial=1").text.count('class="job-row"') == 1
    assert client.get("/jobs?type=nope", headers=html).status_code == 422
    detail = client.get(f"/jobs/{running.id}", headers=html).text
    assert "Embedding chunk 234 of 1,412" in detail and "55%" in detail
    detail = client.get(f"/jobs/{retrying.id}", headers=html).text
    assert "retry 1 of 3 in" in detail
    assert client.get(f"/jobs/{MISSING}", headers=html).status_code == 404
    assert "No job with id" in client.get(f"/jobs/{MISSING}", headers=html).text
    assert client.get("/nowhere", headers=html).status_code == 404
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_method_not_allowed_and_unknown_routes(client: TestClient) -> None:
    assert error_of(client.put("/api/jobs"), 405)["type"] == "MethodNotAllowed"
    assert error_of(client.get("/api/nothing"), 404)["type"] == "NotFound"
