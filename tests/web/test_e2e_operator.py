"""The operator's view end to end in headless Chromium against `rhizome serve` (SQLite):
the queue's pause badge live on every page, a retried-then-completed job without a stale
error, a handler's log lines arriving live, the dock never covering the table or the
Error panel (bounding boxes) and nothing wider than a 390 px screen, the dashboard's
charts and the Stats view over a seeded history, the Workers page with a live and a
killed worker, and sorting with a shared filter URL."""

from __future__ import annotations

import os
import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from rhizome.jobs.store import open_store
from tests.conftest import start_worker
from tests.helpers import wait_for
from tests.operator_history import SEED_TYPE, Raw, seed_job
from tests.web import helpers as h
from tests.web.conftest import LiveServer

pytestmark = pytest.mark.slow

OVERLAP = """([dockSel, sel]) => {
    const dockEl = document.querySelector(dockSel);
    if (!dockEl || dockEl.hidden) return {visible: true, overlap: false, dockHeight: 0};
    const dock = dockEl.getBoundingClientRect();
    const main = document.querySelector("main").getBoundingClientRect();
    const box = document.querySelector(sel).getBoundingClientRect();
    const top = Math.max(box.top, main.top), bottom = Math.min(box.bottom, main.bottom);
    const visible = bottom > top && box.right > box.left;
    const apart = bottom <= dock.top || top >= dock.bottom
        || box.right <= dock.left || box.left >= dock.right;
    return {visible: visible, overlap: visible && !apart, dockHeight: dock.height};
}"""

FITS = """() => {
    const main = document.querySelector("main");
    return {
        page: document.documentElement.scrollWidth <= window.innerWidth,
        main: main.scrollWidth <= main.clientWidth + 1,
        widths: [document.documentElement.scrollWidth, main.scrollWidth, window.innerWidth],
    };
}"""


