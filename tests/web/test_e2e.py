"""End to end in a real headless Chromium against `rhizome serve` (embedded worker, SQLite):
the ProcessingDock, pause → "Paused" with checkpoint info → resume → complete, the Jobs
panel (filters by type/status/stage with counts, bulk actions, admin actions behind
confirmations), and a real corpus document through upload → chunks. Screenshots go to
the test's temporary folder (``screenshots/``)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from rhizome.jobs.store import open_store
from tests.conftest import CORPUS
from tests.web import helpers as h
from tests.web.conftest import LiveServer

pytestmark = pytest.mark.slow

SLOW_NOOP = {"stages": 3, "units": 10, "sleep_ms": 200}


def snap(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def dock_percent(page: Any, job_id: str) -> float:
    value = page.get_attribute(f'#dock li[data-job-id="{job_id}"] .bar', "aria-valuenow")
    return float(value or 0)


def wait_percent(page: Any, job_id: str, at_least: float, timeout: float = 20_000) -> None:
    page.wait_for_function(
        """([id, p]) => {
            const bar = document.querySelector(`#dock li[data-job-id="${id}"] .bar`);
            return bar && Number(bar.getAttribute("aria-valuenow")) >= p;
        }""",
        arg=[job_id, at_least],
        timeout=timeout,
    )


def test_noop_dock_pause_checkpoint_resume_complete(
    page: Any, live_server: LiveServer, shots: Path
) -> None:
    api = live_server.client()
    page.goto("/")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#dock")).to_be_hidden()  # nothing active yet

    job = api.post("/api/jobs", json={"type": "noop", "input": SLOW_NOOP}).json()["jobs"][0]
    item = page.locator(f'#dock li.dock-job[data-job-id="{job["id"]}"]')
    expect(item).to_be_visible()  # arrived live, without a reload
    expect(item.locator(".dock-job-title")).to_contain_text("No-op")
    wait_percent(page, job["id"], 5)
    before = dock_percent(page, job["id"])
    wait_percent(page, job["id"], before + 5)  # the bar moves
    expect(item.locator(".status")).to_have_text("Processing")
    expect(item.locator(".pulse")).to_have_class(re.compile("beating"))  # fresh heartbeat
    expect(item.locator(".dock-text")).to_contain_text(re.compile(r"Unit \d+ of 10"))
    snap(page, shots, "01-dock-processing")

    item.get_by_role("button", name="Pause").click()
    expect(item.locator(".status")).to_have_text("Paused", timeout=10_000)
    expect(item.locator(".dock-text")).to_contain_text("resumable")
    expect(item.locator(".pulse")).not_to_have_class(re.compile("beating"))
    paused_at = dock_percent(page, job["id"])
    assert 0 < paused_at < 100
    snap(page, shots, "02-dock-paused")

    # collapse and expand
    page.click("#dock-toggle")
    expect(item).to_be_hidden()
    page.click("#dock-toggle")
    expect(item).to_be_visible()

    page.goto(f"/jobs/{job['id']}")
    expect(page.locator("#job-status .status")).to_have_text("Paused")
    expect(page.locator("#checkpoint-available")).to_have_text("Resumable checkpoint available")
    expect(page.locator(".checkpoint-stage")).to_have_text(re.compile(r"^Step [123] of 3$"))
    expect(page.locator(".checkpoint-size")).to_have_text(re.compile(r"\d+ B"))
    expect(page.locator(".checkpoint-hash")).to_have_text(re.compile(r"^[0-9a-f]{16}…$"))
    expect(page.locator(".checkpoint-time")).to_contain_text("UTC")
    expect(page.locator("#stages tr.stage")).to_have_count(3)
    expect(page.locator("#stages")).to_contain_text("0\u201333.33%")  # an en dash
    expect(page.locator("#timeline")).to_contain_text("pause requested")
    expect(page.get_by_role("button", name="Restart from beginning").first).to_be_visible()
    snap(page, shots, "03-job-paused-checkpoint")

    page.get_by_role("button", name="Resume from checkpoint").first.click()
    expect(page.locator("#job-status .status")).to_have_text(
        re.compile("Pending|Processing|Completed")
    )
    expect(page.locator("#job-status .status")).to_have_text("Completed", timeout=30_000)
    expect(page.locator("#job-percent")).to_have_text("100%")
    expect(page.locator("#timeline")).to_contain_text("resumed from checkpoint")
    snap(page, shots, "04-job-completed")

    detail = api.get(f"/api/jobs/{job['id']}").json()["job"]
    assert detail["output_data"]["resumed_from"], "it resumed from its checkpoint"
    assert detail["resume_count"] == 1

    page.goto("/")
    expect(page.locator("#dock")).to_be_hidden()  # nothing active any more


def test_jobs_panel_filters_bulk_and_admin_actions(
    page: Any, live_server: LiveServer, shots: Path
) -> None:
    # Registered types wait (not due: the embedded worker leaves them alone); the running,
    # failed and finished jobs are of a type this server does not know (its worker never
    # claims them, and the Jobs panel never offers it as a filter).
    later = datetime.now(UTC) + timedelta(days=1)
    store = open_store(live_server.env["RHIZOME_DATABASE_URL"])
    try:
        for _ in range(3):
            h.new(store, "detect_connections", run_at=later)
        h.new(store, "reprocess_connections", input_data={"title": "Kindle notes"}, run_at=later)
        stuck = h.running(store, "legacy_import", stage="chunk", percent=38, details="Chunk 3")
        h.paused(store, "process_document", run_at=later)
        h.failed(store, "legacy_import", retry_in=600)
        h.failed(store, "legacy_import")
        h.finished(store, "legacy_import")
    finally:
        store.close()

    page.goto("/jobs")
    expect(page.locator("#dock")).to_have_count(0)  # no dock on the Jobs panel
    chips = page.locator("#type-filters .chip")
    for label in ("Ingest", "Detecting", "Connections", "No-op"):  # the registry's labels
        chip = chips.filter(has_text=re.compile(rf"^{label} \d+$"))
        expect(chip).to_have_count(1)
        expect(chip.locator("svg.icon")).to_have_count(1)
    expect(page.locator('[data-filter-type="legacy_import"]')).to_have_count(0)
    expect(page.locator('[data-filter-type="detect_connections"] .count')).to_have_text("3")
    expect(page.locator('[data-filter-status="retrying"] .count')).to_have_text("1")
    expect(page.locator('[data-filter-status="failed"] .count')).to_have_text("1")
    expect(page.locator('[data-filter-stage="chunk"] .count')).to_have_text("1")
    snap(page, shots, "10-jobs-panel")

    page.click('[data-filter-type="detect_connections"]')
    expect(page).to_have_url(re.compile(r"type=detect_connections"))
    rows = page.locator("tr.job-row")
    expect(rows).to_have_count(3)
    for t in rows.evaluate_all("rs => rs.map(r => r.dataset.type)"):
        assert t == "detect_connections"
    page.goto("/jobs")
    page.click('[data-filter-stage="chunk"]')  # "stuck in chunking"
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job-id", stuck.id)
    expect(rows.first.locator(".job-stage")).to_have_text("Chunk")
    snap(page, shots, "11-filter-type-stage")

    page.goto("/jobs?status=paused")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".status")).to_have_text("Paused")
    page.click('[data-filter-status="retrying"]')
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".status")).to_have_text("Retrying")

    # bulk: cancel two of the three detections
    page.goto("/jobs?type=detect_connections")
    expect(rows).to_have_count(3)
    boxes = page.locator(".select-job")
    boxes.nth(0).check()
    boxes.nth(1).check()
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.click('[data-bulk="cancel"]')
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-message")).to_contain_text("2 jobs")
    page.click("#confirm-ok")
    expect(page.locator("tr.job-row .status", has_text="Cancelled")).to_have_count(2)
    expect(page.locator('[data-filter-status="cancelled"] .count')).to_have_text("2")
    snap(page, shots, "12-bulk-cancelled")

    # a job enqueued elsewhere appears without a reload
    api = live_server.client()
    api.post("/api/jobs", json={"type": "noop", "input": SLOW_NOOP | {"units": 1}})
    page.goto("/jobs?status=active")
    new = api.post("/api/jobs", json={"type": "legacy_import"})
    assert new.status_code == 422  # not registered: the API refuses it
    api.post("/api/queue/pause")
    job = api.post("/api/jobs", json={"type": "noop", "input": SLOW_NOOP}).json()["jobs"][0]
    expect(page.locator(f'tr.job-row[data-job-id="{job["id"]}"]')).to_be_visible()
    api.post("/api/queue/resume")

    # admin: clear all jobs, behind a confirmation (cancel first, then confirm)
    page.goto("/jobs")
    page.get_by_role("button", name="Clear all jobs").click()
    expect(page.locator("#confirm")).to_be_visible()
    snap(page, shots, "13-confirm-clear-all")
    page.click("#confirm-cancel")
    expect(page.locator("#confirm")).to_be_hidden()
    assert page.locator("tr.job-row").count() > 0
    page.get_by_role("button", name="Clear all jobs").click()
    page.click("#confirm-ok")
    expect(page.locator("#no-jobs")).to_be_visible()
    expect(page.locator(".toast").first).to_contain_text("Deleted")
    snap(page, shots, "14-cleared")

    # nuclear reset needs the word typed
    page.get_by_role("button", name="Nuclear reset").click()
    expect(page.locator("#confirm-ok")).to_be_disabled()
    page.fill("#confirm-input", "RESET")
    expect(page.locator("#confirm-ok")).to_be_enabled()
    page.click("#confirm-ok")
    expect(page.locator(".toast", has_text="Reset")).to_be_visible()


def _processing_registered(server: LiveServer) -> bool:
    types = server.client().get("/api/job-types").json()["job_types"]
    return any(t["name"] == "process_document" and t["registered"] for t in types)


def test_upload_corpus_document_pause_resume_and_chunks(
    page: Any, live_server: LiveServer, shots: Path
) -> None:
    assert _processing_registered(live_server)
    source = CORPUS / "epub" / "childrens-literature.epub"  # several embedding batches
    page.goto("/")
    page.set_input_files("#file-input", str(source))
    expect(page.locator("#upload-results li")).to_contain_text("Added", timeout=15_000)
    row = page.locator("tr.doc-row").first
    expect(row).to_be_visible()
    job_id = row.get_attribute("data-job-id")
    assert job_id
    item = page.locator(f'#dock li.dock-job[data-job-id="{job_id}"]')
    expect(item).to_be_visible()
    expect(item.locator(".status")).to_have_text("Processing", timeout=30_000)
    wait_percent(page, job_id, 1, timeout=60_000)
    snap(page, shots, "20-upload-processing")
    item.get_by_role("button", name="Pause").click()
    expect(item.locator(".status")).to_have_text("Paused", timeout=60_000)
    snap(page, shots, "21-upload-paused")

    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-status .status")).to_have_text("Paused")
    expect(page.locator("#checkpoint-available")).to_be_visible()
    expect(page.locator(".checkpoint-stage")).to_have_text(re.compile(r"\w+"))
    snap(page, shots, "22-upload-checkpoint")
    page.get_by_role("button", name="Resume from checkpoint").first.click()
    expect(page.locator("#job-status .status")).to_have_text("Completed", timeout=120_000)
    snap(page, shots, "23-upload-completed")

    document_id = live_server.client().get(f"/api/jobs/{job_id}").json()["job"]["entity_id"]
    page.goto(f"/documents/{document_id}")
    expect(page.locator(".doc-status")).to_have_text("Ready")
    expect(page.locator("li.chunk").first).to_be_visible()
    assert page.locator("li.chunk").count() > 1
    expect(page.locator(".markdown")).not_to_be_empty()
    snap(page, shots, "24-document-chunks")


def test_a_change_between_the_render_and_the_live_subscription_shows(
    page: Any, live_server: LiveServer
) -> None:
    """The job completes after its page was rendered but before the page's live
    subscription starts (held back here): no message is sent for it, so the first snapshot
    tells the page that the feed moved, and the page reads itself again (CI once saw a
    job page stay at "Processing" for good)."""
    api = live_server.client()
    job = api.post(
        "/api/jobs", json={"type": "noop", "input": {"stages": 1, "units": 8, "sleep_ms": 300}}
    )
    job_id = job.json()["jobs"][0]["id"]
    deadline = time.monotonic() + 60
    while api.get(f"/api/jobs/{job_id}").json()["job"]["status"] != "processing":
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    held: list[Any] = []
    page.route("**/api/events", lambda route: held.append(route))  # waits until released
    page.goto(f"/jobs/{job_id}")
    status = page.locator("#job-status .status")
    expect(status).to_have_text("Processing")
    while api.get(f"/api/jobs/{job_id}").json()["job"]["status"] != "completed":
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.05)
    while not held:
        assert time.monotonic() < deadline, "the page did not subscribe"
        page.wait_for_timeout(50)
    held[0].continue_()
    page.unroute("**/api/events")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(status).to_have_text("Completed", timeout=10_000)
