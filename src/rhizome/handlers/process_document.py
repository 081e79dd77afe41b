"""``process_document``: source → markdown → chunks → embeddings → saved; then queues
``detect_connections``.

Stages (✓ pause-safe): extract ✓, clean ✓, chunk ✓, embed ✓ (a checkpoint per batch),
save, finalize. Each stage is idempotent: chunks are replaced, not appended, so a re-run
after a crash never duplicates them. Outputs in the document's folder (storage-first):
``source.<ext>``, ``content.md``, ``chunks.json``, ``metadata.json``, ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from rhizome.config import Settings, load_settings
from rhizome.errors import InvalidInputError, JobLostError, RhizomeError
from rhizome.jobs.client import enqueue
from rhizome.jobs.context import JobContext, JobInterrupted
from rhizome.jobs.model import ErrorType
from rhizome.jobs.registry import HOUR, Stage, registry
from rhizome.jobs.retry import classify, user_message

if TYPE_CHECKING:
    from rhizome.pipeline.embed import Embedder

# The pipeline (extraction, numpy, the embedding model) is imported when a document job
# runs, not when the job type is registered: a starting worker imports this module.

EXTRACT_MEMORY_MB = 2048
"""process_document's own memory limit: the address space of the child process that reads
the file (``RHIZOME_JOB_MEMORY_LIMITS`` overrides it)."""

STAGES = (
    Stage("extract", "Extracting text", 0, 30),
    Stage("clean", "Cleaning markdown", 30, 35),
    Stage("chunk", "Chunking", 35, 40),
    Stage("embed", "Embedding", 40, 92),
    Stage("save", "Saving", 92, 98, pause_safe=False),
    Stage("finalize", "Finalizing", 98, 100, pause_safe=False),
)
MAX_CHUNK_CHARS = 100_000
"""A chunk is at most ~180 words; one this long is a single giant "word" (junk)."""
EMBED_MAX_CHARS = 8000
"""Characters of a chunk given to the embedder (the model reads its first 256 tokens)."""
EMBED_BATCH = 16
"""Chunks per embedding batch: each batch ends with a checkpoint and a safe point, so a
pause waits for at most one batch (a fraction of a second on 2 cores)."""


class ProcessInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: str
    source_key: str | None = None
    url: str | None = None
    filename: str | None = None
    content_type: str | None = None
    max_words: int = Field(180, ge=20, le=2000)
    overlap_words: int = Field(30, ge=0, le=500)
    detect_connections: bool = True


@registry.job_type(
    "process_document",
    label="Ingest",
    icon="zap",
    stages=STAGES,
    input_model=ProcessInput,
    public=False,  # enqueued by the server (its own route), never from POST /api/jobs
    time_limit_seconds=2 * HOUR,  # Moby-Dick: 20 s; the largest document the caps allow: minutes
    memory_limit_mb=EXTRACT_MEMORY_MB,  # the child that reads the file (a 600 MB PDF: 0.5 GB)
)
def process_document(ctx: JobContext, data: ProcessInput) -> dict[str, Any]:
    """Turn a source into markdown, chunks and embeddings."""
    from rhizome.library.repo import Library
    from rhizome.pipeline.chunk import chunk_markdown
    from rhizome.pipeline.clean import clean

    user = ctx.job.user_id
    library = Library(ctx.store)
    doc = library.get_document(data.document_id, user)
    folder = doc.storage_folder
    settings = load_settings()
    if not ctx.is_done("save"):  # after save the document is ready; a resume keeps it so
        library.update_document(doc.id, user, status="processing", clear_error=True)

    def clean_stage() -> dict[str, Any]:
        content = clean(ctx.stage_result("extract")["markdown"])
        if not content.strip():
            raise InvalidInputError(
                "No text could be extracted from this document.",
                "If it is a scanned PDF, run it through OCR first.",
            )
        words = len(content.split())
        if words > settings.max_document_words:
            raise InvalidInputError(
                f"This document has {words:,} words; the limit is "
                f"{settings.max_document_words:,} per document.",
                "Split it into smaller documents, or raise RHIZOME_MAX_DOCUMENT_WORDS.",
            )
        key = f"{folder}/content.md"
        ctx.storage.put(key, content.encode("utf-8"))
        return {
            "content_key": key,
            "content_sha256": hashlib.sha256(content.encode("utf-8")).hexdigest(),
            "word_count": words,
        }

    def chunk_stage() -> dict[str, Any]:
        pieces = chunk_markdown(
            _content(ctx, ctx.stage_result("clean")),
            max_words=data.max_words,
            overlap_words=data.overlap_words,
        )
        longest = max((len(p.text) for p in pieces), default=0)
        if longest > MAX_CHUNK_CHARS:
            raise InvalidInputError(
                f"This document holds a passage of {longest:,} characters without a break "
                "between words; it is not readable text.",
                "Check the file: it may be binary data saved as text, or built to exhaust "
                "the reader.",
            )
        if len(pieces) > settings.max_document_chunks:
            raise InvalidInputError(
                f"This document makes {len(pieces):,} chunks; the limit is "
                f"{settings.max_document_chunks:,} per document.",
                "Split it into smaller documents, or raise RHIZOME_MAX_DOCUMENT_CHUNKS.",
            )
        stored = library.replace_chunks(
            doc.id,
            user,
            [
                {
                    "index": p.index,
                    "text": p.text,
                    "start": p.start,
                    "end": p.end,
                    "token_count": p.token_count,
                    "heading_path": p.heading_path,
                }
                for p in pieces
            ],
        )
        ctx.progress(fraction=1.0, details=f"{len(stored):,} chunks", force=True)
        return {"chunk_count": len(stored)}

    def embed_stage() -> dict[str, Any]:
        # shortest first: batches of similar length waste nothing on padding (the order
        # is a function of the chunks, so a resumed run walks the same one)
        chunks = sorted(library.list_chunks(doc.id, user), key=lambda c: (c.token_count, c.index))
        total = len(chunks)
        embedder = get_embedder()
        wait_for_model(ctx, embedder)
        cursor = ctx.cursor("embedded", start=0)
        if cursor.value and any(
            c.embedding_model != embedder.name for c in chunks[: int(cursor.value)]
        ):  # the model or its precision changed while the job was paused: start over
            cursor.value = 0
        if cursor.value:
            ctx.progress(
                fraction=cursor.value / max(total, 1),
                details=f"Embedding chunk {cursor.value:,} of {total:,}",
                force=True,
            )
        for start in cursor.range(total, step=EMBED_BATCH):
            batch = chunks[start : start + EMBED_BATCH]
            # the model reads 256 tokens; a giant chunk (one 20 MB "word") must not make the
            # tokenizer allocate gigabytes
            vectors = embedder.embed([c.text[:EMBED_MAX_CHARS] for c in batch])
            library.set_embeddings(user, [c.id for c in batch], vectors, model=embedder.name)
            done = start + len(batch)
            ctx.progress(
                fraction=done / total,
                details=f"Embedding chunk {done:,} of {total:,}",
                embedded=done,
                total=total,
            )
        return {"embedder": embedder.name}

    if not ctx.is_done("embed"):
        _start_loading_model()  # in the background, beside extraction and chunking
    try:
        extracted = ctx.run_stage("extract", _extract, ctx, data, folder, settings)
        cleaned = ctx.run_stage("clean", clean_stage)
        ctx.discard("extract", "markdown")  # it is in content.md now
        ctx.run_stage("chunk", chunk_stage)
        embedded = ctx.run_stage("embed", embed_stage)
        meta = {**extracted, **cleaned, **embedded}
        meta.pop("markdown", None)

        def save_stage() -> int:
            chunks = library.list_chunks(doc.id, user)
            _save_outputs(ctx, folder, doc.id, meta, chunks)
            library.update_document(
                doc.id,
                user,
                status="ready",
                title=None if doc.metadata.get("title_given") else meta.get("title"),
                author=meta.get("author"),
                word_count=meta.get("word_count"),
                page_count=meta.get("page_count"),
                chunk_count=len(chunks),
                metadata={"source_type": meta.get("source_type")},
            )
            return len(chunks)

        chunk_count = ctx.run_stage("save", save_stage)

        def finalize_stage() -> str | None:
            if not (data.detect_connections and chunk_count):
                return None
            [job] = enqueue(
                ctx.store,
                "detect_connections",
                {"document_id": doc.id},
                user_id=user,
                entity_type="document",
                entity_id=doc.id,
                dedupe_key=f"detect_connections:{doc.id}",
            )
            return job.id

        follow_up = ctx.run_stage("finalize", finalize_stage)
    except JobInterrupted as stop:
        if stop.action == "cancel":
            library.update_document(
                doc.id, user, status="failed", error_message="Processing was cancelled."
            )
        raise
    except Exception as exc:
        if ctx.lost or isinstance(exc, JobLostError):
            raise  # another worker runs the job now: the document is its business
        if isinstance(exc, RhizomeError) and exc.infrastructure:
            raise  # not the document's fault: the job continues (here or elsewhere)
        kind = classify(exc)
        if kind is not ErrorType.TRANSIENT or ctx.job.retry_count >= ctx.job.max_retries:
            library.update_document(
                doc.id, user, status="failed", error_message=user_message(exc, kind)
            )
        raise
    return {
        "document_id": doc.id,
        "title": meta.get("title"),
        "chunks": chunk_count,
        "words": meta.get("word_count"),
        "pages": meta.get("page_count"),
        "detect_connections_job": follow_up,
    }


MODEL_POLL_SECONDS = 0.1
"""While the embedding model loads (or is exported, the first time on a machine), the job
looks for a pause or cancel this often (a progress write every ``progress_interval``)."""


def get_embedder() -> Embedder:
    """The configured embedder (:func:`rhizome.pipeline.embed.get_embedder`)."""
    from rhizome.pipeline.embed import get_embedder as configured

    return configured()


def _start_loading_model() -> None:
    try:
        embedder = get_embedder()
    except Exception:  # a configuration error: the embed stage reports it
        return
    load_async = getattr(embedder, "load_async", None)
    if callable(load_async) and not getattr(embedder, "loaded", True):
        load_async()


def wait_for_model(ctx: JobContext, embedder: object) -> None:
    """Load the embedding model (seconds the first time: a cold import, or the ONNX export
    once per machine) in a background thread, with a safe point every
    ``MODEL_POLL_SECONDS``: a pause or cancel does not wait for the load, which goes on
    for the next run."""
    if getattr(embedder, "loaded", True):
        return
    load_async = getattr(embedder, "load_async", None)
    if not callable(load_async):
        load = getattr(embedder, "load", None)
        if callable(load):
            load()
        return
    future = load_async()
    shown = "Loading the embedding model…"
    ctx.progress(details=shown, substage="load_model", force=True)
    while True:
        try:
            future.result(timeout=MODEL_POLL_SECONDS)
            break
        except FutureTimeout:
            step = getattr(embedder, "loading_step", None) or "Loading the embedding model…"
            ctx.progress(details=step, force=step != shown)  # reads back pause and cancel
            shown = step
            ctx.safe_point()
    ctx.progress(details="Embedding model loaded", substage="embed", force=True)


def _extract(
    ctx: JobContext, data: ProcessInput, folder: str, settings: Settings
) -> dict[str, Any]:
    from rhizome.pipeline.extract import fetch_url
    from rhizome.pipeline.extract.sandbox import ExtractLimits, extract_isolated

    if data.url:
        ctx.progress(details=f"Fetching {data.url}", force=True)
        body, content_type, final_url = fetch_url(
            data.url, allow_private=settings.fetch_allow_private
        )
        ctx.storage.put(f"{folder}/source.html", body)
        raw, filename, url = body, None, final_url
    elif data.source_key:
        if not data.source_key.startswith(f"{folder}/"):  # defence in depth: the API checks too
            raise InvalidInputError(
                "The job names a source file outside its document's folder.",
                "Add the document again through the library (upload, URL or text).",
            )
        try:
            raw = ctx.storage.get(data.source_key)
        except FileNotFoundError:
            raise InvalidInputError(
                "The uploaded file is missing from storage.", "Upload the document again."
            ) from None
        content_type, filename, url = data.content_type, data.filename, None
    else:
        raise InvalidInputError("The job names no source (file or URL).", "Add the document again.")

    def on_page(done: int, total: int) -> None:
        ctx.progress(fraction=done / max(total, 1), details=f"Reading part {done:,} of {total:,}")

    limits = ExtractLimits(
        memory_bytes=(ctx.memory_limit_mb or EXTRACT_MEMORY_MB) * 1024 * 1024,
        cpu_seconds=settings.extract_cpu_seconds,
        wall_seconds=settings.extract_timeout_seconds,
    )
    ex = extract_isolated(
        raw,
        limits=limits,
        progress=on_page,
        filename=filename,
        content_type=content_type,
        url=url,
    )
    return {
        "markdown": ex.markdown,
        "title": ex.title,
        "author": ex.author,
        "source_type": ex.source_type,
        "page_count": ex.page_count,
        "metadata": ex.metadata,
    }


def _content(ctx: JobContext, state: dict[str, Any]) -> str:
    raw = ctx.storage.get(state["content_key"])
    if hashlib.sha256(raw).hexdigest() != state["content_sha256"]:
        raise InvalidInputError(
            "content.md changed since it was written.", "Restart the job from the beginning."
        )
    return raw.decode("utf-8")


def _save_outputs(
    ctx: JobContext, folder: str, document_id: str, state: dict[str, Any], chunks: list[Any]
) -> None:
    now = datetime.now(UTC).isoformat()
    chunk_doc = {
        "version": "1.0",
        "document_id": document_id,
        "chunks": [c.to_dict() for c in chunks],
    }
    metadata = {
        "version": "1.0",
        "document_id": document_id,
        "title": state.get("title"),
        "author": state.get("author"),
        "source_type": state.get("source_type"),
        "word_count": state.get("word_count"),
        "page_count": state.get("page_count"),
        "extracted": state.get("metadata"),
        "processed_at": now,
    }
    files = {
        "chunks.json": json.dumps(chunk_doc, ensure_ascii=False, indent=1).encode("utf-8"),
        "metadata.json": json.dumps(metadata, ensure_ascii=False, indent=1, default=str).encode(),
    }
    for name, payload in files.items():
        ctx.storage.put(f"{folder}/{name}", payload)
    listing = {
        key.rsplit("/", 1)[-1]: None
        for key in ctx.storage.list(folder)
        if not key.rsplit("/", 1)[-1].startswith("stage-")
    }
    manifest = {
        "version": "1.0",
        "document_id": document_id,
        "created_at": now,
        "files": sorted(set(listing) | {"manifest.json"}),
        "chunk_count": len(chunks),
        "embedding_model": state.get("embedder"),
        "content_sha256": state.get("content_sha256"),
    }
    ctx.storage.put(f"{folder}/manifest.json", json.dumps(manifest, indent=1).encode())
