"""The API under load, on both stores, as behaviour (the numbers are in bench/web/load.py):
50 concurrent clients on a real server with its embedded worker all get their answers;
filter queries specialized for the database mean what the generic ones mean; facet counts
are computed once per change that moves them, not once per request; a page of documents
costs the same queries however many jobs its documents have; a request makes at most two
trips to the thread pool and the pool is bounded."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rhizome.app import App
from rhizome.jobs.model import Facets, JobFilter, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.store.base import FILTER_PARAMS
from rhizome.jobs.store.queries import specialize
from rhizome.storage import LocalStorage
from rhizome.web.app import REQUEST_THREADS
from tests.web import helpers as h
from tests.web.conftest import start_server


def _wait(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# --- filter queries, specialized ------------------------------------------------------------


def _library_of_jobs(store: SqlJobStore) -> list[str]:
    """Jobs of two users, several types, every status, stages, entities and texts."""
    rng = random.Random(5)
    specs = []
    for i in range(60):
        user = "local" if i % 3 else "other"
        kind = ["noop", "detect_connections", "export_documents", "process_document"][i % 4]
        entity = f"doc-{i % 7}" if kind in ("detect_connections", "process_document") else None
        specs.append(
            NewJob(
                kind,
                {"note": f"word{i % 5}"},
                user_id=user,
                entity_type="document" if entity else None,
                entity_id=entity,
            )
        )
    jobs = store.enqueue(specs)
    claimed = store.claim(h.WORKER, 30, 300, None)
    for k, job in enumerate(claimed):
        if k % 3 == 0:
            store.complete(h.WORKER, [(job.id, {})])
        elif k % 3 == 1:
            store.update_progress(job.id, h.WORKER, {"stage": rng.choice(["embed", "chunk"])})
        else:
            store.request_pause(job.id)
    return [j.id for j in jobs]


def _filters(ids: list[str]) -> list[JobFilter]:
    out = []
    for user, types, statuses, extra in itertools.product(
        ("local", None),
        ((), ("detect_connections",), ("noop", "export_documents")),
        ((), ("completed",), ("active", "pausing")),
        (
            {},
            {"exclude_types": ("noop",)},
            {"q": "word3"},
            {"stage": "embed"},
            {"entity_type": "document", "entity_ids": ("doc-1", "doc-3")},
            {"ids": tuple(ids[:10])},
        ),
    ):
        out.append(JobFilter(user_id=user, types=types, statuses=statuses, **extra))
    return out


def test_specialized_filter_queries_mean_what_the_generic_ones_mean(store: SqlJobStore) -> None:
    ids = _library_of_jobs(store)
    queries = store.queries
    for f in _filters(ids):
        params = {**store._filter_params(f), "limit": 1000, "offset": 0}
        with store.session() as s:
            generic = [r["id"] for r in s.all("list_jobs", params)]
            unfiltered = f.without("type").without("status").without("stage")
            generic_facets = s.all("facet_counts", store._filter_params(unfiltered))
        assert [j.id for j in store.search_jobs(f, limit=1000)] == [str(i) for i in generic], f
        facets = store.facet_counts(f)
        expected = Facets.count(
            f, ((r["job_type"], r["shown"], r["stage"], int(r["n"])) for r in generic_facets)
        )
        assert facets.to_dict() == expected.to_dict(), f
        given = {k for k, v in params.items() if k in FILTER_PARAMS and v is not None}
        sql = specialize(queries["list_jobs"], given, FILTER_PARAMS)
        assert "IS NULL OR" not in sql.split("ORDER BY")[0]
    assert len(store.filtered_job_ids(JobFilter(user_id="local"))) == 40


def test_specialize_rewrites_only_optional_conditions() -> None:
    sql = (
        "SELECT 1 WHERE (:a IS NULL OR (x = :a AND y = 'it''s (odd)')) "
        "AND (%(b)s::text[] IS NULL OR z = ANY(%(b)s::text[]) OR w LIKE '\\') "
        "AND (:c IS NULL OR c = :c)"
    )
    out = specialize(sql, {"b"}, {"a", "b"})
    assert out == (
        "SELECT 1 WHERE (1 = 1) AND (z = ANY(%(b)s::text[]) OR w LIKE '\\') "
        "AND (:c IS NULL OR c = :c)"
    )
    assert specialize(sql, {"a"}, {"a"}).startswith(
        "SELECT 1 WHERE ((x = :a AND y = 'it''s (odd)'))"
    )


def test_the_newest_job_of_each_document_in_one_query(store: SqlJobStore) -> None:
    older = store.enqueue(
        [NewJob("process_document", {}, entity_type="document", entity_id=f"d{i}") for i in (1, 2)]
    )
    time.sleep(0.01)
    newer = store.enqueue(
        [
            NewJob("detect_connections", {}, entity_type="document", entity_id="d1"),
            NewJob("noop", {}, user_id="other", entity_type="document", entity_id="d2"),
        ]
    )
    latest = store.latest_jobs("document", ["d1", "d2", "d3"], "local")
    assert {k: v.id for k, v in latest.items()} == {"d1": newer[0].id, "d2": older[1].id}
    assert store.latest_jobs("document", [], "local") == {}
    assert store.latest_jobs("document", ["d2"], None)["d2"].id == newer[1].id


# --- the web layer -----------------------------------------------------------------------------


def _count_calls(obj: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


def test_facet_counts_are_computed_once_per_change_that_moves_them(
    web: tuple[App, FastAPI], store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, fapp = web
    visible = h.new(store, "export_documents")
    h.new(store, "noop")
    counted = _count_calls(store, "facet_counts", monkeypatch)
    cache = fapp.state.web.facet_cache
    with TestClient(fapp) as client:  # the lifespan runs: the change feed feeds the cache
        _wait(lambda: fapp.state.web.broadcaster.feed_ok, "the change feed")
        settled = [cache.version, time.monotonic()]

        def quiet() -> bool:  # the feed's first look at the table is over
            if cache.version != settled[0]:
                settled[:] = [cache.version, time.monotonic()]
            return time.monotonic() - settled[1] > 0.5

        def settle(what: str) -> None:
            settled[1] = time.monotonic()
            _wait(quiet, what)

        settle("the change feed to settle")

        def total() -> int:
            return int(client.get("/api/jobs").json()["total"])

        counted[0] = 0
        assert total() == 1
        for _ in range(5):
            assert total() == 1
        assert counted[0] == 1
        # a hidden job (another process's write) leaves the default view's counts alone
        version, gaps = cache.version, cache.gaps
        h.new(store, "noop")
        _wait(lambda: cache.version != version, "the feed to see the noop job")
        settle("the feed to settle")
        # (on a loaded machine the feed may fall behind and say it missed changes: then,
        # and only then, everything is counted once more)
        assert total() == 1 and counted[0] == 1 + min(cache.gaps - gaps, 1)
        counted[0] = 1
        # progress that moves no count does not recount; a status change does
        version = cache.version
        h.running(store, "export_documents", details="halfway")
        _wait(lambda: cache.version != version, "the feed to see the running job")
        settle("the feed to settle")
        assert total() == 2 and counted[0] == 2
        version = cache.version
        store.request_pause(visible.id)
        _wait(lambda: cache.version != version, "the feed to see the pause")
        settle("the feed to settle")
        body = client.get("/api/jobs").json()
        assert body["counts"]["by_status"].get("paused") == 1 and counted[0] == 3
        # a write through the API is counted at once, before any feed could notice it
        assert client.post("/api/jobs", json={"type": "export_documents"}).status_code == 201
        assert total() == 3
        settle("the feed to see the new job too")
        # a text search is recounted on any change of its user's jobs (text may move)
        client.get("/api/jobs?q=export")
        searches = counted[0]
        client.get("/api/jobs?q=export")
        assert counted[0] == searches
    # without the feed (no lifespan) nothing is cached
    plain = TestClient(fapp)
    before = counted[0]
    plain.get("/api/jobs")
    plain.get("/api/jobs")
    assert counted[0] == before + 2


def test_a_page_of_documents_costs_the_same_whatever_their_jobs(
    client: TestClient, store: SqlJobStore, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [h.document_with_chunks(store, storage, title=f"Doc {i}")[0] for i in range(3)]

    def queries_for_one_page() -> tuple[int, list[Any]]:
        sessions = _count_calls(store, "session", monkeypatch)
        body = client.get("/api/documents").json()["documents"]
        monkeypatch.undo()
        return sessions[0], body

    for doc in docs:
        store.enqueue([NewJob("process_document", {}, entity_type="document", entity_id=doc.id)])
    client.get("/api/documents")  # the guard's look at the users table is cached after this
    few, _ = queries_for_one_page()
    for doc in docs:
        store.enqueue(
            [NewJob("detect_connections", {}, entity_type="document", entity_id=doc.id)] * 20
        )
    last = store.enqueue(
        [NewJob("export_documents", {}, entity_type="document", entity_id=docs[0].id)]
    )[0]
    many, body = queries_for_one_page()
    assert many == few
    newest = {d["id"]: d for d in body}[docs[0].id]
    assert str(newest["job"]["id"]) == last.id


def test_a_request_takes_at_most_two_trips_to_the_thread_pool(
    client: TestClient, store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = h.new(store, "export_documents")
    trips: list[str] = []
    real = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(getattr(func, "func", func), "__qualname__", "?"))
        return await real(func, *args, **kwargs)

    client.get("/api/queue")  # the guard has looked at the users table: cached now
    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    for path in ("/api/jobs", f"/api/jobs/{job.id}", "/api/documents", "/api/queue"):
        trips.clear()
        assert client.get(path).status_code == 200
        assert len(trips) <= 2, (path, trips)  # the endpoint and its answer; no dependency


def test_fifty_concurrent_clients_all_get_their_answers(
    tmp_path: Path, db_url: str, store: SqlJobStore, storage: LocalStorage
) -> None:
    """A real server with its embedded worker busy: every one of 50 clients' requests on
    the list, show and search endpoints is answered, correctly, and nothing is logged as an
    error. The request pool is bounded."""
    docs = [h.document_with_chunks(store, storage, title=f"Moby {i}")[0] for i in range(5)]
    jobs = [h.finished(store, "export_documents").id for _ in range(20)]
    server = start_server(tmp_path, db_url)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            body = {"type": "noop", "input": {"stages": 2, "units": 2, "sleep_ms": 20}}
            for _ in range(10):  # the embedded worker has work meanwhile
                assert c.post("/api/jobs", json=body).status_code == 201
        paths = ["/api/jobs", "/api/jobs?q=Moby", "/api/documents", "/api/jobs?status=completed"]
        paths += [f"/api/jobs/{j}" for j in jobs[:5]] + [f"/api/documents/{d.id}" for d in docs]
        failures: list[str] = []
        answered = [0]
        lock = threading.Lock()

        def client(k: int) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                for i in range(6):
                    path = paths[(k + i) % len(paths)]
                    r = c.get(path)
                    with lock:
                        answered[0] += 1
                        if r.status_code != 200 or not r.json():
                            failures.append(f"{path}: {r.status_code}")

        threads = [threading.Thread(target=client, args=(k,)) for k in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert failures == [] and answered[0] == 300
        with httpx.Client(base_url=server.url, timeout=60) as c:
            listed = c.get("/api/jobs?status=completed&type=export_documents").json()
            assert listed["total"] == 20
    finally:
        server.stop()
    log = server.output()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]


def test_the_request_pool_is_bounded(web: tuple[App, FastAPI]) -> None:
    with TestClient(web[1]) as client:
        tokens = client.portal.call(  # type: ignore[union-attr]
            lambda: anyio.to_thread.current_default_thread_limiter().total_tokens
        )
    assert tokens == REQUEST_THREADS
