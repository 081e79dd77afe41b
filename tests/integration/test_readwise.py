"""Readwise import on both stores: the corpus CSV and JSON against Moby-Dick (the 4 exact
and 2 typography-variant highlights matched at the book's offsets, the one not in the book
and the one from a missing book reported with reasons, a second import adds nothing, the
other format neither), the export API on a loopback server (cursor paging, updatedAfter,
a rate limit with Retry-After, a refused token), skipped highlights, bad files, a forged
upload key, and pause/crash at every safe point."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from rhizome.errors import InvalidInputError
from rhizome.jobs.model import ErrorType, JobStatus
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.testing import INTERRUPTS, run_inline
from rhizome.library.highlights import Highlights
from rhizome.library.ingest import add_bytes
from rhizome.library.integrations import request_readwise_api, request_readwise_file
from rhizome.library.readwise import ReadwiseRepo
from rhizome.library.repo import Library
from rhizome.storage import LocalStorage
from tests.conftest import CORPUS
from tests.integrations import ready_document

READWISE = CORPUS / "readwise"
EXACT = [
    "Call me Ishmael.",
    "It is a way I have of driving off the spleen and regulating the circulation.",
    "then, I account it high time to get to sea as soon as I can.",
    "With a philosophical flourish Cato throws himself upon his sword; I quietly take to the ship.",
]
VARIANTS = {
    "knocking people's hats off": "knocking people\u2019s hats off",
    "Some years ago--never mind how long precisely--having little or no money in my purse": (
        "Some years ago\u2014never mind how long precisely\u2014having little or no money in my "
        "purse"
    ),
}


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")


def moby_dick(store: SqlJobStore, storage: LocalStorage, user: str = "local") -> tuple[str, str]:
    """Moby-Dick processed (hash embedder: matching is text-based); its id and markdown."""
    path = CORPUS / "epub" / "moby-dick.epub"
    added = add_bytes(store, storage, path.read_bytes(), filename=path.name, user_id=user)
    run = run_inline("process_document", job_id=added.job.id, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    doc = Library(store).get_document(added.document.id, user)
    assert (doc.title, doc.author) == ("Moby-Dick", "Herman Melville")
    content = storage.get(f"{doc.storage_folder}/content.md").decode("utf-8")
    return doc.id, content


def import_file(store: SqlJobStore, storage: LocalStorage, name: str, user: str = "local") -> Any:
    raw = (READWISE / name).read_bytes()
    job = request_readwise_file(store, storage, user, raw, name)
    return run_inline("readwise_import", job_id=job.id, store=store, storage=storage)


def test_corpus_export_against_moby_dick(store: SqlJobStore, storage: LocalStorage) -> None:
    doc_id, content = moby_dick(store, storage)
    chapter_one = content.index("# Chapter 1. Loomings.")
    run = import_file(store, storage, "readwise-export.csv")
    assert run.job.status is JobStatus.COMPLETED, run.job.error_message
    out = run.output
    assert out is not None
    assert out["counts"] == {
        "matched": 6,
        "needs_review": 0,
        "unmatched": 2,
        "skipped": 0,
        "duplicates": 0,
    }
    moby, missing = out["books"]
    assert (moby["document_id"], moby["status"], moby["score"]) == (doc_id, "matched", 1.0)
    assert missing["status"] == "unmatched" and missing["document_id"] is None
    assert "A Book Not Imported" in missing["reason"] and missing["candidates"]

    highlights = {h.original_text_or_text: h for h in _highlights(store, doc_id)}
    for text in EXACT:
        h = highlights[text]
        assert (h.status, h.match_method) == ("matched", "exact")
        assert content[h.start : h.end] == text and h.start > chapter_one  # type: ignore[misc]
        assert h.chunk_ids and h.source == "readwise"
    for typed, book_text in VARIANTS.items():
        h = highlights[typed]
        assert (h.status, h.match_method) == ("matched", "normalized")
        assert content[h.start : h.end] == book_text == h.text  # type: ignore[misc]
    cato = highlights[EXACT[3]]
    assert cato.note == "Stoic reference" and cato.tags == ["philosophy", "death"]
    not_in_book = highlights["The whale is a mammal that has never appeared in this book."]
    assert not_in_book.status == "unmatched" and not_in_book.start is None
    assert "not found" in (not_in_book.reason or "")

    ledger = ReadwiseRepo(store)
    rows = ledger.items("local", job_id=run.job.id)
    assert len(rows) == 8  # every highlight has its outcome, the missing book's too
    lost = [r for r in rows if r["book_title"] == "A Book Not Imported"]
    assert lost[0]["status"] == "unmatched" and "not placed" in lost[0]["reason"]
    assert ledger.counts("local") == {"matched": 6, "unmatched": 2}

    again = import_file(store, storage, "readwise-export.csv")
    assert again.output is not None
    assert again.output["counts"]["duplicates"] == 7 and again.output["counts"]["matched"] == 0
    other_format = import_file(store, storage, "readwise-export.json")
    assert other_format.output is not None and other_format.output["format"] == "json"
    assert other_format.output["counts"]["matched"] == 0
    assert Highlights(store).count(doc_id, "local") == 7  # nothing added twice
    assert len(ledger.items("local")) == 8 + 8  # the JSON has its own ids, no new highlights


class _Row:
    def __init__(self, row: dict[str, Any]) -> None:
        self.__dict__.update(row)


def _highlights(store: SqlJobStore, doc_id: str) -> list[Any]:
    """The document's highlights with their reason and original text."""
    with store.session(Highlights(store).queries) as s:
        rows = s.all("export_highlights", {"user_id": "local", "document_id": doc_id})
    out = []
    for r in rows:
        h = Highlights(store).get(str(r["id"]), "local")
        item = _Row(h.to_dict())
        item.reason = r.get("match_reason")
        item.original_text_or_text = r.get("original_text") or h.text
        out.append(item)
    return out


