"""Connection curation over HTTP and in the pages: the library-wide list with filters,
sorting and counts per state; validate / star / reject and their undo; the document
page's connections (both passages, per-engine scores, the detection state); the
Connections page; queuing a reprocess and its counts on the job page. Both stores."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.library.connections import Curation
from rhizome.storage import LocalStorage
from tests.web import helpers as h


def _found(
    a: Any, b: Any, pairs: list[tuple[int, int, dict[str, float], float, str]]
) -> list[dict[str, Any]]:
    doc_a, chunks_a = a
    doc_b, chunks_b = b
    return [
        {
            "source_chunk_id": chunks_a[i].id,
            "target_chunk_id": chunks_b[j].id,
            "source_document_id": doc_a.id,
            "target_document_id": doc_b.id,
            "source_text": chunks_a[i].text,
            "target_text": chunks_b[j].text,
            "scores": scores,
            "combined": combined,
            "reason": reason,
        }
        for i, j, scores, combined, reason in pairs
    ]


@pytest.fixture
def library(store: SqlJobStore, storage: LocalStorage) -> dict[str, Any]:
    """Three documents; trees ↔ rivers with three connections, trees ↔ stones with one."""
    trees = h.document_with_chunks(store, storage, title="Trees")
    rivers = h.document_with_chunks(
        store, storage, title="Rivers", texts=("Rivers carry water.", "Floods feed the plain.")
    )
    stones = h.document_with_chunks(store, storage, title="Stones", texts=("Stones are old.",))
    curation = Curation(store)
    curation.save_detection(
        trees[0].id,
        "local",
        _found(
            trees,
            rivers,
            [
                (0, 0, {"semantic": 0.9}, 0.9, "similar content (cosine 0.90)"),
                (1, 1, {"semantic": 0.6, "contradiction": 0.5}, 0.538462, "opposing stance"),
                (1, 0, {"thematic": 0.7}, 0.7, "bridging theme 'water'"),
            ],
        )
        + _found(trees, stones, [(0, 0, {"thematic": 0.4}, 0.4, "bridging theme 'age'")]),
        compared=2,
    )
    ids = {c.combined_score: c.id for c in curation.search("local").items}
    return {"trees": trees[0], "rivers": rivers[0], "stones": stones[0], "ids": ids}


def test_list_filter_sort_and_decide(client: TestClient, library: dict[str, Any]) -> None:
    r = client.get("/api/connections")
    assert r.status_code == 200
    body = r.json()
    assert [c["combined_score"] for c in body["connections"]] == [0.9, 0.7, 0.538462, 0.4]
    assert body["total"] == 4 and body["counts"]["visible"] == 4
    first = body["connections"][0]
    assert first["source_text"] == "First chunk about trees."
    assert first["target_text"] == "Rivers carry water." and first["target_title"] == "Rivers"
    rows = {r["engine"]: r["score"] for r in first["engine_rows"]}
    assert rows == {"semantic": 0.9, "contradiction": None, "thematic": None}

    low = client.get("/api/connections", params={"sort": "score_asc"}).json()["connections"]
    assert [c["combined_score"] for c in low] == [0.4, 0.538462, 0.7, 0.9]
    thematic = client.get("/api/connections", params={"engine": "thematic"}).json()
    assert [c["combined_score"] for c in thematic["connections"]] == [0.7, 0.4]
    strong = client.get("/api/connections", params={"min_score": 0.6}).json()
    assert strong["total"] == 2
    stones = library["stones"].id
    of_stones = client.get("/api/connections", params={"document_id": stones}).json()
    assert [c["combined_score"] for c in of_stones["connections"]] == [0.4]

    ids = library["ids"]
    r = client.post(f"/api/connections/{ids[0.9]}/validate")
    assert r.status_code == 200 and r.json()["connection"]["states"] == ["validated"]
    client.post(f"/api/connections/{ids[0.7]}/star")
    r = client.post(f"/api/connections/{ids[0.4]}/reject")
    assert r.json()["connection"]["rejected"] is True
    body = client.get("/api/connections").json()
    assert body["total"] == 3  # the rejected one is hidden
    assert body["counts"] == {
        "total": 4,
        "visible": 3,
        "validated": 1,
        "starred": 1,
        "rejected": 1,
        "undecided": 1,
    }
    for state, expected in (
        ("validated", [0.9]),
        ("starred", [0.7]),
        ("rejected", [0.4]),
        ("undecided", [0.538462]),
        ("all", [0.9, 0.7, 0.538462, 0.4]),
    ):
        got = client.get("/api/connections", params={"state": state}).json()["connections"]
        assert [c["combined_score"] for c in got] == expected, state
    decided = client.get("/api/connections", params={"sort": "decided", "state": "all"}).json()
    assert decided["connections"][0]["id"] == ids[0.4]  # the latest decision first

    # star lifts a rejection; reject clears validated and starred; reset clears all
    r = client.post(f"/api/connections/{ids[0.4]}/star").json()["connection"]
    assert r["states"] == ["starred"] and not r["rejected"]
    r = client.post(f"/api/connections/{ids[0.9]}/reject").json()["connection"]
    assert r["states"] == ["rejected"] and not r["validated"]
    r = client.post(f"/api/connections/{ids[0.9]}/unreject").json()["connection"]
    assert r["states"] == [] and r["decided_at"] is None
    r = client.post(f"/api/connections/{ids[0.7]}/unstar").json()["connection"]
    assert r["states"] == []
    r = client.post(f"/api/connections/{ids[0.4]}/reset").json()["connection"]
    assert r["states"] == []
    assert client.get(f"/api/connections/{ids[0.9]}").json()["connection"]["id"] == ids[0.9]


def test_bad_requests_and_other_users(client: TestClient, library: dict[str, Any]) -> None:
    some = library["ids"][0.9]
    assert client.post(f"/api/connections/{some}/bless").status_code == 422
    assert client.get("/api/connections", params={"state": "nice"}).status_code == 422
    assert client.get("/api/connections", params={"engine": "llm"}).status_code == 422
    assert client.get("/api/connections", params={"min_score": 2}).status_code == 422
    for bad in ("nope", "00000000-0000-0000-0000-000000000000"):
        r = client.get(f"/api/connections/{bad}")
        assert r.status_code == 404 and r.json()["error"]["hint"]
        assert client.post(f"/api/connections/{bad}/validate").status_code == 404
    r = client.get("/api/connections", params={"document_id": "nope"})
    assert r.status_code == 404
    other = {"X-Rhizome-User": "someone-else"}
    assert client.get("/api/connections", headers=other).json()["total"] == 0
    assert client.get(f"/api/connections/{some}", headers=other).status_code == 404
    assert client.post(f"/api/connections/{some}/reject", headers=other).status_code == 404
    assert client.get(f"/api/connections/{some}").json()["connection"]["states"] == []
    r = client.post("/api/connections/reprocess", json={"mode": "everything"})
    assert r.status_code == 422
    r = client.post(
        "/api/connections/reprocess", json={"document_ids": [library["trees"].id]}, headers=other
    )
    assert r.status_code == 404


def test_document_view_and_detection_state(
    client: TestClient, store: SqlJobStore, storage: LocalStorage, library: dict[str, Any]
) -> None:
    trees = library["trees"].id
    shown = client.get(f"/api/documents/{trees}").json()
    assert [c["combined_score"] for c in shown["connections"]] == [0.9, 0.7, 0.538462, 0.4]
    first = shown["connections"][0]
    assert first["own_text"] == "First chunk about trees." and first["chunk_index"] == 0
    assert (
        first["other_text"] == "Rivers carry water." and first["other_document_title"] == "Rivers"
    )
    assert shown["detection"]["state"] == "found" and shown["detection"]["compared"] == 2
    back = client.get(f"/api/documents/{library['rivers'].id}").json()["connections"]
    assert (
        back[0]["own_text"] == "Rivers carry water." and back[0]["other_document_title"] == "Trees"
    )

    # detection ran and found nothing: said so, with the number of documents compared
    lonely, _ = h.document_with_chunks(store, storage, title="Lonely", texts=("Nothing alike.",))
    Curation(store).save_detection(lonely.id, "local", [], compared=3)
    detection = client.get(f"/api/documents/{lonely.id}").json()["detection"]
    assert detection["state"] == "none_found"
    assert detection["text"] == "No connections found (3 documents compared)."
    page = client.get(f"/documents/{lonely.id}", headers={"accept": "text/html"}).text
    assert "No connections found (3 documents compared)." in page
    # while a detection job is due or running: Detecting…
    store.enqueue(
        [
            NewJob(
                "detect_connections",
                {"document_id": lonely.id},
                user_id="local",
                entity_type="document",
                entity_id=lonely.id,
            )
        ]
    )
    detection = client.get(f"/api/documents/{lonely.id}").json()["detection"]
    assert detection["state"] == "detecting" and detection["text"] == "Detecting…"
    never, _ = h.document_with_chunks(store, storage, title="Never", texts=("Not yet.",))
    assert client.get(f"/api/documents/{never.id}").json()["detection"]["state"] == "not_detected"


def test_pages(client: TestClient, library: dict[str, Any]) -> None:
    html = {"accept": "text/html"}
    trees = library["trees"].id
    page = client.get(f"/documents/{trees}", headers=html).text
    assert 'data-connection-id="' in page and 'data-conn-action="validate"' in page
    assert "Rivers carry water." in page and "First chunk about trees." in page  # both sides
    assert "Semantic <b>0.90</b>" in page and "Contradiction <b>—</b>" in page
    assert "opposing stance" in page and "0.54" in page
    assert "/static/connections.js" in page
    panel = client.get(f"/documents/{trees}/connections-panel", headers=html)
    assert panel.status_code == 200 and 'id="connections-panel"' in panel.text

    client.post(f"/api/connections/{library['ids'][0.4]}/reject")
    page = client.get("/connections", headers=html).text
    assert 'href="/connections" class="active"' in page
    assert page.count('class="conn-card') == 3
    assert 'data-state-tab="rejected"' in page
    page = client.get("/connections?state=rejected", headers=html).text
    assert page.count('class="conn-card') == 1 and "Undo reject" in page
    page = client.get("/connections?engine=thematic&min_score=0.5&sort=score_asc", headers=html)
    assert page.text.count('class="conn-card') == 1
    partial = client.get("/connections?partial=1&document=" + library["stones"].id, headers=html)
    assert "<html" not in partial.text and partial.text.count('class="conn-card') == 0
    bad = client.get("/connections?min_score=lots", headers=html)
    assert bad.status_code == 422 and "not a score" in bad.text


def test_reprocess_queued_and_its_counts_on_the_job_page(
    client: TestClient, store: SqlJobStore, storage: LocalStorage, library: dict[str, Any]
) -> None:
    trees = library["trees"].id
    client.post(f"/api/connections/{library['ids'][0.9]}/validate")
    r = client.post("/api/connections/reprocess", json={"mode": "all", "document_ids": [trees]})
    assert r.status_code == 201
    job = r.json()["job"]
    assert job["job_type"] == "reprocess_connections" and job["entity_id"] == trees
    # the documents have no embeddings: the engines find nothing, the validated one stays
    done = run_inline("reprocess_connections", job_id=job["id"], store=store, storage=storage)
    assert done.job.status is JobStatus.COMPLETED
    out = done.output
    assert out is not None
    assert (out["before"], out["after"], out["kept"], out["removed"], out["added"]) == (
        4,
        1,
        1,
        3,
        0,
    )
    assert len(out["backups"]) == 1 and out["backups"][0].startswith(f"documents/local/{trees}/")
    page = client.get(f"/jobs/{job['id']}", headers={"accept": "text/html"}).text
    assert 'id="reprocess-counts"' in page
    assert 'data-count="before">4<' in page and 'data-count="removed">3<' in page
    r = client.post("/api/connections/reprocess", json={"mode": "add_new"})
    assert r.status_code == 201 and r.json()["job"]["entity_id"] is None
