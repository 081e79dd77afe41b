"""End to end in headless Chromium against `rhizome serve` (embedded worker, SQLite, the
hash embedder): highlight a passage on the document page, export the library with live
progress, download the ZIP, upload it again, the conflict dialog (samples side by side,
merge_smart preselected as recommended, replace marked destructive), the import with
merge_smart, and the storage scan. Screenshots go to the test's ``screenshots/``."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import LiveServer, start_server

pytestmark = pytest.mark.slow

NOTES = [
    "# Harbour notes\n\nThe harbour master counts the ships at dawn. Gulls follow the "
    "fishing boats back in.\n\n## Tides\n\nSpring tides flood the lower quay twice a month.",
    "# Orchard notes\n\nThe orchard keeper prunes the apple trees in winter. Bees return "
    "when the blossom opens.\n\n## Cider\n\nWindfalls go to the press in October.",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
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
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, base_url=server.url, accept_downloads=True
    )
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


def _ready_library(server: LiveServer) -> list[str]:
    api = server.client()
    ids = [
        api.post("/api/documents/text", json={"text": text}).json()["document"]["id"]
        for text in NOTES
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        docs = api.get("/api/documents").json()["documents"]
        if all(d["status"] == "ready" for d in docs) and len(docs) == len(ids):
            return ids
        time.sleep(0.2)
    raise AssertionError(f"documents not ready: {docs}")


def test_highlight_export_download_conflict_dialog_and_merge_smart_import(
    page: Any, server: LiveServer, shots: Path, tmp_path: Path
) -> None:
    ids = _ready_library(server)
    api = server.client()

    # a highlight: select a passage of a chunk, add a note, save
    page.goto(f"/documents/{ids[0]}")
    expect(page.locator("#highlights-empty")).to_be_visible()
    page.locator("li.chunk details summary").first.click()
    text = page.locator(".chunk-text").first
    expect(text).to_be_visible()
    page.evaluate(
        """() => {
            const p = document.querySelector(".chunk-text");
            const node = p.firstChild;
            const start = node.textContent.indexOf("harbour master");
            const range = document.createRange();
            range.setStart(node, start);
            range.setEnd(node, start + "harbour master counts the ships".length);
            const sel = window.getSelection();
            sel.removeAllRanges();
            sel.addRange(range);
            p.dispatchEvent(new MouseEvent("mouseup", {bubbles: true}));
        }"""
    )
    toolbar = page.locator("#hl-toolbar")
    expect(toolbar).to_be_visible()
    toolbar.locator('input[name="note"]').fill("who keeps count")
    toolbar.get_by_role("button", name="Highlight").click()
    item = page.locator("#highlights-list li.highlight")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("harbour master counts the ships")
    expect(item).to_contain_text("who keeps count")
    expect(page.locator("mark.hl")).to_have_text("harbour master counts the ships")
    [saved] = api.get(f"/api/documents/{ids[0]}/highlights").json()["highlights"]
    content = api.get(f"/api/documents/{ids[0]}/content").text
    assert content[saved["start"] : saved["end"]] == "harbour master counts the ships"
    page.screenshot(path=str(shots / "30-highlight.png"), full_page=True)

    # export the whole library with live progress, then download it
    page.goto("/portability")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#export-all")).to_be_checked()
    page.get_by_role("button", name="Export", exact=True).click()
    row = page.locator('#exports tr.port-job[data-kind="export"]').first
    expect(row.locator(".status")).to_have_text("Completed", timeout=30_000)
    download_link = row.get_by_role("link", name="Download ZIP")
    expect(download_link).to_be_visible()
    expect(row.locator(".contents")).to_contain_text("2 documents")
    page.screenshot(path=str(shots / "31-exported.png"), full_page=True)
    with page.expect_download() as info:
        download_link.click()
    target = tmp_path / "downloaded.zip"
    info.value.save_as(str(target))
    archive = zipfile.ZipFile(io.BytesIO(target.read_bytes()))
    assert archive.testzip() is None
    assert {n.split("/")[0] for n in archive.namelist() if "/" in n} == set(ids)

    # upload it again: both documents conflict; the dialog explains the strategies
    page.set_input_files("#import-file", str(target))
    page.get_by_role("button", name="Upload and import").click()
    dialog = page.locator("#conflict")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".conflict-doc")).to_have_count(2)
    first = dialog.locator(".conflict-doc").first
    expect(first.locator(".side-by-side .side")).to_have_count(2)
    expect(first.locator(".side").nth(0)).to_contain_text("In your library")
    expect(first.locator(".side").nth(1)).to_contain_text("In the import")
    expect(first.locator(".sample").first).not_to_be_empty()
    expect(dialog.locator('input[value="merge_smart"]')).to_be_checked()
    expect(dialog.locator(".tag.recommended")).to_be_visible()
    expect(dialog.locator(".tag.destructive")).to_have_text("Destructive")
    expect(dialog.locator(".strategy", has_text="replace")).to_contain_text("Destructive")
    page.screenshot(path=str(shots / "32-conflict-dialog.png"), full_page=True)
    dialog.get_by_role("button", name="Import with this strategy").click()
    expect(dialog).to_be_hidden()
    imported = page.locator('#imports tr.port-job[data-kind="import"]').first
    expect(imported.locator(".status")).to_have_text("Completed", timeout=30_000)
    expect(imported.locator(".contents")).to_contain_text(re.compile(r"2 imported .* 0 changed"))
    page.screenshot(path=str(shots / "33-imported.png"), full_page=True)

    jobs = api.get("/api/jobs", params={"type": "import_document"}).json()["jobs"]
    [job] = jobs
    detail = api.get(f"/api/jobs/{job['id']}").json()["job"]
    assert detail["input_data"]["strategy"] == "merge_smart"
    assert detail["output_data"]["changed_documents"] == 0
    assert len(api.get(f"/api/documents/{ids[0]}/highlights").json()["highlights"]) == 1

    # the storage scan: both documents healthy
    page.get_by_role("button", name="Scan again").click()
    expect(page.locator("#scan tr.scan-row")).to_have_count(2)
    expect(page.locator('#scan tr.scan-row[data-status="healthy"]')).to_have_count(2)
    expect(page.locator("#scan-summary")).to_contain_text("2 healthy")
