"""The operator's view over HTTP on both stores: lifetime Prometheus counters that grow by
exactly what ran, the dashboard and Stats over a seeded history, workers (live and dead,
with the jobs taken over from the dead one), a job's log, durations, sorting, id
prefixes, labels instead of raw names, no stale errors, paged document pages."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from rhizome.jobs.model import ErrorType, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from tests.helpers import make_worker
from tests.operator_history import SEED_TYPE, Raw, seed_job
from tests.web import helpers as h

HTML = {"Accept": "text/html"}


@pytest.fixture
def raw(db_url: str) -> Raw:
    return Raw(db_url)


@pytest.fixture
def info_logs() -> Iterator[None]:
    logger = logging.getLogger("rhizome")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def grew(before: dict, after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_counters_grow_by_exactly_what_ran(
    client: TestClient, store: SqlJobStore, storage: LocalStorage, raw: Raw
) -> None:
    before = scrape(client)
    # a job whose worker "dies": claimed with a lease that then lies in the past
    [ghost] = store.enqueue([NewJob("noop", {}, priority=100)])
    assert [j.id for j in store.claim("ghost-host:1:dead", 1, 300, None)] == [ghost.id]
    past = raw.time(datetime.now(UTC) - timedelta(minutes=1))
    raw.run("UPDATE background_jobs SET lease_expires_at = %s WHERE id = %s", (past, ghost.id))
    store.enqueue([NewJob("noop", {"stages": 1}) for _ in range(3)])
    [flaky] = store.enqueue([NewJob("noop", {"fail_times": 1})])  # transient, then fine
    make_worker(store, storage, burst=True).run()
    store.promote_retries(as_of=datetime.now(UTC) + timedelta(days=1))  # if still waiting
    make_worker(store, storage, burst=True).run()
    assert store.get(flaky.id).attempt == 2 and store.get(ghost.id).attempt == 2
    after = scrape(client)
    # the job's API answer and page say that its worker died once
    shown = client.get(f"/api/jobs/{ghost.id}").json()["job"]
    assert (shown["takeovers"], shown["infra_retries"]) == (1, 0)
    assert "its worker died 1\u00d7" in client.get(f"/jobs/{ghost.id}").text
    assert "its worker died" not in client.get(f"/jobs/{flaky.id}").text

    noop = {"job_type": "noop"}
    assert grew(before, after, "rhizome_job_runs_total", outcome="completed", **noop) == 5
    assert grew(before, after, "rhizome_job_runs_total", outcome="retry", **noop) == 1
    assert grew(before, after, "rhizome_job_retries_total", **noop) == 1
    assert grew(before, after, "rhizome_job_takeovers_total", **noop) == 1
    assert grew(before, after, "rhizome_job_claims_total", **noop) == 6
    assert grew(before, after, "rhizome_job_run_seconds_count", **noop) == 6
    assert grew(before, after, "rhizome_job_run_seconds_bucket", le="+Inf", **noop) == 6
    # claim latency: the first claims and the retry (a takeover's due time is not a queue's)
    assert grew(before, after, "rhizome_job_claim_latency_seconds_count", **noop) == 5
    assert grew(before, after, "rhizome_job_run_seconds_sum", **noop) > 0
    # the workers stopped: their series were folded into the retired workers' row
    assert {str(r["metric"]) for r in store.metric_totals()} >= {"runs", "claims"}
    text = client.get("/metrics").text
    assert "# TYPE rhizome_job_runs_total counter" in text
    assert "# TYPE rhizome_job_run_seconds histogram" in text


def test_dashboard_and_stats_over_a_seeded_history(
    client: TestClient, store: SqlJobStore, raw: Raw
) -> None:
    now = datetime.now(UTC)
    for minutes, seconds in ((50, 30), (30, 60), (10, 90)):
        seed_job(store, raw, minutes_ago=minutes, run_seconds=seconds, now=now)
    seed_job(store, raw, minutes_ago=5, run_seconds=3, fail=True, now=now)
    h.new(store, SEED_TYPE, run_at=now + timedelta(days=1))  # pending now

    data = client.get("/api/dashboard?window=hour").json()
    assert data["bucket_seconds"] == 60 and len(data["buckets"]) == 60
    assert sum(data["completed"][SEED_TYPE]) == 3 and sum(data["failed"][SEED_TYPE]) == 1
    assert data["totals"]["completed"] == 3 and data["totals"]["now_pending"] == 1
    assert data["depth"]["pending"][-1] == 1 and data["depth"]["processing"][0] == 0
    p95 = [v for v in data["run_time"][SEED_TYPE]["p95"] if v is not None]
    assert sorted(round(v) for v in p95) == [30, 60, 90]
    assert [round(v) for v in data["claim_latency"]["p50"] if v is not None] == [60] * 4
    assert [t["label"] for t in data["types"]] == ["Legacy import"]

    stats = client.get("/api/stats?window=day").json()
    [row] = stats["types"]
    assert (row["completed"], row["failed"]) == (3, 1)
    assert row["run_time"]["count"] == 3 and round(row["run_time"]["p50"]) == 60
    assert round(row["run_time"]["p95"]) == 87
    assert [(s["stage"], s["count"], round(s["p50"])) for s in row["stages"]] == [
        ("load", 4, 30),
        ("save", 4, 15),
    ]
    assert client.get("/api/stats?window=year").status_code == 422

    page = client.get("/dashboard?window=hour", headers=HTML).text
    assert page.count('class="chart chart-') == 5
    assert 'id="chart-completed"' in page and 'data-series="legacy_import"' in page
    stats_page = client.get("/stats", headers=HTML).text
    assert 'data-stage="load"' in stats_page and "Legacy import" in stats_page


def test_workers_live_and_dead(client: TestClient, store: SqlJobStore, raw: Raw) -> None:
    dead, live = "dead-host:7:aaaaaa", "live-host:8:bbbbbb"
    store.register_worker(dead, "dead-host", 7, 2, ["noop"])
    store.register_worker(live, "live-host", 8, 4, ["noop"])
    [job] = store.enqueue([NewJob("noop", {})])
    store.claim(dead, 1, 300, None)
    old = raw.time(datetime.now(UTC) - timedelta(minutes=10))
    raw.run("UPDATE workers SET last_seen_at = %s WHERE id = %s", (old, dead))
    raw.run("UPDATE background_jobs SET lease_expires_at = %s WHERE id = %s", (old, job.id))
    store.expire_leases()
    store.claim(live, 1, 300, None)
    client.post("/api/queue/pause", json={"type": "export_documents"})

    data = client.get("/api/workers").json()
    by_id = {w["id"]: w for w in data["workers"]}
    assert by_id[dead]["state"] == "dead" and by_id[live]["state"] == "live"
    assert [j["id"] for j in by_id[dead]["taken_over"]] == [job.id]
    assert [j["id"] for j in by_id[live]["running"]] == [job.id]
    assert by_id[live]["concurrency"] == 4 and by_id[live]["host"] == "live-host"
    assert data["queue"]["export_documents"]["paused"] is True
    page = client.get("/workers", headers=HTML).text
    assert 'data-state="dead"' in page and f'href="/jobs/{job.id}"' in page
    assert "Paused job types: Export" in page  # the banner, on every page
    assert "Paused job types: Export" in client.get("/", headers=HTML).text


def test_job_log_durations_labels_and_prefixes(
    client: TestClient, store: SqlJobStore, storage: LocalStorage, info_logs: None
) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 2, "units": 2, "log_units": True})])
    make_worker(store, storage, burst=True).run()
    short = job.short_id
    detail = client.get(f"/api/jobs/{short}").json()["job"]
    assert detail["id"] == job.id and detail["status_text"] == "Completed"
    assert [s["label"] for s in detail["durations"]["stages"]] == ["Step 1 of 2", "Step 2 of 2"]
    assert detail["durations"]["runs"] == 1 and detail["durations"]["run_seconds"] > 0
    assert detail["events"][-1]["to_text"] == "Completed"
    assert any(e["text"] == "Step 1 of 2 started" for e in detail["events"])
    logs = client.get(f"/api/jobs/{short}/logs").json()
    assert [line["message"] for line in logs["lines"]][-1] == "Step 2 of 2: unit 2 of 2 done"
    assert len(client.get(f"/api/jobs/{job.id}/logs?tail=2").json()["lines"]) == 2
    page = client.get(f"/jobs/{short}", headers=HTML).text
    assert 'id="job-log"' in page and "unit 2 of 2 done" in page and 'id="stage-times"' in page
    assert client.get(f"/api/jobs/{job.id[:6]}").status_code == 404
    assert client.post(f"/api/jobs/{short}/retry").status_code == 409  # found; not retryable
    assert client.delete(f"/api/jobs/{short}").json() == {"deleted": job.id}

    missing = client.get("/jobs/00000000-0000-0000-0000-000000000000", headers=HTML)
    assert missing.status_code == 404 and "<title>Job not found" in missing.text


def test_sorting_and_stage_filter(client: TestClient, store: SqlJobStore) -> None:
    running = [h.running(store, stage="chunk", percent=p) for p in (50, 10, 90)]
    done = h.running(store, stage="chunk", percent=60)
    store.complete(h.WORKER, [(done.id, {})])
    ids = [
        j["id"] for j in client.get("/api/jobs?sort=progress_desc&include_hidden=1").json()["jobs"]
    ]
    assert ids == [done.id, running[2].id, running[0].id, running[1].id]  # completed = 100 %
    listed = client.get("/api/jobs?stage=chunk&include_hidden=1").json()
    assert {j["id"] for j in listed["jobs"]} == {j.id for j in running}  # unfinished only
    assert listed["counts"]["by_stage"] == {"chunk": 3}
    assert client.get("/api/jobs?sort=sideways").status_code == 422
    panel = client.get("/jobs?sort=progress_asc&hidden=1", headers=HTML).text
    assert 'aria-sort="ascending"' in panel and "sort=progress_desc" in panel  # toggles
    assert 'name="sort" value="progress_asc"' in panel  # the search keeps the order
    assert ">Chunking <span" in panel  # the stage chip's label, not "chunk"


def test_errors_are_current_and_retries_wording(client: TestClient, store: SqlJobStore) -> None:
    recovered = h.running(store)
    store.fail(
        recovered.id, h.WORKER, error_type=ErrorType.TRANSIENT, last_error="timeout",
        error_message="Timed out.", retry_delay=0,
    )  # fmt: skip
    store.promote_retries(as_of=datetime.now(UTC) + timedelta(days=1))
    store.claim(h.WORKER, 1, 300, None)
    store.complete(h.WORKER, [(recovered.id, {})])
    job = client.get(f"/api/jobs/{recovered.id}").json()["job"]
    assert job["status"] == "completed" and job["error_type"] is None
    assert job["error_message"] is None and job["previous_error"]["error_text"]
    page = client.get(f"/jobs/{recovered.id}", headers=HTML).text
    assert 'id="error-panel"' not in page and 'id="recovered"' in page

    exhausted = h.running(store)
    store.fail(
        exhausted.id, h.WORKER, error_type=ErrorType.TRANSIENT, last_error="timeout",
        error_message="Timed out.", retry_delay=None,
    )  # fmt: skip
    job = client.get(f"/api/jobs/{exhausted.id}").json()["job"]
    assert job["error_text"] == "Temporary problem"
    assert "retries are used up" in job["error_guidance"]
    assert "retries automatically" not in job["error_guidance"]
    page = client.get(f"/jobs/{exhausted.id}", headers=HTML).text
    assert 'data-error-type="transient">Temporary problem<' in page


def test_document_page_in_pages_and_pasted_titles(
    client: TestClient, store: SqlJobStore, storage: LocalStorage
) -> None:
    texts = tuple(f"Chunk number {i} about whales." for i in range(120))
    doc, _ = h.document_with_chunks(store, storage, texts=texts)
    page = client.get(f"/documents/{doc.id}", headers=HTML).text
    assert page.count('class="chunk"') == 50 and f"/documents/{doc.id}/chunks?offset=50" in page
    more = client.get(f"/documents/{doc.id}/chunks?offset=100", headers=HTML).text
    assert more.count('class="chunk"') == 20 and "Show more chunks" not in more
    added = client.post("/api/documents/text", json={"text": "# Notes on *whales*\n\nBody."})
    assert added.status_code in (200, 201), added.text
    assert added.json()["document"]["title"] == "Notes on whales"
