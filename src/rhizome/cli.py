"""The ``rhizome`` command."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rhizome.app import App
from rhizome.config import load_settings
from rhizome.jobs.errors import InvalidInputError, RhizomeError
from rhizome.jobs.client import enqueue
from rhizome.jobs.model import Job, JobStatus
from rhizome.logs import setup_logging

app = typer.Typer(
    help="Rhizome jobs: durable background jobs for your knowledge library.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
jobs_app = typer.Typer(help="Enqueue, list and inspect jobs.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")

out = Console(soft_wrap=True)
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _app() -> App:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    return App(settings)


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# --- db -----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply pending database migrations (also done automatically at start-up)."""
    a = _app()
    from rhizome.jobs.store import open_store

    store = open_store(a.settings.database_url, migrate=False)
    try:
        applied = store.migrate()
    finally:
        store.close()
    if as_json:
        _emit({"applied": applied, "database": _safe_url(a.settings.database_url)})
    elif applied:
        for name in applied:
            out.print(f"applied {name}")
    else:
        out.print("database is up to date")


# --- worker -------------------------------------------------------------------------------


@app.command("worker")
def worker_cmd(
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Jobs run at once.")
    ] = None,
    burst: Annotated[bool, typer.Option("--burst", help="Exit when nothing is due.")] = False,
    types: Annotated[
        str | None, typer.Option("--types", help="Only these job types (comma-separated).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a worker: claim due jobs and run them until stopped (SIGTERM/SIGINT)."""
    a = _app()
    job_types = [t.strip() for t in types.split(",") if t.strip()] if types else None
    worker = a.worker(concurrency=concurrency, burst=burst, job_types=job_types)
    worker.install_signal_handlers()
    try:
        worker.run()
    finally:
        a.close()
    if as_json:
        _emit({"worker_id": worker.id, "completed": worker.completed, "failed": worker.failed})


# --- jobs ---------------------------------------------------------------------------------


@jobs_app.command("enqueue")
def jobs_enqueue(
    job_type: Annotated[str, typer.Argument(help="Job type, e.g. noop.")],
    input_json: Annotated[str, typer.Option("--input", "-i", help="Input as JSON.")] = "{}",
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1_000_000)] = 1,
    priority: Annotated[int, typer.Option("--priority", "-p", help="Higher runs first.")] = 0,
    user: Annotated[str, typer.Option("--user", help="Owner of the jobs.")] = "local",
    as_json: JsonOpt = False,
) -> None:
    """Enqueue COUNT jobs of JOB_TYPE with the given input."""
    a = _app()
    a.registry.get(job_type)
    try:
        data = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"--input is not valid JSON: {exc.msg} at position {exc.pos}.",
            'Pass a JSON object, e.g. --input \'{"sleep_ms": 10}\'.',
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(
            "--input must be a JSON object.", 'For example --input \'{"sleep_ms": 10}\'.'
        )
    created = enqueue(a.store, job_type, data, count=count, priority=priority, user_id=user)
    a.close()
    if as_json:
        if count == 1:
            _emit(created[0].to_dict())
        else:
            _emit({"count": len(created), "ids": [j.id for j in created]})
    elif count == 1:
        out.print(f"enqueued {job_type} job {created[0].id}")
    else:
        out.print(f"enqueued {len(created)} {job_type} jobs")


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Filter by status (repeatable).")
    ] = None,
    job_type: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Filter by job type (repeatable).")
    ] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Filter by current stage.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    a = _app()
    for s in status or []:
        _check_status(s)
    for t in job_type or []:
        a.registry.get(t)
    jobs = a.store.list_jobs(
        statuses=status, job_types=job_type, stage=stage, limit=limit, offset=offset
    )
    a.close()
    if as_json:
        _emit([j.to_dict() for j in jobs])
        return
    if not jobs:
        out.print("no jobs")
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "type", "status", "stage", "progress", "attempt", "created"):
        table.add_column(col)
    for j in jobs:
        table.add_row(
            j.id,
            j.job_type,
            _status_label(j),
            j.stage or "",
            f"{j.progress.get('percent', 0):.0f}%",
            str(j.attempt),
            j.created_at.strftime("%Y-%m-%d %H:%M:%S") if j.created_at else "",
        )
    out.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show the whole job record and its timeline."""
    a = _app()
    job = a.store.get(job_id)
    events = a.store.events(job_id)
    a.close()
    if as_json:
        _emit({"job": job.to_dict(), "events": [e.to_dict() for e in events]})
        return
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in job.to_dict().items():
        if value in (None, {}, [], "") and key not in ("status",):
            continue
        shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
        table.add_row(key, shown)
    out.print(table)
    out.print("\n[bold]timeline[/bold]")
    tl = Table(box=None, header_style="bold")
    for col in ("at", "change", "stage", "message", "worker"):
        tl.add_column(col)
    for e in events:
        change = f"{e.from_status or '·'} → {e.to_status or '·'}" if e.to_status else ""
        tl.add_row(
            e.at.strftime("%H:%M:%S.%f")[:-3] if e.at else "",
            change,
            e.stage or "",
            e.message or "",
            e.worker_id or "",
        )
    out.print(tl)


@jobs_app.command("types")
def jobs_types(as_json: JsonOpt = False) -> None:
    """List the registered job types."""
    a = _app()
    types = a.registry.all()
    if as_json:
        _emit([t.describe() for t in types])
        return
    table = Table(box=None, header_style="bold")
    for col in ("name", "label", "icon", "stages"):
        table.add_column(col)
    for t in types:
        stages = (
            "dynamic"
            if callable(t.stages)
            else ", ".join(f"{s.name}{' ✓' if s.pause_safe else ''}" for s in t.stages)
        )
        table.add_row(t.name, t.label, t.icon, stages)
    out.print(table)


# --- helpers ------------------------------------------------------------------------------


def _check_status(value: str) -> None:
    try:
        JobStatus(value)
    except ValueError:
        raise InvalidInputError(
            f"Unknown status {value!r}.",
            "Use one of: " + ", ".join(s.value for s in JobStatus) + ".",
        ) from None


def _status_label(job: Job) -> str:
    if job.status is JobStatus.PROCESSING and job.pause_requested:
        return "pausing"
    if job.status is JobStatus.PROCESSING and job.cancel_requested:
        return "cancelling"
    if job.status is JobStatus.FAILED and job.next_retry_at is not None:
        return "retrying"
    return job.status.value


def _safe_url(url: str) -> str:
    from rhizome.jobs.store.postgres import _redact

    return _redact(url)


def main() -> None:
    try:
        app()
    except RhizomeError as exc:
        if "--json" in sys.argv:
            _emit({"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}})
        err.print(f"[bold red]Error:[/bold red] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"[bold]What to do:[/bold] {exc.hint}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # never a traceback to the user
        if os.environ.get("RHIZOME_DEBUG"):
            raise
        err.print(
            f"[bold red]Unexpected error:[/bold red] {type(exc).__name__}: {exc}", highlight=False
        )
        err.print("Run again with RHIZOME_DEBUG=1 for the full traceback, and report it.")
        sys.exit(1)


if __name__ == "__main__":
    main()
