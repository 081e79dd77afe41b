"""End to end in a real headless Chromium against `rhizome serve` (embedded worker, SQLite,
the local embedding model): on a document page, validate, star and reject connections
and undo a rejection; the Connections page's state tabs and filters; a reprocess queued
from the page and its counts on the job page. Screenshots go to the test's temporary
folder (``screenshots/``)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import LiveServer

pytestmark = pytest.mark.slow

CORAL = """# Coral reefs under heat stress

Coral bleaching happens when ocean temperatures rise and corals expel the symbiotic algae
living in their tissues. Marine heatwaves have caused mass bleaching on the Great Barrier
Reef in recent years, and repeated bleaching leaves little time for reefs to recover.
"""
WARMING = """# Warming seas and reef ecosystems

When sea surface temperatures stay high for weeks, reef-building corals lose their
zooxanthellae algae and turn white. Scientists link the growing frequency of coral
bleaching events to ocean warming driven by climate change.
"""
DENIAL = """# Reefs are doing fine

Coral bleaching is not caused by ocean warming. Reefs recover quickly, and the Great
Barrier Reef shows no lasting damage from marine heatwaves, whatever scientists say.
"""

RECOVERY = """# How reefs recover after bleaching

After a marine heatwave, bleached corals can regain their symbiotic algae if ocean
temperatures fall quickly. Reef recovery takes years, and repeated coral bleaching on the
Great Barrier Reef leaves little time for the reef to recover between heatwaves.
"""


def snap(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def _library(server: LiveServer) -> list[str]:
    """Four related notes, processed and their connections detected."""
    api = server.client()
    ids = [
        api.post("/api/documents/text", json={"text": t}).json()["document"]["id"]
        for t in (CORAL, WARMING, DENIAL, RECOVERY)
    ]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        active = api.get("/api/jobs", params={"status": "active"}).json()["total"]
        docs = [api.get(f"/api/documents/{d}").json()["document"]["status"] for d in ids]
        if active == 0 and set(docs) == {"ready"}:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the notes were not processed:\n{server.output()[-3000:]}")
    total = api.get("/api/connections").json()["total"]
    assert total >= 4, f"the notes must connect (found {total})"
    return ids


def _wait_job(server: LiveServer, job_id: str, timeout: float = 120) -> None:
    api = server.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/api/jobs/{job_id}").json()["job"]
        if job["status"] in ("completed", "failed", "cancelled"):
            assert job["status"] == "completed", job
            return
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}\n{server.output()[-3000:]}")


def test_curate_filter_and_reprocess(page: Any, live_server: LiveServer, shots: Path) -> None:
    coral = _library(live_server)[0]
    page.goto(f"/documents/{coral}")
    panel = page.locator("#connections-panel")
    expect(panel.locator(".detection")).to_contain_text("connections")
    cards = panel.locator("#connections > li.conn-card")
    count = cards.count()
    assert count >= 3, count
    first = cards.nth(0)
    expect(first.locator(".passage.own p")).to_contain_text("Coral bleaching")
    expect(first.locator(".passage.other .passage-meta a")).to_be_visible()
    expect(first.locator(".conn-engines .engine")).to_have_count(3)
    expect(first.locator(".conn-score")).to_have_text(re.compile(r"^0\.\d\d$"))
    snap(page, shots, "30-document-connections")

    # validate the first, star the second, reject the last
    first.get_by_role("button", name="Validate").click()
    expect(
        panel.locator("#connections > li.conn-card").nth(0).locator(".tag-validated")
    ).to_be_visible()
    second = panel.locator("#connections > li.conn-card").nth(1)
    second.get_by_role("button", name="☆ Star").click()
    expect(
        panel.locator("#connections > li.conn-card").nth(1).locator(".tag-starred")
    ).to_be_visible()
    last = panel.locator("#connections > li.conn-card").last
    rejected_id = last.get_attribute("data-connection-id")
    last.get_by_role("button", name="Reject").click()
    expect(panel.locator("#connections > li.conn-card")).to_have_count(count - 1)
    rejected = page.locator(".rejected-connections")
    expect(rejected.locator("summary .count")).to_have_text("1")
    snap(page, shots, "31-decided")

    # undo the rejection, then reject again
    rejected.locator("summary").click()
    rejected.get_by_role("button", name="Undo reject").click()
    expect(panel.locator("#connections > li.conn-card")).to_have_count(count)
    expect(page.locator(".rejected-connections")).to_have_count(0)
    panel.locator(f'li.conn-card[data-connection-id="{rejected_id}"]').get_by_role(
        "button", name="Reject"
    ).click()
    expect(panel.locator("#connections > li.conn-card")).to_have_count(count - 1)
    # undo the validation of the first one and validate it again
    panel.locator("#connections > li.conn-card").nth(0).get_by_role(
        "button", name="✓ Validated"
    ).click()
    expect(
        panel.locator("#connections > li.conn-card").nth(0).locator(".tag-validated")
    ).to_have_count(0)
    panel.locator("#connections > li.conn-card").nth(0).get_by_role(
        "button", name="Validate"
    ).click()
    expect(
        panel.locator("#connections > li.conn-card").nth(0).locator(".tag-validated")
    ).to_be_visible()

    # the Connections page: state tabs with counts, filters, sorting
    page.click("text=Connections >> nth=0")
    expect(page).to_have_url(re.compile(r"/connections$"))
    expect(page.locator('[data-state-tab="validated"] .count')).to_have_text("1")
    expect(page.locator('[data-state-tab="starred"] .count')).to_have_text("1")
    expect(page.locator('[data-state-tab="rejected"] .count')).to_have_text("1")
    all_cards = page.locator("#connections-main li.conn-card")
    visible = all_cards.count()
    assert visible >= count - 1
    snap(page, shots, "32-connections-page")
    page.select_option('select[name="state"]', "validated")
    expect(page).to_have_url(re.compile(r"state=validated"))
    expect(all_cards).to_have_count(1)
    expect(all_cards.first.locator(".tag-validated")).to_be_visible()
    page.select_option('select[name="state"]', "rejected")
    expect(all_cards).to_have_count(1)
    expect(all_cards.first).to_have_attribute("data-connection-id", rejected_id or "")
    page.select_option('select[name="state"]', "visible")
    page.select_option('select[name="engine"]', "semantic")
    expect(page).to_have_url(re.compile(r"engine=semantic"))
    semantic = all_cards.count()
    assert 0 < semantic <= visible
    for i in range(semantic):
        expect(all_cards.nth(i).locator('.engine[data-engine="semantic"]')).not_to_have_class(
            re.compile(r"\boff\b")
        )
    page.select_option('select[name="engine"]', "")
    expect(page).not_to_have_url(re.compile(r"engine="))
    page.fill('input[name="min_score"]', "0.99")
    page.click("#conn-filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"min_score=0\.99"))
    expect(page.locator("#connections-main .empty")).to_be_visible()
    page.fill('input[name="min_score"]', "")
    page.click("#conn-filters button[type=submit]")
    expect(page).not_to_have_url(re.compile(r"min_score=0"))
    page.select_option('select[name="sort"]', "score_asc")
    expect(page).to_have_url(re.compile(r"sort=score_asc"))
    scores = [float(s) for s in all_cards.locator(".conn-score").all_inner_texts()]
    assert scores == sorted(scores) and len(scores) == visible
    page.select_option('select[name="document"]', coral)
    expect(page).to_have_url(re.compile(rf"document={coral}"))
    snap(page, shots, "33-connections-filtered")

    # a reprocess (smart) from the page; its counts on the job page
    page.goto("/connections")
    form = page.locator("form[data-reprocess]")
    form.locator('select[name="mode"]').select_option("smart")
    form.get_by_role("button", name="Reprocess").click()
    link = form.locator("a.reprocess-job")
    job_id = (link.get_attribute("href") or "").rsplit("/", 1)[-1]
    link.click()
    _wait_job(live_server, job_id)
    expect(page.locator("#job-status .status")).to_have_text("Completed", timeout=15_000)
    counts = page.locator("#reprocess-counts")
    expect(counts).to_be_visible()
    expect(counts.locator('[data-count="before"]')).to_have_text(str(visible))
    expect(counts.locator('[data-count="after"]')).to_have_text(re.compile(r"^\d+$"))
    expect(counts.locator('[data-count="backups"]')).to_contain_text("connections-backup-")
    snap(page, shots, "34-reprocess-counts")

    # the decisions survived it
    page.goto(f"/documents/{coral}")
    expect(page.locator("#connections-panel .tag-validated")).to_have_count(1)
    expect(page.locator("#connections-panel .tag-starred")).to_have_count(1)
    expect(page.locator(".rejected-connections summary .count")).to_have_text("1")
