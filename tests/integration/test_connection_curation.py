"""Curated connections through ``reprocess_connections`` on both stores, with a small
library from the corpus (hash embeddings: what is tested is what happens to the user's
decisions, not the semantics): ``all`` and ``smart`` keep validated and starred
connections and a rejected pair never comes back; ``add_new`` adds only connections to
the new document; the backup is written before anything is deleted and restores the
decisions when the job fails or is cancelled, and after a worker is killed (kill -9)
right after a document's deletes; decisions survive a re-chunking of the document."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from rhizome.handlers import connections_common
from rhizome.jobs.admin import Admin
from rhizome.jobs.context import JobInterrupted
from rhizome.jobs.model import JobStatus, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import run_inline
from rhizome.library import Library
from rhizome.library.connections import Curation
from rhizome.library.ingest import add_bytes
from rhizome.storage import LocalStorage
from tests.conftest import CORPUS, ROOT
from tests.helpers import make_worker

CRASH_WORKER = ROOT / "tests" / "fixtures" / "crash_reprocess_worker.py"

LIBRARY = {
    "python3": "html/gregoryszorc.com.python3.html",
    "python_org": "html/blog.python.org.html",
    "goats": "html/nationalgeographic.co.uk.goats.html",
    "django": "html/caktusgroup.com.django.html",
}
NEW = "html/blog.python.org.html"  # saved a second time: connects to both Python documents

Pair = tuple[str, str]


@pytest.fixture
def corpus(
    store: SqlJobStore, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The small library, processed, then detected once more with every document there
    (detections during processing depend on which documents were ready yet)."""
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")
    ids = {name: _add(store, storage, path) for name, path in LIBRARY.items()}
    make_worker(store, storage, burst=True).run()
    assert {Library(store).get_document(i, "local").status for i in ids.values()} == {"ready"}
    data = {"mode": "all", "document_ids": list(ids.values())}
    run_inline("reprocess_connections", data, store=store, storage=storage)
    yield ids


def _add(store: SqlJobStore, storage: LocalStorage, path: str) -> str:
    source = CORPUS / path
    return add_bytes(store, storage, source.read_bytes(), filename=source.name).document.id


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a <= b else (b, a)


def rows(store: SqlJobStore) -> dict[Pair, dict[str, Any]]:
    """Every connection row (rejected ones too) by its unordered chunk pair."""
    found: dict[Pair, dict[str, Any]] = {}
    page = Curation(store).search("local", state="all", limit=100_000)
    assert page.total == len(page.items)
    for c in page.items:
        key = _pair(c.source_chunk_id, c.target_chunk_id)
        assert key not in found, f"pair {key} stored twice"
        found[key] = {
            "id": c.id,
            "states": tuple(c.states),
            "score": round(c.combined_score, 5),
            "scores": tuple(sorted((k, round(v, 5)) for k, v in c.engine_scores.items())),
        }
    return found


def visible(store: SqlJobStore) -> set[Pair]:
    return {k for k, v in rows(store).items() if "rejected" not in v["states"]}


def decide(store: SqlJobStore, document_id: str) -> dict[str, Pair]:
    """Validate, star and reject one connection each of the document."""
    curation = Curation(store)
    conns = curation.search("local", document_id=document_id, limit=3).items
    assert len(conns) == 3, "the corpus documents must connect"
    out = {}
    for action, conn in zip(("validate", "star", "reject"), conns, strict=True):
        curation.decide(conn.id, "local", action)
        out[action] = _pair(conn.source_chunk_id, conn.target_chunk_id)
    return out


def check_decisions(store: SqlJobStore, decided: dict[str, Pair]) -> None:
    now = rows(store)
    assert now[decided["validate"]]["states"] == ("validated",)
    assert now[decided["star"]]["states"] == ("starred",)
    assert decided["reject"] not in visible(store)


def check_counts(out: dict[str, Any]) -> None:
    assert out["before"] + out["added"] - out["removed"] == out["after"], out
    assert out["kept"] == out["before"] - out["removed"], out


def run_sql(db_url: str, sql: str, params: tuple[Any, ...]) -> None:
    """Change the database behind the library's back (to simulate a loss)."""
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            conn.execute(sql.replace("%s", "?"), params)
    else:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql, params)


