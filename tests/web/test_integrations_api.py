"""The integrations API on both stores: vault settings (checked, hostile paths refused),
export and sync through a worker, a conflict with both versions and its resolution, the
Readwise upload with per-highlight results, the review queue (accept, reject), one user
never reaching another's documents, highlights or jobs; the Integrations page renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.library.rechunk import swap_content
from rhizome.storage import LocalStorage
from tests.conftest import CORPUS
from tests.helpers import make_worker
from tests.integrations import ready_document

OTHER = {"X-Rhizome-User": "mallory"}
TEXT = (
    "# Sea notes\n\nThe harbour master counts the ships at dawn. Gulls follow the fishing "
    "boats back in.\n\nSpring tides flood the lower quay twice a month. The old pier creaks "
    "in every winter storm.\n"
)


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")


def _run(store: SqlJobStore, storage: LocalStorage) -> None:
    make_worker(store, storage, burst=True).run()


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _error(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["message"] and "Traceback" not in response.text
    return error


def test_vault_settings_export_sync_and_a_conflict(
    client: TestClient, store: SqlJobStore, storage: LocalStorage, tmp_path: Path
) -> None:
    doc = ready_document(store, storage, "Sea notes", TEXT)
    vault = tmp_path / "vault"
    (vault / ".obsidian").mkdir(parents=True)
    assert _ok(client.get("/api/integrations/obsidian"))["settings"] is None
    error = _error(client.post("/api/integrations/obsidian/export", json={}))
    assert "No Obsidian vault" in error["message"]
    for body in (
        {"vault_path": "relative/path"},
        {"vault_path": str(vault), "subfolder": "../escape"},
        {"vault_path": str(vault), "subfolder": "/etc"},
        {"vault_path": str(tmp_path / "missing")},
        {"vault_path": str(tmp_path)},  # a folder, but not an Obsidian vault
        {"vault_path": "/etc"},
        {"vault_path": str(vault) + "/../x"},
    ):
        _error(client.put("/api/integrations/obsidian/settings", json=body))
    saved = _ok(
        client.put(
            "/api/integrations/obsidian/settings",
            json={"vault_path": str(vault), "subfolder": "Notes/Rhizome/"},
        )
    )["settings"]
    assert saved["subfolder"] == "Notes/Rhizome" and saved["vault_name"] == "vault"
    elsewhere = client.put(
        "/api/integrations/obsidian/settings",
        json={"vault_path": "/srv/vault-on-another-machine", "check": False},
        headers=OTHER,
    )
    assert _ok(elsewhere)["settings"]["vault_path"] == "/srv/vault-on-another-machine"

    _error(
        client.post(
            "/api/integrations/obsidian/export", json={"document_ids": [doc]}, headers=OTHER
        ),
        404,
    )  # not mallory's document
    job = _ok(client.post("/api/integrations/obsidian/export", json={"document_ids": [doc]}), 201)
    assert job["job"]["type_label"] == "Obsidian Export" and job["job"]["entity_id"] == doc
    _run(store, storage)
    overview = _ok(client.get("/api/integrations/obsidian"))
    assert overview["counts"] == {"synced": 1} and overview["vault_visible_here"] is True
    export = overview["exports"][0]
    assert export["status"] == "completed" and export["output"]["counts"] == {"written": 1}
    note = vault / "Notes" / "Rhizome" / "Documents" / "Sea notes" / "Sea notes.md"
    note.write_text(note.read_text().replace("at dawn", "at first light"))
    swap_content(store, storage, doc, "local", TEXT.replace("twice a month", "every fortnight"))

    sync = _ok(client.post("/api/integrations/obsidian/sync", json={}), 201)["job"]
    same = _ok(client.post("/api/integrations/obsidian/sync", json={}), 201)["job"]
    assert same["id"] == sync["id"]  # a plain sync joins the one waiting
    _run(store, storage)
    overview = _ok(client.get("/api/integrations/obsidian"))
    [conflict] = overview["conflicts"]
    assert conflict["document_id"] == doc and overview["syncs"][0]["output"]["counts"] == {
        "conflict": 1
    }
    versions = _ok(client.get(f"/api/integrations/obsidian/conflicts/{doc}"))["conflict"]
    assert "first light" in versions["vault"] and "every fortnight" in versions["library"]
    _error(client.get(f"/api/integrations/obsidian/conflicts/{doc}", headers=OTHER), 404)
    _error(
        client.post(
            "/api/integrations/obsidian/sync",
            json={"resolve": [{"document_id": doc, "keep": "both"}]},
        )
    )
    _ok(
        client.post(
            "/api/integrations/obsidian/sync",
            json={"resolve": [{"document_id": doc, "keep": "vault"}]},
        ),
        201,
    )
    _run(store, storage)
    assert _ok(client.get("/api/integrations/obsidian"))["conflicts"] == []
    content = storage.get(f"{Library(store).get_document(doc, 'local').storage_folder}/content.md")
    assert b"at first light" in content and b"every fortnight" not in content
    assert "Integrations" in client.get("/integrations").text


def test_readwise_upload_results_and_review(
    client: TestClient, store: SqlJobStore, storage: LocalStorage
) -> None:
    doc = ready_document(store, storage, "Sea notes", TEXT)
    csv = (
        "Highlight,Book Title,Book Author,Location Type,Location\n"
        '"The harbour master counts the ships at dawn.",Sea Notes,,order,1\n'
        '"Spring tides often flood the quay at the lower end twice in a month.",'
        "Sea Notes,,order,2\n"
        '"Something from another book entirely.",Other Book,Someone,order,1\n'
        "Tiny,Sea Notes,,order,3\n"
    )
    files = {"file": ("export.csv", csv.encode(), "text/csv")}
    job = _ok(client.post("/api/integrations/readwise/uploads", files=files), 201)["job"]
    assert job["type_label"] == "Readwise Import"
    _error(
        client.post(
            "/api/integrations/readwise/uploads",
            files={"file": ("x.csv", b"a,b\n1,2\n", "text/csv")},
        )
    )
    _run(store, storage)
    overview = _ok(client.get("/api/integrations/readwise"))
    result = overview["imports"][0]["output"]
    assert result["counts"] == {
        "matched": 1,
        "needs_review": 1,
        "unmatched": 1,
        "skipped": 1,
        "duplicates": 0,
    }
    rows = _ok(client.get(f"/api/integrations/readwise/highlights?job_id={job['id']}"))
    assert len(rows["highlights"]) == 4 and rows["counts"]["skipped"] == 1
    _error(
        client.get(f"/api/integrations/readwise/highlights?job_id={job['id']}", headers=OTHER), 404
    )

    queue = _ok(client.get("/api/integrations/review"))
    [item] = queue["highlights"]
    assert queue["total"] == 1 and item["suggested"].startswith("Spring tides flood")
    assert _ok(client.get("/api/integrations/review", headers=OTHER))["highlights"] == []
    _error(
        client.post("/api/integrations/review", json={"accept": [item["id"]]}, headers=OTHER), 404
    )
    _error(client.post("/api/integrations/review", json={}))
    decided = _ok(client.post("/api/integrations/review", json={"accept": [item["id"]]}))
    assert decided["review"]["accepted"] == [item["id"]]
    h = _ok(client.get(f"/api/highlights/{item['id']}"))["highlight"]
    assert h["status"] == "matched" and h["text"] == item["suggested"]
    again = _ok(client.post("/api/integrations/review", json={"reject": [item["id"]]}))
    assert again["review"]["skipped"][0]["reason"] == "it is matched"
    assert _ok(client.get("/api/integrations/review"))["total"] == 0

    _ok(client.put("/api/integrations/readwise/token", json={"token": "abcdef123456"}))
    account = _ok(client.get("/api/integrations/readwise"))["account"]
    assert account == {**account, "token_set": True, "token_hint": "…3456"}
    assert "abcdef123456" not in client.get("/api/integrations/readwise").text
    assert (
        _ok(client.get("/api/integrations/readwise", headers=OTHER))["account"]["token_set"]
        is False
    )
    _error(client.put("/api/integrations/readwise/token", json={"token": "has space"}))
    assert doc


def test_corpus_json_upload(client: TestClient, store: SqlJobStore, storage: LocalStorage) -> None:
    raw = (CORPUS / "readwise" / "readwise-export.json").read_bytes()
    files = {"file": ("readwise-export.json", raw, "application/json")}
    _ok(client.post("/api/integrations/readwise/uploads", files=files), 201)
    _run(store, storage)
    result = _ok(client.get("/api/integrations/readwise"))["imports"][0]["output"]
    assert result["format"] == "json" and result["books_matched"] == 0
    assert result["counts"]["unmatched"] == 8  # no book of the library: reported, not forced