# --- the export API ---------------------------------------------------------------------------


class FakeReadwise:
    """A loopback server that speaks the export API: pages with ``nextPageCursor``,
    ``updatedAfter``, a 429 with ``Retry-After`` on the first request."""

    def __init__(self, books: list[dict[str, Any]], token: str = "t0ken-1234") -> None:
        self.books = books
        self.token = token
        self.requests: list[dict[str, list[str]]] = []
        self.rate_limited = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                outer.requests.append(query)
                if self.headers.get("Authorization") != f"Token {outer.token}":
                    self._send(401, {"detail": "Invalid token."})
                    return
                if not outer.rate_limited:
                    outer.rate_limited = True
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                if url.path != "/api/v2/export/":
                    self._send(404, {})
                    return
                after = (query.get("updatedAfter") or [None])[0]
                books = [b for b in outer.books if after is None or b["updated"] > after]
                start = int((query.get("pageCursor") or ["0"])[0])
                page = books[start : start + 1]
                nxt = str(start + 1) if start + 1 < len(books) else None
                results = [{k: v for k, v in b.items() if k != "updated"} for b in page]
                self._send(200, {"count": len(books), "nextPageCursor": nxt, "results": results})

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v2"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeReadwise:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


NOTES = (
    "# Sea notes\n\nThe harbour master counts the ships at dawn. Gulls follow the fishing "
    "boats back in.\n\nSpring tides flood the lower quay twice a month. The old pier creaks "
    "in every winter storm.\n"
)


def _api_books() -> list[dict[str, Any]]:
    def book(bid: int, title: str, texts: list[str], updated: str) -> dict[str, Any]:
        return {
            "user_book_id": bid,
            "title": title,
            "author": None,
            "updated": updated,
            "highlights": [
                {"id": bid * 100 + i, "text": t, "location": i, "location_type": "order"}
                for i, t in enumerate(texts)
            ],
        }

    return [
        book(1, "Sea Notes", ["The harbour master counts the ships at dawn."], "2025-01-01"),
        book(2, "Sea Notes", ["Spring tides flood the lower quay twice a month."], "2025-06-01"),
        book(3, "Unknown Book", ["A highlight from a book that is not here."], "2025-06-02"),
    ]


@pytest.fixture
def sea_notes(store: SqlJobStore, storage: LocalStorage) -> str:
    added = add_bytes(store, storage, NOTES.encode(), filename="Sea notes.md", title="Sea notes")
    run = run_inline("process_document", job_id=added.job.id, store=store, storage=storage)
    assert run.job.status is JobStatus.COMPLETED
    return added.document.id