# --- the modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["all", "smart"])
def test_all_and_smart_keep_decisions_and_rejected_pairs_never_come_back(
    store: SqlJobStore, storage: LocalStorage, corpus: dict[str, str], db_url: str, mode: str
) -> None:
    python3 = corpus["python3"]
    decided = decide(store, python3)
    before = rows(store)
    rejected_row = before[decided["reject"]]

    run = run_inline("reprocess_connections", {"mode": mode}, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED, run.runs
    out = run.output
    assert out is not None and out["mode"] == mode and out["documents"] == len(corpus)
    check_decisions(store, decided)
    check_counts(out)
    assert out["before"] == len({k for k, v in before.items() if "rejected" not in v["states"]})
    assert out["after"] == len(visible(store))
    after = rows(store)
    if mode == "smart":  # decided rows are left exactly as they were
        for action in ("validate", "star", "reject"):
            assert after[decided[action]] == before[decided[action]]
    elif decided["reject"] in after:  # all: found again, it stays, hidden
        assert after[decided["reject"]]["states"] == ("rejected",)
        assert after[decided["reject"]]["id"] == rejected_row["id"]

    # the backups hold every decision, written before the deletes: one per document with
    # decided connections (both ends of the decided pairs), each with the decisions on it
    doc_of = {
        c.id: c.document_id for d in corpus.values() for c in Library(store).list_chunks(d, "local")
    }
    flags = {
        "validate": (True, False, False),
        "star": (False, True, False),
        "reject": (False, False, True),
    }
    expected: dict[str, dict[Pair, tuple[bool, bool, bool]]] = {}
    for action, pair in decided.items():
        for chunk in pair:
            expected.setdefault(doc_of[chunk], {})[pair] = flags[action]
    assert out["backup_first"] is True and len(out["backups"]) == len(expected)
    for key in out["backups"]:
        data = json.loads(storage.get(key))
        assert key.startswith(f"documents/local/{data['document_id']}/connections-backup-")
        states = {
            _pair(c["source_chunk_id"], c["target_chunk_id"]): (
                c["validated"],
                c["starred"],
                c["rejected"],
            )
            for c in data["connections"]
        }
        assert states == expected[data["document_id"]]
        assert len(data["rejections"]) == sum(f[2] for f in states.values())

    # a later detection of the document does not bring the rejected pair back either
    again = run_inline("detect_connections", {"document_id": python3}, store=store, storage=storage)
    assert again.job.status is JobStatus.COMPLETED
    check_decisions(store, decided)
    # nor does a second reprocess, in the other mode
    other = "smart" if mode == "all" else "all"
    run_inline("reprocess_connections", {"mode": other}, store=store, storage=storage)
    check_decisions(store, decided)
    # nor a detection when the rejected row itself is gone: the rejection is remembered by
    # the content of the two passages
    a, b = decided["reject"]
    run_sql(db_url, "DELETE FROM connections WHERE source_chunk_id IN (%s, %s)", (a, b))
    assert decided["reject"] not in rows(store)
    run_inline("detect_connections", {"document_id": python3}, store=store, storage=storage)
    assert rows(store)[decided["reject"]]["states"] == ("rejected",)
    check_decisions(store, decided)


def test_add_new_adds_only_connections_to_the_new_document(
    store: SqlJobStore, storage: LocalStorage, corpus: dict[str, str]
) -> None:
    fresh = run_inline("reprocess_connections", {"mode": "all"}, store=store, storage=storage)
    assert fresh.job.status is JobStatus.COMPLETED
    decided = decide(store, corpus["python3"])
    before = rows(store)
    # a new document, processed, whose own detection has not run (so add_new has work)
    new = _add(store, storage, NEW)
    make_worker(store, storage, burst=True, job_types=["process_document"]).run()
    admin = Admin(store, storage, user_id="local")
    for job in store.list_jobs(user_id="local", entity_id=new, limit=10):
        if job.job_type == "detect_connections":
            admin.cancel(job.id)
    assert rows(store) == before

    run = run_inline(
        "reprocess_connections",
        {"mode": "add_new", "document_ids": list(corpus.values())},
        store=store,
        storage=storage,
    )
    assert run.job.status is JobStatus.COMPLETED, run.runs
    out = run.output
    assert out is not None
    assert out["backup_first"] is False and out["backups"] == []  # it deletes nothing
    after = rows(store)
    assert {k: v for k, v in after.items() if k in before} == before  # untouched, same ids
    added = set(after) - set(before)
    assert added, "the copy must connect to the Python documents"
    new_chunks = {c.id for c in Library(store).list_chunks(new, "local")}
    assert all(a in new_chunks or b in new_chunks for a, b in added)
    shown = added & visible(store)
    assert (out["added"], out["removed"]) == (len(shown), 0)
    check_counts(out)
    check_decisions(store, decided)
    python_org = next(d for d in out["per_document"] if d["document_id"] == corpus["python_org"])
    assert python_org["added"] > 0 and python_org["removed"] == 0
    # nothing is new any more
    again = run_inline(
        "reprocess_connections",
        {"mode": "add_new", "document_ids": list(corpus.values())},
        store=store,
        storage=storage,
    )
    assert again.output is not None and again.output["added"] == 0
    assert rows(store) == after


# --- the backup: failure, cancel, kill -9 ----------------------------------------------------


def _fabricated_rejection(store: SqlJobStore, corpus: dict[str, str]) -> Pair:
    """A rejected connection no engine finds (python3 ↔ django): mode all deletes it."""
    library = Library(store)
    a = library.list_chunks(corpus["python3"], "local")[0]
    b = library.list_chunks(corpus["django"], "local")[0]
    found = [
        {
            "source_chunk_id": a.id,
            "target_chunk_id": b.id,
            "source_document_id": a.document_id,
            "target_document_id": b.document_id,
            "source_text": a.text,
            "target_text": b.text,
            "scores": {"semantic": 0.7},
            "combined": 0.7,
            "reason": "by hand",
        }
    ]
    curation = Curation(store)
    curation.save_detection(corpus["python3"], "local", found, mode="add_new")
    [conn] = [
        c
        for c in curation.search("local", document_id=corpus["django"]).items
        if c.source_chunk_id == a.id
    ]
    curation.decide(conn.id, "local", "reject")
    return _pair(a.id, b.id)


@pytest.mark.parametrize("how", ["fail", "cancel"])
def test_a_failed_or_cancelled_reprocess_restores_the_decisions_from_its_backup(
    store: SqlJobStore,
    storage: LocalStorage,
    corpus: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    decided = decide(store, corpus["python3"])
    lost = _fabricated_rejection(store, corpus)
    second = corpus["python_org"]
    real = connections_common.Detection.run_batch

    def broken(self: connections_common.Detection, engine: str, batch: Any) -> Any:
        if self.document_id == second:  # the second document, after the first's deletes
            if how == "cancel":
                raise JobInterrupted("cancel", "cancelled by user")
            raise RuntimeError("engine exploded")
        return real(self, engine, batch)

    monkeypatch.setattr(connections_common.Detection, "run_batch", broken)
    data = {"mode": "all", "document_ids": [corpus["python3"], second, corpus["goats"]]}
    run = run_inline("reprocess_connections", data, store=store, storage=storage)
    assert run.runs[0].outcome == ("cancelled" if how == "cancel" else "failed"), run.runs
    # mode all deleted the rejected connection with the first document; the backup put
    # it back (still rejected, so still hidden)
    assert rows(store)[lost]["states"] == ("rejected",)
    check_decisions(store, decided)
    assert any(m.startswith("restored 1 user-decided connection") for m in run.messages)


@pytest.mark.parametrize("when", ["after", "before"])
def test_kill_9_after_the_deletes_restores_every_decision_from_the_backup(
    store: SqlJobStore, storage: LocalStorage, db_url: str, corpus: dict[str, str], when: str
) -> None:
    """A real worker process dies (os._exit, as kill -9) right after the first
    document's deletes and inserts were committed — with the checkpoint saying so
    (``after``) or not (``before``). Then, as if those deletes had also cost the user's
    validated and starred connections, they are removed behind the job's back. The
    worker that takes the job over restores them from the backup; the result is the same
    as an uninterrupted reprocess, with nothing lost and no pair stored twice."""
    data = {"mode": "all", "document_ids": [corpus["python3"], corpus["python_org"]]}
    decided = decide(store, corpus["python3"])
    clean = run_inline("reprocess_connections", data, store=store, storage=storage)
    expected = rows(store)
    check_decisions(store, decided)

    [job] = store.enqueue([NewJob("reprocess_connections", data, user_id="local")])
    proc = subprocess.run(
        [sys.executable, str(CRASH_WORKER), db_url, str(storage.root), when, "1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert store.get(job.id).status is JobStatus.PROCESSING
    backups = [k for k in storage.list(f"documents/local/{corpus['python3']}/") if "backup" in k]
    assert len(backups) == 2  # the clean run's and the killed run's
    for action in ("validate", "star"):
        a, b = decided[action]
        run_sql(
            db_url,
            "DELETE FROM connections WHERE source_chunk_id IN (%s, %s)"
            " AND target_chunk_id IN (%s, %s)",
            (a, b, a, b),
        )
    assert decided["validate"] not in rows(store)

    time.sleep(1.2)  # the dead worker's 1 s lease runs out
    make_worker(store, storage, burst=True).run()
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempt == 2
    messages = [e.message or "" for e in store.events(job.id)]
    assert any("lease expired" in m for m in messages)
    assert any(m.startswith("restored 2 user-decided connection") for m in messages), messages
    check_decisions(store, decided)
    assert rows(store).keys() == expected.keys()
    assert {k: v["states"] for k, v in rows(store).items()} == {
        k: v["states"] for k, v in expected.items()
    }
    out, reference = done.output_data, clean.output
    assert out is not None and reference is not None
    for key in ("before", "after", "added", "kept", "removed", "documents"):
        assert out[key] == reference[key], key


# --- chunks replaced ------------------------------------------------------------------------


def test_decisions_survive_when_the_chunks_are_replaced(
    store: SqlJobStore, storage: LocalStorage, corpus: dict[str, str], db_url: str
) -> None:
    python3 = corpus["python3"]
    decided = decide(store, python3)
    library = Library(store)
    old_chunks = {c.id for c in library.list_chunks(python3, "local")}
    key, count = Curation(store).write_backup(storage, python3, "local")
    assert key is not None and count == 3
    # the document is processed again: new chunks (new ids), same texts
    [first] = [
        j for j in store.list_jobs(entity_id=python3, limit=10) if j.job_type == "process_document"
    ]
    store.enqueue(
        [
            NewJob(
                "process_document",
                first.input_data,
                user_id="local",
                entity_type="document",
                entity_id=python3,
            )
        ]
    )
    make_worker(store, storage, burst=True).run()
    new_chunks = {c.id for c in library.list_chunks(python3, "local")}
    assert new_chunks and not new_chunks & old_chunks
    now = rows(store)
    moved = {
        action: next(
            k
            for k, v in now.items()
            if v["states"] == (state,) and (k[0] in new_chunks or k[1] in new_chunks)
        )
        for action, state in (
            ("validate", "validated"),
            ("star", "starred"),
            ("reject", "rejected"),
        )
    }
    check_decisions(store, moved)
    assert not set(decided.values()) & set(now)  # the old chunks are gone
    # a backup taken before the re-chunking restores onto the new chunks (by content)
    run_sql(db_url, "DELETE FROM connections WHERE user_id = %s", ("local",))
    restored = Curation(store).restore(json.loads(storage.get(key)), "local")
    assert restored == 3
    check_decisions(store, moved)


def test_two_detections_saving_at_once_store_a_pair_found_from_both_sides_once(
    store: SqlJobStore, storage: LocalStorage, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two documents detected at the same time (a worker runs several jobs) each find the
    pair between them from their own side. The insert checks that the reversed pair is
    not stored yet, but on PostgreSQL that check cannot see the other transaction's
    uncommitted row, so both were stored (the flaky failure of the test above: "pair
    stored twice"). Every transaction that inserts connections now takes the user's lock
    first: the second save waits for the first and then finds the pair stored."""
    docs = [
        add_bytes(store, storage, text.encode(), filename=f"{name}.md").document.id
        for name, text in (("a", "# Coral\n\nCoral reefs bleach."), ("b", "# Reef\n\nReefs."))
    ]
    make_worker(store, storage, burst=True).run()
    run_sql(db_url, "DELETE FROM connections WHERE user_id = %s", ("local",))
    library = Library(store)
    a = library.list_chunks(docs[0], "local")[0]
    b = library.list_chunks(docs[1], "local")[0]

    def found(source: Any, target: Any) -> list[dict[str, Any]]:
        return [
            {
                "source_chunk_id": source.id,
                "target_chunk_id": target.id,
                "source_document_id": source.document_id,
                "target_document_id": target.document_id,
                "source_text": source.text,
                "target_text": target.text,
                "scores": {"semantic": 0.8},
                "combined": 0.8,
                "reason": "similar",
            }
        ]

    inserted, release = threading.Event(), threading.Event()
    first_thread: list[threading.Thread] = []
    real_transaction = store.transaction

    @contextlib.contextmanager
    def transaction(queries: Any = None) -> Iterator[Any]:
        with real_transaction(queries) as tx:
            if threading.current_thread() in first_thread:
                yield _HoldAfterInsert(tx, inserted, release)
            else:
                yield tx

    monkeypatch.setattr(store, "transaction", transaction)
    curation = Curation(store)
    errors: list[BaseException] = []

    def save(document_id: str, rows: list[dict[str, Any]]) -> None:
        try:
            curation.save_detection(document_id, "local", rows, mode="all")
        except BaseException as exc:  # reported below
            errors.append(exc)

    first = threading.Thread(target=save, args=(docs[0], found(a, b)))
    second = threading.Thread(target=save, args=(docs[1], found(b, a)))
    first_thread.append(first)
    first.start()
    assert inserted.wait(30), "the first save never inserted"
    second.start()  # the first one's transaction is still open, its row not committed
    second.join(timeout=1.0)
    blocked = second.is_alive()
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert not errors, errors
    assert blocked, "the second save did not wait for the first one's lock"
    assert list(rows(store)) == [_pair(a.id, b.id)]  # once, not once per side


class _HoldAfterInsert:
    """A transaction that, after inserting connections, waits to commit until told."""

    def __init__(self, tx: Any, inserted: threading.Event, release: threading.Event) -> None:
        self._tx, self._inserted, self._release = tx, inserted, release

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def many(self, name: str, params: Any) -> None:
        self._tx.many(name, params)
        if name == "conn_insert":
            self._inserted.set()
            self._release.wait(30)
