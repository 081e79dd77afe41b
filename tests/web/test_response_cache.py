"""The response cache of the read endpoints (job lists and searches, a job, the documents, a
document), on both stores: answers are kept per user and never served to another one; a
change the change feed reports drops the answers it may move before anyone is told of it
(a hidden noop job's leaves the views that hide it alone); a client's own write is seen
at once; an answer computed across a change is not kept; cached answers are the bytes the
endpoints would write without the cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rhizome.app import App
from rhizome.config import Settings
from rhizome.jobs.events import Change
from rhizome.jobs.model import Job, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.storage import LocalStorage
from rhizome.web import create_app
from rhizome.web.readcache import ResponseCache, Scope
from rhizome.web.state import WebState
from tests.web import helpers as h

BOB = {"X-Rhizome-User": "bob"}


def _wait(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Feed:
    """What the change feed told the server (observed after the caches were told)."""

    def __init__(self, state: WebState) -> None:
        self.changes: list[Change] = []
        self.last = time.monotonic()
        self.lock = threading.Lock()
        state.broadcaster.observers.append(self.observe)

    def observe(self, batch: list[Change] | None) -> None:
        with self.lock:
            self.changes.extend(batch or [])
            self.last = time.monotonic()

    def settle(self, *jobs: Job) -> None:
        """Until the feed reported these jobs as they are now, then was quiet for half a
        second (a late report of a job's change would drop the answers a test keeps)."""
        for job in jobs:
            self.saw(
                lambda c, job=job: (
                    c.job is not None
                    and (c.job.id, c.job.status, c.job.updated_at)
                    == (job.id, job.status, job.updated_at)
                )
            )
        _wait(lambda: time.monotonic() - self.last > 0.5, "the change feed to settle")

    def mark(self) -> int:
        with self.lock:
            return len(self.changes)

    def saw(self, what: Callable[[Change], bool], since: int = 0) -> None:
        """Until the feed reported a change (after the ``since`` mark) that ``what``."""

        def seen() -> bool:
            with self.lock:
                return any(what(c) for c in self.changes[since:])

        _wait(seen, "the change feed to report the change")


@pytest.fixture
def live(web: tuple[App, FastAPI]) -> Iterator[tuple[TestClient, WebState, Feed]]:
    """A client of the application with its lifespan: the change feed runs (no worker)."""
    _, fapp = web
    state: WebState = fapp.state.web
    with TestClient(fapp) as client:
        _wait(lambda: state.broadcaster.feed_ok, "the change feed")
        # answers expire only by test_answers_expire's clock, never by a slow machine's
        state.responses.ttl = state.responses.clock_ttl = 3600
        feed = Feed(state)
        feed.settle()
        yield client, state, feed


def _hit(client: TestClient, state: WebState, path: str, **kw: Any) -> tuple[bool, Any]:
    """(whether the answer came from the cache, the answer)."""
    before = state.responses.hits
    r = client.get(path, **kw)
    return state.responses.hits > before, r


def test_answers_are_kept_per_user_and_never_served_to_another(
    live: tuple[TestClient, WebState, Feed], store: SqlJobStore, storage: LocalStorage
) -> None:
    client, state, feed = live
    mine = h.finished(store, "export_documents")
    theirs = h.finished(store, "export_documents", user="bob")
    doc, _ = h.document_with_chunks(store, storage, title="Moby mine")
    bobs_doc, _ = h.document_with_chunks(store, storage, user="bob", title="Moby theirs")
    feed.settle(mine, theirs)
    paths = [
        "/api/jobs",
        "/api/jobs?q=Moby",
        "/api/documents",
        f"/api/documents/{doc.id}",
        f"/api/jobs/{mine.id}",
        f"/api/jobs/{mine.short_id}",
    ]
    for path in paths:
        assert client.get(path).status_code == 200
        hit, r = _hit(client, state, path)
        assert hit and r.status_code == 200, path  # kept for the local user
    # bob asks the same paths: his own answers, never the cached ones of local
    assert [j["id"] for j in client.get("/api/jobs", headers=BOB).json()["jobs"]] == [theirs.id]
    docs = client.get("/api/documents", headers=BOB).json()["documents"]
    assert [d["id"] for d in docs] == [bobs_doc.id]
    for path in paths[3:]:
        assert client.get(path, headers=BOB).status_code == 404, path
    # and local still gets its own (from the cache)
    hit, r = _hit(client, state, "/api/jobs")
    assert hit and [j["id"] for j in r.json()["jobs"]] == [mine.id]
    hit, r = _hit(client, state, "/api/documents", headers=BOB)
    assert hit and [d["id"] for d in r.json()["documents"]] == [bobs_doc.id]
    assert client.get("/api/jobs", headers={"Host": "evil.example"}).status_code == 421


def test_a_change_the_feed_reports_drops_the_answers_it_moves(
    live: tuple[TestClient, WebState, Feed], store: SqlJobStore, storage: LocalStorage
) -> None:
    client, state, feed = live
    job = h.running(store, "export_documents", details="one")
    doc, _ = h.document_with_chunks(store, storage, title="Old title")
    feed.settle(job)
    job_path = f"/api/jobs/{job.id}"
    doc_path = f"/api/documents/{doc.id}"
    for path in ("/api/jobs", job_path, doc_path, "/api/documents"):
        client.get(path)
        assert _hit(client, state, path)[0], path

    # another process's write: once the feed reported it, every answer it moves is fresh
    store.update_progress(job.id, h.WORKER, {"details": "two"})
    feed.saw(lambda c: c.job is not None and c.job.progress.get("details") == "two")
    assert client.get("/api/jobs").json()["jobs"][0]["details"] == "two"
    assert client.get(job_path).json()["job"]["details"] == "two"

    # a hidden noop job's change leaves the views that hide it alone, not the others
    client.get("/api/jobs?include_hidden=true")
    client.get(doc_path)
    noop = h.new(store, "noop")
    feed.saw(lambda c: c.job is not None and c.job.id == noop.id)
    hit, r = _hit(client, state, "/api/jobs")
    assert hit and noop.id not in [j["id"] for j in r.json()["jobs"]]
    hit, r = _hit(client, state, "/api/jobs?include_hidden=true")
    assert not hit and noop.id in [j["id"] for j in r.json()["jobs"]]
    assert _hit(client, state, doc_path)[0]  # noop jobs touch no document

    # a worker's library write comes with its job's change: the document answers follow,
    # and so do the titles the job lists show
    [first] = store.enqueue(
        [NewJob("process_document", {}, entity_type="document", entity_id=doc.id)]
    )
    feed.saw(lambda c: c.job is not None and c.job.id == first.id)
    listed = client.get("/api/jobs").json()["jobs"]
    assert "Old title" in next(j["title"] for j in listed if j["id"] == first.id)
    Library(store).update_document(doc.id, "local", title="New title")
    [work] = store.enqueue(
        [NewJob("process_document", {}, entity_type="document", entity_id=doc.id)]
    )
    feed.saw(lambda c: c.job is not None and c.job.id == work.id)
    assert client.get(doc_path).json()["document"]["title"] == "New title"
    titles = [d["title"] for d in client.get("/api/documents").json()["documents"]]
    assert titles == ["New title"]
    listed = client.get("/api/jobs").json()["jobs"]
    assert all("New title" in j["title"] for j in listed if j["id"] in (first.id, work.id))

    # a timeline entry moves its job's page
    client.get(job_path)
    mark = feed.mark()
    store.request_pause(job.id)
    feed.saw(lambda c: c.event is not None and c.event.job_id == job.id, mark)
    feed.saw(lambda c: c.job is not None and c.job.id == job.id, mark)
    shown = client.get(job_path).json()["job"]
    assert shown["pause_requested"] is True
    assert any("pause" in (e["text"] or "").lower() for e in shown["events"])

    # a deleted job drops its page (and every list)
    client.get(f"/api/jobs/{noop.id}")
    store.delete(noop.id)
    feed.saw(lambda c: c.kind == "deleted" and c.job_id == noop.id)
    assert client.get(f"/api/jobs/{noop.id}").status_code == 404


def test_a_clients_own_writes_are_seen_at_once(
    live: tuple[TestClient, WebState, Feed], store: SqlJobStore
) -> None:
    client, state, feed = live
    bobs = h.new(store, "export_documents", user="bob")
    feed.settle(bobs)
    client.get("/api/jobs")
    assert _hit(client, state, "/api/jobs")[0]
    # an enqueue through the API: in the list at once, before the feed could tell
    created = client.post("/api/jobs", json={"type": "export_documents"}).json()["jobs"][0]
    assert created["id"] in [j["id"] for j in client.get("/api/jobs").json()["jobs"]]
    # a noop enqueued through the API moves nothing that hides it
    feed.settle(store.get(created["id"]))
    client.get("/api/jobs")
    assert client.post("/api/jobs", json={"type": "noop"}).status_code == 201
    assert _hit(client, state, "/api/jobs")[0]
    # any other write of a user drops that user's answers (the admin's: everyone's)
    client.get(f"/api/jobs/{bobs.id}", headers=BOB)
    assert _hit(client, state, f"/api/jobs/{bobs.id}", headers=BOB)[0]
    client.get("/api/jobs")
    assert client.post(f"/api/jobs/{bobs.id}/cancel", headers=BOB).status_code == 200
    hit, r = _hit(client, state, f"/api/jobs/{bobs.id}", headers=BOB)
    assert not hit and r.json()["job"]["status"] == "cancelled"
    assert _hit(client, state, "/api/jobs")[0]  # local's answers stay
    assert client.post(f"/api/jobs/{created['id']}/cancel").status_code == 200
    assert not _hit(client, state, f"/api/jobs/{bobs.id}", headers=BOB)[0]


def test_cached_answers_are_the_answers_without_the_cache(
    web: tuple[App, FastAPI],
    live: tuple[TestClient, WebState, Feed],
    store: SqlJobStore,
    storage: LocalStorage,
) -> None:
    client, state, feed = live
    job = h.finished(store, "export_documents")
    doc, _ = h.document_with_chunks(store, storage, title="Moby")
    [work] = store.enqueue(
        [NewJob("process_document", {}, entity_type="document", entity_id=doc.id)]
    )
    feed.settle(job, work)
    plain = TestClient(web[1])  # no lifespan: no feed, nothing cached
    paths = [
        "/api/jobs",
        "/api/jobs?q=Moby&limit=10",
        "/api/jobs?status=completed&type=export_documents",
        f"/api/jobs/{job.id}",
        "/api/documents?limit=5",
        f"/api/documents/{doc.id}",
    ]
    for path in paths:
        client.get(path)
        hit, cached = _hit(client, state, path)
        assert hit, path
        fresh = plain.get(path)
        assert cached.headers["content-type"] == fresh.headers["content-type"]
        if path.startswith("/api/documents/"):  # its pending job's run time moves: compare JSON
            assert cached.json()["document"] == fresh.json()["document"], path
        else:
            assert cached.content == fresh.content, path


# --- the cache itself -------------------------------------------------------------------------


def test_an_answer_computed_across_a_change_that_moves_it_is_not_kept() -> None:
    cache = ResponseCache(lambda: True)
    ticket = cache.begin(Scope("ann"))
    cache.moved(library=[("ann", "export_documents")])
    cache.end(ticket, "k", b"old")
    assert cache.get("k") is None
    # a change it does not depend on: kept
    for scope, library, jobs in (
        (Scope("ann", ignore=frozenset({"noop"})), [("ann", "noop")], []),
        (Scope("ann"), [("bob", "export_documents")], []),
        (Scope("ann", job="abcd1234"), [("ann", "export_documents")], ["ffff0000-1"]),
    ):
        ticket = cache.begin(scope)
        cache.moved(library=library, jobs=jobs)
        cache.end(ticket, "k", b"kept")
        assert cache.get("k") == b"kept", scope
        cache.invalidate()
    # a job's page asked by a prefix: a change of any job with that prefix drops it
    ticket = cache.begin(Scope("ann", job="abcd1234"))
    cache.end(ticket, "p", b"page", resolved="abcd1234-0000")
    cache.moved(jobs=["abcd1234-9999"])
    assert cache.get("p") is None
    # ... and by a short id (the id's last digits), while it is computed or once kept
    for keep_first in (False, True):
        ticket = cache.begin(Scope("ann", job="9a8b7c6d"))
        if keep_first:
            cache.end(ticket, "s", b"page", resolved="0190-0000-12349a8b7c6d")
        cache.moved(jobs=["0190-ffff-55559a8b7c6d"])
        if not keep_first:
            cache.end(ticket, "s", b"page", resolved="0190-0000-12349a8b7c6d")
        assert cache.get("s") is None, keep_first
    # a deleted job of an unknown user drops every library answer
    for user in ("ann", "bob"):
        cache.end(cache.begin(Scope(user)), user, b"x")
    cache.moved(library=[(None, None)], jobs=[None])
    assert cache.get("ann") is None and cache.get("bob") is None
    # nothing is kept while the feed is down
    down = ResponseCache(lambda: False)
    down.end(down.begin(Scope("ann")), "k", b"x")
    assert down.get("k") is None


def test_answers_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = ResponseCache(lambda: True, ttl=5.0, clock_ttl=1.0)
    cache.end(cache.begin(Scope("ann")), "settled", b"a")
    cache.end(cache.begin(Scope("ann")), "clock", b"b", clock=True)
    now[0] += 2
    assert cache.get("settled") == b"a" and cache.get("clock") is None
    now[0] += 4
    assert cache.get("settled") is None
    off = ResponseCache(lambda: True, ttl=0)  # RHIZOME_API_CACHE_SECONDS=0
    off.end(off.begin(Scope("ann")), "k", b"x")
    assert not off.active and off.get("k") is None


def test_the_cache_forgets_the_oldest_answers_first() -> None:
    cache = ResponseCache(lambda: True, max_items=3)
    for k in range(5):
        cache.end(cache.begin(Scope("ann")), k, b"x")
    assert [cache.get(k) for k in range(5)] == [None, None, b"x", b"x", b"x"]
    cache.forget_user("ann")
    assert cache.get(4) is None and cache.size == 0
    # and by their bytes; an answer too large for the budget is not kept
    cache = ResponseCache(lambda: True, max_bytes=160)
    for k in range(3):
        cache.end(cache.begin(Scope("ann")), k, b"x" * 8)
    cache.end(cache.begin(Scope("ann")), "big", b"x" * 11)
    assert cache.get("big") is None and cache.size == 24
    for k in range(3, 20):
        cache.end(cache.begin(Scope("ann")), k, b"x" * 10)
    assert cache.size <= 160 and cache.get(19) == b"x" * 10 and cache.get(0) is None


def test_a_cached_answer_is_served_only_past_every_check(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    """Answers are looked up inside the security guard: without the token (or, on a
    server without one, from another Host) a request is refused though its answer is
    cached."""
    settings = Settings(database_url=db_url, storage_url=str(storage.root), api_token="s3cret")
    fapp = create_app(App(settings, _store=store, _storage=storage), allowed_hosts=["testserver"])
    state: WebState = fapp.state.web
    token = {"Authorization": "Bearer s3cret"}
    with TestClient(fapp) as client:
        _wait(lambda: state.broadcaster.feed_ok, "the change feed")
        state.responses.ttl = state.responses.clock_ttl = 3600
        feed = Feed(state)
        job = h.finished(store, "export_documents")
        feed.settle(job)
        assert client.get("/api/jobs", headers=token).status_code == 200
        assert _hit(client, state, "/api/jobs", headers=token)[0]
        assert client.get("/api/jobs").status_code == 401
        assert client.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
