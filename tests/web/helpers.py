"""Putting jobs into every state without running handlers (a fake worker claims them)."""

from __future__ import annotations

from typing import Any

from rhizome.jobs.model import ErrorType, Job, NewJob
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.storage import Storage

WORKER = "test-host:1:web"


def new(store: SqlJobStore, job_type: str = "noop", user: str = "local", **kw: Any) -> Job:
    [job] = store.enqueue([NewJob(job_type, kw.pop("input_data", {}), user_id=user, **kw)])
    return job


def running(
    store: SqlJobStore,
    job_type: str = "noop",
    user: str = "local",
    *,
    stage: str | None = None,
    percent: float = 0,
    details: str | None = None,
) -> Job:
    job = new(store, job_type, user, priority=1_000_000)
    claimed = store.claim(WORKER, 1, 300, None)
    assert [c.id for c in claimed] == [job.id], "another job was due first"
    progress: dict[str, Any] = {"percent": percent}
    if stage:
        progress["stage"] = stage
    if details:
        progress["details"] = details
    store.update_progress(job.id, WORKER, progress)
    return store.get(job.id)


def finished(store: SqlJobStore, job_type: str = "noop", user: str = "local") -> Job:
    job = running(store, job_type, user)
    store.complete(WORKER, [(job.id, {"ok": True})])
    return store.get(job.id)


def failed(
    store: SqlJobStore,
    job_type: str = "noop",
    user: str = "local",
    *,
    retry_in: float | None = None,
    stage: str | None = None,
) -> Job:
    job = running(store, job_type, user, stage=stage)
    store.fail(
        job.id,
        WORKER,
        error_type=ErrorType.TRANSIENT if retry_in else ErrorType.INVALID,
        last_error="Traceback: boom",
        error_message="The file is corrupt. Add it again.",
        retry_delay=retry_in,
    )
    return store.get(job.id)


def paused(store: SqlJobStore, job_type: str = "noop", user: str = "local", **kw: Any) -> Job:
    job = new(store, job_type, user, **kw)
    return store.request_pause(job.id)


def cancelled(store: SqlJobStore, job_type: str = "noop", user: str = "local", **kw: Any) -> Job:
    job = new(store, job_type, user, **kw)
    return store.request_cancel(job.id)


def document_with_chunks(
    store: SqlJobStore,
    storage: Storage,
    user: str = "local",
    title: str = "A document",
    texts: tuple[str, ...] = ("First chunk about trees.", "Second chunk about rivers."),
) -> tuple[Any, list[Any]]:
    library = Library(store)
    doc = library.create_document(user_id=user, title=title, source_type="markdown")
    chunks = library.replace_chunks(
        doc.id,
        user,
        [
            {"index": i, "text": t, "start": 0, "end": len(t), "token_count": len(t.split())}
            for i, t in enumerate(texts)
        ],
    )
    doc = library.update_document(doc.id, user, status="ready", chunk_count=len(chunks))
    storage.put(
        f"{doc.storage_folder}/content.md", ("# " + title + "\n\n" + "\n\n".join(texts)).encode()
    )
    return doc, chunks


def wait_for_percent(store: SqlJobStore, job_id: str, percent: float, timeout: float = 20) -> None:
    from tests.helpers import wait_for

    wait_for(
        lambda: float(store.get(job_id).progress.get("percent") or 0) >= percent,
        timeout,
        what=f"job {job_id} to reach {percent}%",
    )
