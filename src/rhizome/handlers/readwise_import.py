"""``readwise_import``: a Readwise export → highlights placed in their documents.

Stages (✓ pause-safe): fetch ✓ (only for the export API: one checkpoint per page, with
``pageCursor``, ``updatedAfter`` since the last import, and waits on rate limits), read ✓
(the CSV or JSON, or the fetched pages, as books), books ✓ (one checkpoint per book),
finish. Each book is matched to a document by title and author (never forced), each
highlight to a passage in tiers (see :mod:`rhizome.library.readwise`); every highlight's
outcome is stored in the ledger, so importing the same export again adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rhizome.config import load_settings
from rhizome.errors import InvalidInputError
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import HOUR, Stage, registry
from rhizome.library.model import Document
from rhizome.library.repo import Library

if TYPE_CHECKING:
    from rhizome.library.readwise import RwBook

# The library code behind this job is imported when it runs, not when the job type is
# registered: a starting worker imports this module.

STAGES = (
    Stage("fetch", "Fetching from Readwise", 0, 20),
    Stage("read", "Reading the export", 20, 25),
    Stage("books", "Matching highlights", 25, 98),
    Stage("finish", "Finishing", 98, 100, pause_safe=False),
)
MAX_PAGES = 10_000


def upload_prefix(user_id: str) -> str:
    """Where uploaded Readwise exports of a user are stored."""
    return f"readwise/{user_id}/uploads/"


class ReadwiseInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_key: str | None = Field(None, max_length=500)
    """An uploaded export in storage (``readwise/{user}/uploads/…``)."""
    filename: str | None = Field(None, max_length=255)
    api: bool = False
    """Fetch from the Readwise export API with the user's stored token."""
    full: bool = False
    """With ``api``: everything, not only what changed since the last import."""

    @model_validator(mode="after")
    def _one_source(self) -> ReadwiseInput:
        if (self.file_key is None) == (not self.api):
            raise ValueError("give either file_key (an uploaded export) or api=true")
        return self


