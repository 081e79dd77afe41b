"""Terminal progress for `rhizome add --wait`: a rich bar per job (title · stage · details)
on stderr. When no live worker is around, a worker runs in this process so the command
just works on a fresh install."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from rhizome.jobs.model import Job, JobStatus

if TYPE_CHECKING:
    from rhizome.app import App

DONE = {JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.PAUSED}


def _finished(job: Job) -> bool:
    if job.status is JobStatus.FAILED:
        return job.next_retry_at is None
    return job.status in DONE


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
    try:
        with progress:
            while True:
                for job_id in list(watched):
                    job = app.store.get(job_id)
                    final[job_id] = job
                    label = (
                        app.registry.get(job.job_type).label
                        if job.job_type in (app.registry)
                        else job.job_type
                    )
                    stage = job.stage or "waiting"
                    status = job.status.value
                    if job.status is JobStatus.FAILED and job.next_retry_at is not None:
                        status = "retrying"
                    if job_id not in tasks:
                        tasks[job_id] = progress.add_task(label, total=100, details="")
                    progress.update(
                        tasks[job_id],
                        completed=float(job.progress.get("percent") or 0),
                        description=f"{label} · {stage} · {status}",
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
