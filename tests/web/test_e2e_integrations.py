"""End to end in headless Chromium against `rhizome serve` (embedded worker, SQLite, the
hash embedder): the Integrations page — vault settings, a Readwise CSV upload with its
results table (matched, needs review, a book not in the library) and the review queue
(accept), an export to the vault, then a sync conflict (the note edited in the vault and
the document changed in the library) shown with both versions and resolved for the
vault. Screenshots go to the test's ``screenshots/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from rhizome.app import BUILTIN_MIGRATIONS
from rhizome.jobs.store import open_store
from rhizome.library import Library
from rhizome.library.rechunk import swap_content
from rhizome.storage import LocalStorage
from tests.web.conftest import LiveServer, start_server

pytestmark = pytest.mark.slow

NOTE = (
    "# Sea notes\n\nThe harbour master counts the ships at dawn. Gulls follow the fishing "
    "boats back in.\n\nSpring tides flood the lower quay twice a month. The old pier creaks "
    "in every winter storm.\n"
)
CSV = (
    "Highlight,Book Title,Book Author,Location Type,Location\n"
    '"The harbour master counts the ships at dawn.",Sea notes,,order,1\n'
    '"The old pier groans loudly in each winter storm.",Sea notes,,order,2\n'
    '"A line from a book that is not in the library.",Another Book,Nobody,order,1\n'
)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")
    live = start_server(
        tmp_path, f"sqlite:///{tmp_path / 'rhizome.db'}", env={"RHIZOME_EMBEDDER": "hash"}
    )
    try:
        yield live
    finally:
        live.stop()
        print("--- server log ---\n" + live.output()[-6000:])


@pytest.fixture
def page(browser: Any, server: LiveServer, shots: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=server.url)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(20_000)
    try:
        yield pg
    finally:
        pg.screenshot(path=str(shots / "zz-last.png"), full_page=True)
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


def _ready(server: LiveServer) -> str:
    api = server.client()
    doc = api.post("/api/documents/text", json={"text": NOTE, "title": "Sea notes"}).json()
    doc_id = str(doc["document"]["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.get(f"/api/documents/{doc_id}").json()["document"]["status"] == "ready":
            return doc_id
        time.sleep(0.2)
    raise AssertionError("the document did not become ready")


def test_readwise_review_export_and_a_sync_conflict(
    page: Any, server: LiveServer, shots: Path, tmp_path: Path
) -> None:
    doc_id = _ready(server)
    vault = tmp_path / "vault"
    (vault / ".obsidian").mkdir(parents=True)
    page.goto("/integrations")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#obsidian-sync")).to_be_disabled()
    page.fill("#vault-path", str(vault))
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#vault-status")).to_have_text("Vault settings saved.")
    expect(page.locator("#obsidian-sync")).to_be_enabled()

    # Readwise: upload, the results table, then the review queue
    export = tmp_path / "readwise.csv"
    export.write_text(CSV)
    page.set_input_files("#readwise-file", str(export))
    page.get_by_role("button", name="Upload and import").click()
    row = page.locator('#readwise-jobs tr[data-job-type="readwise_import"]').first
    expect(row.locator(".status")).to_have_text("Completed", timeout=30_000)
    results = page.locator("#readwise-results tbody tr")
    expect(results).to_have_count(3)
    expect(page.locator('#readwise-results tr[data-status="matched"]')).to_have_count(1)
    expect(page.locator('#readwise-results tr[data-status="needs_review"]')).to_have_count(1)
    missing = page.locator('#readwise-results tr[data-status="unmatched"]')
    expect(missing).to_contain_text("Another Book")
    expect(missing).to_contain_text("not placed")
    expect(page.locator('#readwise-books p[data-book-status="unmatched"]')).to_contain_text(
        "not in the library"
    )
    item = page.locator("#review-list li.review-item")
    expect(item).to_have_count(1)
    expect(item.locator(".suggested mark")).to_have_text(
        "The old pier creaks in every winter storm."
    )
    expect(page.locator("#review-count")).to_have_text("1")
    page.screenshot(path=str(shots / "40-readwise-review.png"), full_page=True)
    item.get_by_role("button", name="Accept").click()
    expect(page.locator("#review-list li.review-item")).to_have_count(0)
    expect(page.locator("#review-count")).to_have_text("0")
    highlights = server.client().get(f"/api/documents/{doc_id}/highlights").json()["highlights"]
    assert sorted(h["status"] for h in highlights) == ["matched", "matched"]

    # export to the vault, then a conflict: the note and the library both change
    page.get_by_role("button", name="Export all to the vault").click()
    exported = page.locator('#vault-jobs tr[data-job-type="obsidian_export"]').first
    expect(exported.locator(".status")).to_have_text("Completed", timeout=30_000)
    note = vault / "Rhizome" / "Documents" / "Sea notes" / "Sea notes.md"
    assert note.is_file()
    note.write_text(note.read_text().replace("at dawn", "at first light"))
    store = open_store(f"sqlite:///{tmp_path / 'rhizome.db'}", migrations=BUILTIN_MIGRATIONS)
    storage = LocalStorage(tmp_path / "storage")
    try:
        swap_content(store, storage, doc_id, "local", NOTE.replace("twice a month", "fortnightly"))
    finally:
        store.close()
    page.get_by_role("button", name="Sync now").click()
    conflict = page.locator(f'#conflicts li.conflict[data-document-id="{doc_id}"]')
    expect(conflict).to_be_visible(timeout=30_000)
    expect(page.locator("#conflict-count")).to_have_text("1")
    expect(page.locator("#last-sync-counts")).to_contain_text("1 conflict")
    conflict.get_by_role("button", name="Show both").click()
    dialog = page.locator("#versions")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#version-vault")).to_contain_text("at first light")
    expect(dialog.locator("#version-library")).to_contain_text("fortnightly")
    page.screenshot(path=str(shots / "41-conflict-versions.png"), full_page=True)
    dialog.get_by_role("button", name="Keep the vault's").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#conflicts li.conflict")).to_have_count(0, timeout=30_000)
    expect(page.locator("#conflicts-empty")).to_be_visible()
    expect(page.locator("#last-sync-counts")).to_contain_text("1 resolved")
    page.screenshot(path=str(shots / "42-resolved.png"), full_page=True)
    store = open_store(f"sqlite:///{tmp_path / 'rhizome.db'}", migrations=BUILTIN_MIGRATIONS)
    try:
        folder = Library(store).get_document(doc_id, "local").storage_folder
    finally:
        store.close()
    content = storage.get(f"{folder}/content.md").decode()
    assert "at first light" in content and "fortnightly" not in content
