"""Terminal progress for `rhizome add --wait`: a rich bar per job (title · stage · status,
with the same labels as the web UI) on stderr. When no live worker is around, a worker
runs in this process so the command just works on a fresh install. Log lines printed
meanwhile go through the bars' console, above the bars, instead of breaking them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from rhizome.jobs.model import Job, JobStatus
from rhizome.jobs.vocabulary import stage_label, status_text

if TYPE_CHECKING:
    from rhizome.app import App

DONE = {JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.PAUSED}


def _finished(job: Job) -> bool:
    if job.status is JobStatus.FAILED:
        return job.next_retry_at is None
    return job.status in DONE


class _ConsoleHandler(logging.Handler):
    """Prints log records through a rich console (above its live progress bars)."""

    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


@contextmanager
def logs_above(console: Console) -> Iterator[None]:
    """While the bars show, the ``rhizome`` logger's stream handlers write through the
    bars' console (rich keeps the bars below the lines)."""
    logger = logging.getLogger("rhizome")
    swapped: list[tuple[logging.Handler, logging.Handler]] = []
    for handler in list(logger.handlers):
        if isinstance(handler, logging.StreamHandler):
            replacement = _ConsoleHandler(console, handler.formatter)
            replacement.setLevel(handler.level)
            logger.removeHandler(handler)
            logger.addHandler(replacement)
            swapped.append((handler, replacement))
    try:
        yield
    finally:
        for handler, replacement in swapped:
            logger.removeHandler(replacement)
            logger.addHandler(handler)


def live_workers(app: App) -> int:
    fresh = datetime.now(UTC) - timedelta(seconds=3 * app.settings.heartbeat_seconds + 5)
    return sum(
        1
        for w in app.store.list_workers()
        if w.stopped_at is None and w.last_seen_at is not None and w.last_seen_at > fresh
    )


def wait_for_jobs(
    app: App, job_ids: list[str], *, console: Console, quiet: bool = False, poll: float = 0.2
) -> dict[str, Job]:
    """Block until every job (and the jobs they queue, e.g. detect_connections) is done."""
    worker = None
    thread = None
    if live_workers(app) == 0:
        worker = app.worker()
        thread = threading.Thread(target=worker.run, name="rhizome-inline-worker", daemon=True)
        thread.start()
    watched = list(job_ids)
    final: dict[str, Job] = {}
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[details]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}
    titles: dict[str, str] = {}

    def title_of(job: Job) -> str:
        if job.entity_type != "document" or not job.entity_id:
            return ""
        if job.entity_id not in titles:
            try:
                doc = app.library().get_document(job.entity_id, job.user_id)
                titles[job.entity_id] = doc.title
            except Exception:  # gone, or not a document this user has
                titles[job.entity_id] = ""
        return titles[job.entity_id]

    try:
        with progress, logs_above(progress.console):
            while True:
                for job_id in list(watched):
                    job = app.store.get(job_id)
                    final[job_id] = job
                    label = (
                        app.registry.get(job.job_type).label
                        if job.job_type in (app.registry)
                        else job.job_type
                    )
                    stage = stage_label(app.registry, job.job_type, job.stage) or "Waiting"
                    status = status_text(job.display_status)
                    if job_id not in tasks:
                        tasks[job_id] = progress.add_task(label, total=100, details="")
                    progress.update(
                        tasks[job_id],
                        completed=float(job.progress.get("percent") or 0),
                        description=(
                            f"{label}: {title[:32]} · {stage} · {status}"
                            if (title := title_of(job))
                            else f"{label} · {stage} · {status}"
                        ),
                        details=str(job.progress.get("details") or job.error_message or "")[:60],
                    )
                    follow = (job.output_data or {}).get("detect_connections_job")
                    if job.status is JobStatus.COMPLETED and follow and follow not in watched:
                        watched.append(str(follow))
                if all(_finished(final[j]) for j in watched if j in final) and len(final) >= len(
                    watched
                ):
                    break
                time.sleep(poll)
    finally:
        if worker is not None and thread is not None:
            worker.stop()
            thread.join(timeout=60)
    return final
