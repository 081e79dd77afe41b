"""Every status filter value (the stored statuses and the derived active, pausing,
cancelling, retrying) on the API and the Jobs panel, on both stores: the rows listed are
the ones the jobs core's definition selects, and the counts on the filter chips match the
rows listed."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from rhizome.jobs.model import STATUS_FILTER_MEANING, STATUS_FILTERS
from rhizome.jobs.store import SqlJobStore
from rhizome.web.display import DOCK_STATUSES, STATUS_TEXT
from rhizome.web.sse import snapshot
from tests.status_cases import expected_ids, jobs_in_every_state

HTML = {"accept": "text/html"}
TYPE = "reprocess_connections"  # registered and visible


def chip_counts(html: str) -> dict[str, int]:
    found = re.findall(r'data-filter-status="(\w+)">[^<]*<span class="count">(\d+)</span>', html)
    return {name: int(n) for name, n in found}


def rows(html: str) -> dict[str, str]:
    """job id → the status shown on its row."""
    pattern = r'<tr class="job-row" data-job-id="([0-9a-f-]{36})" data-status="(\w+)"'
    return dict(re.findall(pattern, html))


def test_every_status_on_the_api(client: TestClient, store: SqlJobStore) -> None:
    jobs = jobs_in_every_state(store, TYPE)
    everything = client.get("/api/jobs?limit=500").json()
    assert everything["total"] == len(jobs)
    for value in STATUS_FILTERS:
        want = expected_ids(jobs, value)
        r = client.get(f"/api/jobs?status={value}&limit=500")
        assert r.status_code == 200, r.text
        body = r.json()
        assert {j["id"] for j in body["jobs"]} == want, value
        assert body["total"] == len(want), value
        assert everything["counts"]["by_status"].get(value, 0) == len(want), value
        assert body["counts"]["by_type"].get(TYPE, 0) == len(want), value
        for j in body["jobs"]:
            assert j["status_label"] in STATUS_FILTER_MEANING[value], (value, j["status_label"])
    by_status = everything["counts"]["by_status"]
    assert by_status["failed"] == 1 and by_status["retrying"] == 1  # retrying is not failed

    # bulk actions by filter use the same definition
    r = client.post("/api/jobs/bulk", json={"action": "cancel", "filter": {"status": ["retrying"]}})
    assert r.json()["done"] == [jobs["retrying"].id]
    assert store.get(jobs["failed"].id).status.value == "failed"


def test_every_status_on_the_jobs_panel(client: TestClient, store: SqlJobStore) -> None:
    jobs = jobs_in_every_state(store, TYPE)
    panel = client.get("/jobs", headers=HTML).text
    chips = chip_counts(panel)
    assert set(chips) == set(STATUS_FILTERS)
    for value in STATUS_FILTERS:
        page = client.get(f"/jobs?status={value}", headers=HTML)
        assert page.status_code == 200, page.text
        listed = rows(page.text)
        assert set(listed) == expected_ids(jobs, value), value
        assert chips[value] == len(listed), value  # the chip says what clicking it shows
        assert chip_counts(page.text)[value] == len(listed), value
        for status in listed.values():
            assert status in STATUS_FILTER_MEANING[value], (value, status)
        assert f'data-filter-status="{value}">{STATUS_TEXT[value]} ' in page.text
    assert chips["retrying"] == 1 and chips["failed"] == 1
    # the dock's snapshot: the unfinished jobs (pausing and cancelling ones included)
    state = client.app.state.web  # type: ignore[attr-defined]
    snap = json.loads(snapshot(state.store, state.registry, state.broadcaster, "local"))
    unfinished = {j.id for j in jobs.values() if j.matches_status(DOCK_STATUSES)}
    assert {j["id"] for j in snap["jobs"]} == unfinished
    assert len(unfinished) == 8 and jobs["retrying"].id in unfinished