def test_export_api_pages_rate_limits_and_updated_after(
    store: SqlJobStore, storage: LocalStorage, sea_notes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeReadwise(_api_books()) as api:
        monkeypatch.setenv("RHIZOME_READWISE_API_URL", api.url)
        job = request_readwise_api(store, "local", token=api.token)
        run = run_inline("readwise_import", job_id=job.id, store=store, storage=storage)
        assert run.job.status is JobStatus.COMPLETED, run.job.error_message
        assert run.output is not None and run.output["pages"] == 3
        assert run.output["counts"]["matched"] == 2 and run.output["counts"]["unmatched"] == 1
        assert [q.get("pageCursor") for q in api.requests[1:]] == [None, ["1"], ["2"]]
        assert all("updatedAfter" not in q for q in api.requests)
        account = ReadwiseRepo(store).account_view("local")
        assert account["token_set"] and account["updated_after"]
        assert account["token_hint"] == "…1234"

        api.books[0]["updated"] = "9999-01-01"  # changed in Readwise since
        again = request_readwise_api(store, "local")
        run = run_inline("readwise_import", job_id=again.id, store=store, storage=storage)
        assert run.job.status is JobStatus.COMPLETED, run.job.error_message
        assert api.requests[-1]["updatedAfter"] == [account["updated_after"]]
        assert run.output is not None and run.output["pages"] == 1
        assert run.output["counts"]["duplicates"] == 1  # nothing new added
        assert Highlights(store).count(sea_notes, "local") == 2

        api.token = "rotated"
        refused = request_readwise_api(store, "local")
        run = run_inline("readwise_import", job_id=refused.id, store=store, storage=storage)
        assert run.job.status is JobStatus.FAILED and run.job.error_type is ErrorType.INVALID
        assert "refused the access token" in (run.job.error_message or "")


def test_bad_exports_and_forged_keys(store: SqlJobStore, storage: LocalStorage) -> None:
    for raw, name in [
        (b"", "empty.csv"),
        (b"a,b\n1,2\n", "other.csv"),
        (b'{"results": 5}', "x.json"),
        (b"{not json", "x.json"),
        (b"\xff\xfe\x00bin", "x.csv"),
    ]:
        with pytest.raises(InvalidInputError):
            request_readwise_file(store, storage, "local", raw, name)
    assert storage.list("readwise/") == []  # nothing stored
    storage.put("readwise/other/uploads/x.csv", (READWISE / "readwise-export.csv").read_bytes())
    forged = run_inline(
        "readwise_import",
        {"file_key": "readwise/other/uploads/x.csv"},
        store=store,
        storage=storage,
        user_id="local",
    )
    assert forged.job.status is JobStatus.FAILED and forged.job.error_type is ErrorType.INVALID
    assert "not one of your uploads" in (forged.job.error_message or "")


def test_skipped_highlights_are_counted(
    store: SqlJobStore, storage: LocalStorage, sea_notes: str
) -> None:
    csv = (
        "Highlight,Book Title,Book Author,Location Type,Location\n"
        "Too short,Sea notes,,order,1\n"
        '"![](https://images.example/1.png)",Sea notes,,order,2\n'
        '"Spring tides flood the lower quay two times each month.",Sea notes,,order,3\n'
    )
    job = request_readwise_file(store, storage, "local", csv.encode(), "s.csv")
    run = run_inline("readwise_import", job_id=job.id, store=store, storage=storage)
    assert run.output is not None
    assert run.output["counts"]["skipped"] == 2 and run.output["counts"]["needs_review"] == 1
    rows = ReadwiseRepo(store).items("local", job_id=job.id)
    assert sorted(r["reason"] for r in rows if r["status"] == "skipped") == [
        "image highlight",
        "shorter than 10 characters",
    ]


def test_resumes_at_every_safe_point(store: SqlJobStore, storage: LocalStorage) -> None:
    csv = (READWISE / "readwise-export.csv").read_text()
    csv = csv.replace("Moby-Dick", "Sea notes")
    body = "# Sea notes\n\n" + "\n\n".join(
        ["Call me Ishmael.", "Then, I account it high time to get to sea as soon as I can."]
    )
    users = [f"r{k}" for k in range(40)]
    clean: dict[str, Any] | None = None
    n_points: int | None = None
    plans: list[tuple[int | None, str]] = [(None, "pause")]
    for user in users:
        if n_points is not None and not plans:
            break
        ready_document(store, storage, "Sea notes", body, user=user)
        job = request_readwise_file(store, storage, user, csv.encode(), "x.csv")
        at, how = plans.pop(0)
        run = run_inline(
            "readwise_import",
            job_id=job.id,
            store=store,
            storage=storage,
            interrupt_at=at,
            interrupt=how,  # type: ignore[arg-type]
        )
        assert run.job.status is JobStatus.COMPLETED, (at, how, run.runs)
        output = _without_ids(run.output)
        if clean is None:
            clean = output
            n_points = len(run.runs[0].safe_points)
            plans = [(k, i) for k in range(1, n_points + 1) for i in INTERRUPTS]
        else:
            assert output == clean, (at, how)
    assert n_points is not None and n_points >= 5 and not plans


def _without_ids(output: dict[str, Any] | None) -> dict[str, Any]:
    assert output is not None
    out = json.loads(json.dumps(output))
    for b in out["books"]:
        b.pop("document_id", None)
        for c in b.get("candidates") or []:
            c.pop("document_id", None)
    out.pop("filename", None)
    return out