@registry.job_type(
    "readwise_import",
    label="Readwise Import",
    icon="highlighter",
    stages=STAGES,
    input_model=ReadwiseInput,
    owned={"file_key": "storage_key"},  # checked by the API before it enqueues
    time_limit_seconds=HOUR,  # 1,000 highlights: seconds
)
def readwise_import(ctx: JobContext, data: ReadwiseInput) -> dict[str, Any]:
    """Import Readwise highlights into the documents they come from."""
    from rhizome.library.highlight_match import Matcher
    from rhizome.library.highlights import Highlights
    from rhizome.library.readwise import (
        BookResult,
        ReadwiseClient,
        ReadwiseRepo,
        RwBook,
        books_from_results,
        import_book,
        parse_export,
    )

    user = ctx.job.user_id
    scratch = f"jobs/{ctx.job.id}"
    repo = ReadwiseRepo(ctx.store)

    def wait(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            ctx.progress(details=f"Rate limited by Readwise: waiting {left:.0f} s", force=True)
            time.sleep(min(0.5, left))

    def fetch() -> dict[str, Any]:
        if not data.api:
            return {"pages": 0}
        account = repo.account(user) or {}
        token = account.get("token")
        if not token:
            raise InvalidInputError(
                "No Readwise access token is stored for you.",
                "Import with your token once: `rhizome readwise import --api --token T` "
                "(readwise.io/access_token), or set it on the Integrations page.",
            )
        start = {
            "n": 0,
            "next": None,
            "done": False,
            "started": datetime.now(UTC).isoformat(),
            "updated_after": None if data.full else account.get("updated_after"),
        }
        cursor = ctx.cursor("page", start=start)
        state = dict(cursor.value)
        client = ReadwiseClient(load_settings().readwise_api_url, str(token), wait=wait)
        try:
            while not state["done"]:
                if state["n"] >= MAX_PAGES:
                    raise InvalidInputError(
                        f"Readwise sent more than {MAX_PAGES:,} pages.", "Import in parts."
                    )
                results, nxt = client.page(state["next"], state["updated_after"])
                ctx.storage.put(
                    f"{scratch}/pages/{state['n']:05d}.json", json.dumps(results).encode()
                )
                state = {**state, "n": state["n"] + 1, "next": nxt, "done": nxt is None}
                ctx.progress(details=f"Page {state['n']:,} from Readwise", pages=state["n"])
                cursor.save(state)  # after the page is in storage
        finally:
            client.close()
        return {
            "pages": state["n"],
            "started": state["started"],
            "updated_after": state["updated_after"],
        }

    fetched = ctx.run_stage("fetch", fetch)

    def read() -> dict[str, Any]:
        if data.file_key is not None:
            if not data.file_key.startswith(upload_prefix(user)) or ".." in data.file_key:
                raise InvalidInputError(
                    "The job names an export that is not one of your uploads.",
                    "Upload the export again.",
                )
            try:
                raw = ctx.storage.get(data.file_key)
            except FileNotFoundError:
                raise InvalidInputError(
                    "The uploaded export is no longer in storage.", "Upload it again."
                ) from None
            fmt, books = parse_export(raw, data.filename)
        else:
            fmt, books = "api", []
            for n in range(int(fetched["pages"])):
                page = json.loads(ctx.storage.get(f"{scratch}/pages/{n:05d}.json"))
                books.extend(books_from_results(page))
            books = _merge(books)
        payload = json.dumps([b.to_json() for b in books]).encode()
        ctx.storage.put(f"{scratch}/books.json", payload)
        count = sum(len(b.highlights) for b in books)
        ctx.progress(fraction=1.0, details=f"{len(books):,} books, {count:,} highlights")
        return {
            "format": fmt,
            "books": len(books),
            "highlights": count,
            "sha256": hashlib.sha256(payload).hexdigest(),
        }

    read_result = ctx.run_stage("read", read)
    total = int(read_result["books"])

    def books_stage() -> dict[str, Any]:
        payload = ctx.storage.get(f"{scratch}/books.json")
        if hashlib.sha256(payload).hexdigest() != read_result["sha256"]:
            raise InvalidInputError(
                "The import's list of books changed in storage.",
                "Restart the import from the beginning.",
            )
        books = [RwBook.from_json(b) for b in json.loads(payload)]
        library = Library(ctx.store)
        documents = library.list_documents(user, status="ready", limit=1_000_000)
        highlights = Highlights(ctx.store)
        cache: dict[str, tuple[str, list[tuple[str, int, int]]] | None] = {}
        matchers: dict[str, Matcher] = {}

        def content_of(doc: Document) -> tuple[str, list[tuple[str, int, int]]] | None:
            if doc.id not in cache:
                cache.clear()
                try:
                    raw = ctx.storage.get(f"{doc.storage_folder}/content.md")
                except FileNotFoundError:
                    cache[doc.id] = None
                else:
                    cache[doc.id] = (raw.decode("utf-8"), highlights.chunk_spans(doc.id, user))
            return cache[doc.id]

        cursor = ctx.cursor("book", start=0)
        for i in cursor.range(total):
            book = books[i]
            ctx.progress(
                fraction=i / max(total, 1),
                details=f"Book {i + 1:,} of {total:,} · {book.title}",
                books=i,
                total=total,
            )
            result = import_book(
                ctx.store,
                user_id=user,
                job_id=ctx.job.id,
                book=book,
                documents=documents,
                content_of=content_of,
                matchers=matchers,
            )
            ctx.storage.put(
                f"{scratch}/results/{i:05d}.json", json.dumps(result.to_dict()).encode()
            )
        return {"books": total}

    ctx.run_stage("books", books_stage)

    def finish() -> dict[str, Any]:
        results = [
            BookResult(**json.loads(ctx.storage.get(f"{scratch}/results/{i:05d}.json")))
            for i in range(total)
        ]
        counts = {"matched": 0, "needs_review": 0, "unmatched": 0, "skipped": 0, "duplicates": 0}
        for r in results:
            for k, v in r.counts.items():
                counts[k] = counts.get(k, 0) + int(v)
        if data.api:
            repo.set_updated_after(user, str(fetched["started"]))
        if data.file_key is not None and data.file_key.startswith(upload_prefix(user)):
            ctx.storage.delete(data.file_key)
        return {
            "format": read_result["format"],
            "filename": data.filename,
            "books": [r.to_dict() for r in results],
            "books_matched": sum(1 for r in results if r.status == "matched"),
            "books_unmatched": sum(1 for r in results if r.status != "matched"),
            "highlights": int(read_result["highlights"]),
            "counts": counts,
            "pages": int(fetched.get("pages") or 0),
        }

    result: dict[str, Any] = ctx.run_stage("finish", finish)
    return result


def _merge(books: list[RwBook]) -> list[RwBook]:
    """One book per title and author (the export API may send a book on several pages)."""
    merged: dict[tuple[str, str], RwBook] = {}
    for b in books:
        key = (b.title, b.author or "")
        if key in merged:
            merged[key].highlights.extend(b.highlights)
        else:
            merged[key] = b
    return list(merged.values())