def snap(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"))


def test_queue_badge_live_logs_and_no_stale_error(
    page: Any, live_server: LiveServer, shots: Path
) -> None:
    api = live_server.client()
    page.goto("/")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#queue-banner")).to_be_hidden()

    api.post("/api/queue/pause")  # elsewhere: the banner comes live, without a reload
    expect(page.locator("#queue-banner")).to_be_visible()
    expect(page.locator("#queue-banner")).to_contain_text("The queue is paused")
    held = api.post("/api/jobs", json={"type": "noop", "input": {}}).json()["jobs"][0]
    item = page.locator(f'#dock li.dock-job[data-job-id="{held["id"]}"]')
    expect(item.locator(".dock-text")).to_have_text("Waiting: the queue is paused")
    expect(page.locator("#dock-summary")).to_contain_text("queue paused")
    snap(page, shots, "01-queue-paused-banner")

    page.goto("/jobs")
    state = page.locator("#queue-state .queue-status")
    expect(state).to_have_text("Queue paused")
    page.get_by_role("button", name="Resume queue").click()
    expect(state).to_have_text("Queue running")
    expect(page.locator("#queue-banner")).to_be_hidden()
    page.get_by_role("button", name="Pause queue").click()
    page.click("#confirm-ok")
    expect(state).to_have_text("Queue paused")
    expect(page.locator("#queue-banner")).to_be_visible()
    api.post("/api/queue/resume")  # elsewhere again: the header follows
    expect(state).to_have_text("Queue running")
    expect(page.locator("#queue-banner")).to_be_hidden()

    # a handler's log lines, live on the job page
    slow = {"stages": 1, "units": 12, "sleep_ms": 250, "log_units": True}
    job = api.post("/api/jobs", json={"type": "noop", "input": slow}).json()["jobs"][0]
    page.goto(f"/jobs/{job['id']}")
    page.evaluate("window.__stayed = true")
    lines = page.locator("#job-log li.log-line")
    expect(lines.first).to_be_visible(timeout=15_000)
    seen = lines.count()
    expect(lines).to_have_count(12, timeout=20_000)
    assert seen < 12 and page.evaluate("window.__stayed === true")  # arrived, no reload
    expect(lines.last).to_contain_text("unit 12 of 12 done")
    expect(page.locator("#job-status .status")).to_have_text("Completed", timeout=15_000)
    expect(page.locator("#stage-times tbody tr")).to_have_count(1)
    snap(page, shots, "02-job-log")

    # a transient failure, retried automatically, then completed: no stale error
    flaky = {"fail_times": 1}
    job = api.post("/api/jobs", json={"type": "noop", "input": flaky}).json()["jobs"][0]
    page.goto(f"/jobs/{job['id']}")
    expect(page.locator("#job-status .status")).to_have_text("Completed", timeout=30_000)
    expect(page.locator("#error-panel")).to_have_count(0)
    expect(page.locator("#recovered")).to_be_visible()
    expect(page.locator(".job-meta")).to_contain_text("attempt 2")
    snap(page, shots, "03-recovered")


def test_dock_takes_its_own_space_and_phones_fit(
    page: Any, live_server: LiveServer, shots: Path
) -> None:
    api = live_server.client()
    broken = {"fail_times": 5, "error": "permanent"}
    failed = api.post("/api/jobs", json={"type": "noop", "input": broken}).json()["jobs"][0]
    wait_for(
        lambda: api.get(f"/api/jobs/{failed['id']}").json()["job"]["status"] == "failed",
        what="the failing job",
    )
    api.post("/api/queue/pause")  # the documents' jobs wait in the dock
    for n in range(4):
        r = api.post("/api/documents/text", json={"text": f"# Note {n}\n\nAbout whales {n}."})
        assert r.status_code == 201, r.text

    page.goto("/")
    expect(page.locator("#dock li.dock-job")).to_have_count(4)
    expect(page.locator("tr.doc-row")).to_have_count(4)
    expect(page.locator("tr.doc-row .doc-title").first).to_have_text(re.compile(r"^Note \d$"))
    got = page.evaluate(OVERLAP, ["#dock", ".documents-table"])
    assert got["visible"] and not got["overlap"], got
    assert got["dockHeight"] < 900 * 0.4, got
    snap(page, shots, "10-library-with-dock")

    page.goto(f"/jobs/{failed['id']}")
    page.locator("#error-panel").scroll_into_view_if_needed()
    got = page.evaluate(OVERLAP, ["#dock", "#error-panel"])
    assert got["visible"] and not got["overlap"], got
    expect(page.locator("#error-panel .error-type")).to_have_text("Permanent error")
    page.click("#dock-toggle")  # collapsed: a bar
    expect(page.locator("#dock-list")).to_be_hidden()
    got = page.evaluate(OVERLAP, ["#dock", "#error-panel"])
    assert not got["overlap"] and got["dockHeight"] < 60, got
    snap(page, shots, "11-job-error-dock-collapsed")
    page.click("#dock-toggle")
    expect(page.locator("#dock-list")).to_be_visible()

    page.set_viewport_size({"width": 390, "height": 844})
    for url in ("/", "/jobs", f"/jobs/{failed['id']}", "/dashboard", "/stats", "/workers"):
        page.goto(url)
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        fits = page.evaluate(FITS)
        assert fits["page"] and fits["main"], (url, fits)
        got = page.evaluate(OVERLAP, ["#dock", "main > *"])
        assert not got["overlap"], (url, got)
        snap(page, shots, "12-phone-" + url.strip("/").replace("/", "-")[:20])
    api.post("/api/queue/resume")


def test_dashboard_stats_workers_and_shared_sorted_view(
    page: Any, live_server: LiveServer, shots: Path, browser: Any
) -> None:
    db_url = live_server.env["RHIZOME_DATABASE_URL"]
    store = open_store(db_url)
    raw = Raw(db_url)
    try:
        now = datetime.now(UTC)
        for minutes, seconds in ((50, 30), (30, 60), (10, 90)):
            seed_job(store, raw, minutes_ago=minutes, run_seconds=seconds, now=now)
        seed_job(store, raw, minutes_ago=5, run_seconds=3, fail=True, now=now)
        stuck = {p: h.running(store, SEED_TYPE, percent=p).id for p in (50, 10, 90)}

        # a second worker process, killed with SIGKILL
        killed = start_worker(live_server.env, "--concurrency", "1")
        try:
            wait_for(lambda: any(w.pid == killed.pid for w in store.list_workers()), 30)
        finally:
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait(10)
        [dead] = [w for w in store.list_workers() if w.pid == killed.pid]
        old = raw.time(datetime.now(UTC) - timedelta(minutes=5))  # its silence, without waiting
        raw.run("UPDATE workers SET last_seen_at = %s WHERE id = %s", (old, dead.id))
    finally:
        store.close()

    page.goto("/dashboard?window=hour")
    bars = page.locator(f'#chart-completed rect[data-series="{SEED_TYPE}"]')
    expect(bars).to_have_count(3)
    expect(page.locator(f'#chart-failed rect[data-series="{SEED_TYPE}"]')).to_have_count(1)
    expect(page.locator("#chart-runtime circle")).to_have_count(6)  # p50 and p95 of 3 runs
    assert page.locator("#chart-claim circle").count() >= 2
    assert page.locator("#chart-depth circle").count() == 3 * 60
    expect(page.locator("#kpi-completed")).to_have_text("3")
    expect(page.locator("#kpi-processing")).to_have_text("3")
    snap(page, shots, "20-dashboard")
    page.click('[data-window="day"]')
    expect(page).to_have_url(re.compile(r"window=day"))
    expect(bars).to_have_count(3)

    page.goto("/stats?window=hour")
    row = page.locator(f'.stats-type[data-type="{SEED_TYPE}"]')
    expect(row.locator('tr[data-row="run_time"] .p50')).to_have_text("1 min 00 s")
    expect(row.locator('tr[data-stage="load"] .p50')).to_have_text("30 s")
    expect(row.locator('tr[data-stage="save"] th')).to_contain_text("Save")
    snap(page, shots, "21-stats")

    page.goto("/workers")
    expect(page.locator("tr.worker-row")).to_have_count(2)
    expect(page.locator(f'tr.worker-row[data-worker-id="{dead.id}"]')).to_have_attribute(
        "data-state", "dead"
    )
    expect(page.locator('tr.worker-row[data-state="live"]')).to_have_count(1)
    expect(page.locator('tr.worker-row[data-state="dead"] .worker-state')).to_have_text("Dead")
    snap(page, shots, "22-workers")

    # sorting, and a filtered, sorted view shared by its URL
    page.goto("/jobs?status=processing&hidden=1")
    rows = page.locator("tr.job-row")
    expect(rows).to_have_count(3)
    page.click('th[data-sort-column="progress"] a')
    expect(page).to_have_url(re.compile(r"sort=progress_desc"))
    ids = [stuck[90], stuck[50], stuck[10]]
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.jobId)") == ids
    page.click('th[data-sort-column="progress"] a')
    expect(page).to_have_url(re.compile(r"sort=progress_asc"))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.jobId)") == ids[::-1]
    shared = page.url
    assert "status=processing" in shared and "hidden=1" in shared

    other = browser.new_context(viewport={"width": 1280, "height": 900})  # no cookie
    try:
        visitor = other.new_page()
        visitor.goto(shared)
        got = visitor.locator("tr.job-row")
        expect(got).to_have_count(3)
        assert got.evaluate_all("rs => rs.map(r => r.dataset.jobId)") == ids[::-1]
        expect(visitor.locator('[data-filter-status="processing"]')).to_have_class(
            re.compile(r"\bon\b")
        )
        expect(visitor.locator('th[data-sort-column="progress"]')).to_have_attribute(
            "aria-sort", "ascending"
        )
    finally:
        other.close()
