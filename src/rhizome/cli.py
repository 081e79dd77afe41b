"""The ``rhizome`` command."""

from __future__ import annotations

import contextlib
import json
import sys
import typing
from typing import Annotated, Any

import typer

from rhizome import cli_integrations, cli_portability, cli_users
from rhizome.app import App
from rhizome.cli_connections import connections_app
from rhizome.cli_output import Table, console
from rhizome.config import debug_enabled, load_settings
from rhizome.errors import InvalidInputError, RhizomeError
from rhizome.jobs.admin import Selection
from rhizome.jobs.client import enqueue, enqueue_for_workers
from rhizome.jobs.model import STATUS_FILTERS, TERMINAL_STATUSES, Job
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

# Piped output (scripts, logs) gets wide lines instead of an 80-column squeeze.
out = console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


AppOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--app",
        metavar="MODULE",
        help="Import MODULE to register its job types (repeatable; also RHIZOME_APPS).",
    ),
]


def _app(apps: list[str] | None = None) -> App:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    return App(settings, apps=list(apps or []))


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# --- db -----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply pending database migrations (also done automatically at start-up)."""
    a = _app()
    store = a.open_store(migrate=False)
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
    exit_if_unavailable: Annotated[
        bool,
        typer.Option(
            "--exit-if-unavailable",
            help="Exit (code 2) if the database cannot be reached at start-up, instead of "
            "waiting for it.",
        ),
    ] = False,
    apps: AppOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a worker: claim due jobs and run them until stopped (SIGTERM/SIGINT).

    A worker started before its database waits for it; one that loses it meanwhile
    keeps its results until the database is back (no job fails for it)."""
    a = _app(apps)
    job_types = [t.strip() for t in types.split(",") if t.strip()] if types else None
    worker = a.worker(
        concurrency=concurrency,
        burst=burst,
        job_types=job_types,
        exit_if_unavailable=exit_if_unavailable,
    )
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
    apps: AppOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue COUNT jobs of JOB_TYPE with the given input.

    A job type from your own code is known here when you pass --app (or set RHIZOME_APPS),
    or when a live worker that runs it was started with --app."""
    a = _app(apps)
    try:
        data = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"--input is not valid JSON: {exc.msg} at position {exc.pos}.",
            "Pass a JSON object, e.g. --input '{\"sleep_ms\": 10}'.",
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(
            "--input must be a JSON object.", "For example --input '{\"sleep_ms\": 10}'."
        )
    if job_type in a.registry:
        created = enqueue(a.store, job_type, data, count=count, priority=priority, user_id=user)
    else:
        created = enqueue_for_workers(
            a.store, job_type, data, count=count, priority=priority, user_id=user
        )
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


_STATUS_HELP = (
    "status (repeatable): " + ", ".join(STATUS_FILTERS) + ". 'processing' includes pausing "
    "and cancelling jobs; 'failed' leaves out those retrying."
)


def _labels(a: App, jobs: list[Job]) -> dict[str, dict[str, str]]:
    """What a person reads for each job: its title (a document's title for document
    jobs), type, status and stage labels: the vocabulary of the web UI."""
    from rhizome.jobs.vocabulary import status_text
    from rhizome.web import display

    titles: dict[str, str] = {}
    docs = [j for j in jobs if j.entity_type == "document" and j.entity_id]
    if docs:
        library = a.library()
        for j in docs:
            with contextlib.suppress(RhizomeError):
                titles[j.id] = library.get_document(str(j.entity_id), j.user_id).title
    out: dict[str, dict[str, str]] = {}
    for j in jobs:
        t = display.type_display(a.registry, j.job_type)
        out[j.id] = {
            "title": display.job_title(j, titles.get(j.id), t.label),
            "type": t.label,
            "status": status_text(j.display_status),
            "stage": display.stage_label(a.registry, j) or "",
        }
    return out


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Filter by " + _STATUS_HELP)
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
    if as_json:
        a.close()
        _emit([j.to_dict() for j in jobs])
        return
    if not jobs:
        a.close()
        out.print("no jobs")
        return
    labels = _labels(a, jobs)
    a.close()
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True)
    table.add_column("title", max_width=40, no_wrap=True, overflow="ellipsis")
    for col in ("type", "status", "stage", "progress", "attempt"):
        table.add_column(col, no_wrap=True)
    table.add_column("created", no_wrap=True)
    for j in jobs:
        shown = labels[j.id]
        table.add_row(
            j.short_id,
            shown["title"],
            shown["type"],
            shown["status"],
            shown["stage"],
            f"{j.progress.get('percent', 0):.0f}%",
            str(j.attempt),
            j.created_at.strftime("%Y-%m-%d %H:%M:%S") if j.created_at else "",
            style="dim" if j.status in TERMINAL_STATUSES else None,
        )
    out.print(table, highlight=False)
    if len(jobs) == limit:
        err.print(f"(the first {limit}; --limit and --offset page through the rest)")


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="Job id (or its first 8+ characters).")],
    as_json: JsonOpt = False,
) -> None:
    """Show the whole job record, its durations and its timeline."""
    from rhizome.jobs.durations import job_durations
    from rhizome.jobs.vocabulary import stage_label, status_text

    a = _app()
    job = a.store.get(a.admin().resolve(job_id))
    events = a.store.events(job.id)
    durations = job_durations(events)
    labels = _labels(a, [job])[job.id]
    a.close()
    if as_json:
        _emit(
            {
                "job": job.to_dict(),
                "durations": durations.to_dict(),
                "events": [e.to_dict() for e in events],
            }
        )
        return
    # key: value lines (no table: a long value must not pad every line to its width)
    out.print(f"[bold]{labels['title']}[/bold]  ({labels['type']}, {labels['status']})")
    record = job.to_dict()
    width = max(len(k) for k in record)
    for key, value in record.items():
        if value in (None, {}, [], "") and key not in ("status",):
            continue
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        if len(shown) > 400:
            shown = shown[:400] + f"… ({len(shown):,} characters; --json has it all)"
        out.print(f"[bold]{key.ljust(width)}[/bold]  {shown}", highlight=False)
    out.print("\n[bold]time[/bold]")
    out.print(f"  run time  {_seconds(durations.run_seconds)} over {durations.runs} run(s)")
    if durations.wait_seconds is not None:
        out.print(f"  waited    {_seconds(durations.wait_seconds)} before its first start")
    for name, sec in durations.stages.items():
        label = stage_label(a.registry, job.job_type, name) or name
        running = " (so far)" if name == durations.running_stage else ""
        out.print(f"  {label}: {_seconds(sec)}{running}", highlight=False)
    out.print("\n[bold]timeline[/bold]")
    for e in events:
        change = (
            f"{status_text(e.from_status) if e.from_status else '·'} → "
            f"{status_text(e.to_status) if e.to_status else 'Deleted'}"
            if e.from_status or e.to_status
            else ""
        )
        stage = stage_label(a.registry, job.job_type, e.stage) if e.stage else ""
        parts = [e.at.strftime("%H:%M:%S.%f")[:-3] if e.at else "", change, stage or ""]
        message = e.message or ""
        if e.stage and message == f"stage {e.stage} started":
            message, stage = f"{stage} started", ""
        parts += [message, e.worker_id or ""]
        out.print("  " + "  ".join(p for p in parts if p), highlight=False)


@jobs_app.command("logs")
def jobs_logs(
    job_id: Annotated[str, typer.Argument(help="Job id (or its first 8+ characters).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", min=1, help="Only the last N lines.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print what the job's handler logged while it ran (the newest lines are kept)."""
    a = _app()
    job = a.store.get(a.admin().resolve(job_id))
    lines = a.store.job_logs(job.id, limit=tail or 10_000, tail=tail is not None)

    def emit(batch: list[Any]) -> None:
        for line in batch:
            if as_json:
                sys.stdout.write(json.dumps(line.to_dict(), default=str) + "\n")
            else:
                at = line.at.strftime("%H:%M:%S.%f")[:-3] if line.at else ""
                stage = f" [{line.stage}]" if line.stage else ""
                out.print(f"{at} {line.level:<7}{stage} {line.message}", highlight=False)
        sys.stdout.flush()

    emit(lines)
    last = lines[-1].id if lines else 0
    if follow:
        waiter = a.store.change_waiter()
        try:
            while True:
                done = a.store.get(job.id).status in TERMINAL_STATUSES
                batch = a.store.job_logs(job.id, after=last, limit=1000)
                emit(batch)
                if batch:
                    last = batch[-1].id
                    continue
                if done:
                    break
                waiter(1.0)  # wakes when anything is written (LISTEN / data_version)
        except KeyboardInterrupt:
            err.print("stopped following")
        finally:
            waiter.close()
    a.close()


def _seconds(value: float) -> str:
    from rhizome.web.display import fmt_duration

    return fmt_duration(value) if value >= 1 else f"{value * 1000:.0f} ms"


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


# --- control: pause, resume, cancel, retry, delete (one, many or by filter) ---------------

IdsArg = Annotated[list[str] | None, typer.Argument(help="Job ids (or use a filter).")]
TypeOpt = Annotated[list[str] | None, typer.Option("--type", "-t", help="Select by job type.")]
StatusOpt = Annotated[
    list[str] | None, typer.Option("--status", "-s", help="Select by " + _STATUS_HELP)
]
StageOpt = Annotated[str | None, typer.Option("--stage", help="Select by current stage.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Select every job.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Confirm a destructive action.")]


def _selection(
    a: App,
    ids: list[str] | None,
    types: list[str] | None,
    statuses: list[str] | None,
    stage: str | None,
    everything: bool,
) -> Selection:
    for s in statuses or []:
        _check_status(s)
    for t in types or []:
        a.registry.get(t)
    return Selection(
        ids=ids or None, statuses=statuses, job_types=types, stage=stage, everything=everything
    )


def _control(
    action: str,
    ids: list[str] | None,
    types: list[str] | None,
    statuses: list[str] | None,
    stage: str | None,
    everything: bool,
    as_json: bool,
    *,
    restart: bool = False,
    confirmed: bool = True,
) -> None:
    a = _app()
    selection = _selection(a, ids, types, statuses, stage, everything)
    admin = a.admin()
    if not confirmed and not selection.ids:
        n = len(admin.select(selection))
        raise InvalidInputError(
            f"This would {action} {n} job(s) selected by a filter.",
            "Add --yes to confirm.",
        )
    if selection.ids and len(selection.ids) == 1 and not (types or statuses or stage):
        job_id = selection.ids[0]
        single = {
            "pause": lambda: admin.pause(job_id),
            "resume": lambda: admin.resume(job_id, restart=restart),
            "cancel": lambda: admin.cancel(job_id),
            "retry": lambda: admin.retry(job_id, restart=restart),
            "delete": lambda: admin.delete(job_id),
            "force_fail": lambda: admin.force_fail(job_id),
        }
        job = single[action]()
        a.close()
        if as_json:
            _emit(job.to_dict())
        elif action == "delete":
            out.print(f"deleted job {job.id} with its timeline, log and checkpoints")
        else:
            from rhizome.jobs.vocabulary import status_text

            out.print(
                f"{action.replace('_', '-')}: job {job.id} is now {status_text(_status_label(job))}"
            )
        return
    result = admin.bulk(action, selection, restart=restart)
    a.close()
    if as_json:
        _emit(result.to_dict())
        return
    out.print(f"{action.replace('_', '-')}: {len(result.done)} job(s)")
    for job_id, why in result.skipped.items():
        out.print(f"  skipped {job_id}: {why}")


@jobs_app.command("pause")
def jobs_pause(
    ids: IdsArg = None,
    job_type: TypeOpt = None,
    status: StatusOpt = None,
    stage: StageOpt = None,
    everything: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Pause jobs: pending ones at once, running ones at their next safe point."""
    _control("pause", ids, job_type, status, stage, everything, as_json)


@jobs_app.command("resume")
def jobs_resume(
    ids: IdsArg = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start over instead of from the checkpoint.")
    ] = False,
    job_type: TypeOpt = None,
    status: StatusOpt = None,
    stage: StageOpt = None,
    everything: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Resume paused jobs from their last checkpoint (or from the start with --restart)."""
    _control("resume", ids, job_type, status, stage, everything, as_json, restart=restart)


@jobs_app.command("cancel")
def jobs_cancel(
    ids: IdsArg = None,
    job_type: TypeOpt = None,
    status: StatusOpt = None,
    stage: StageOpt = None,
    everything: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Cancel jobs: pending/paused at once, running ones at their next safe point."""
    _control("cancel", ids, job_type, status, stage, everything, as_json)


@jobs_app.command("retry")
def jobs_retry(
    ids: IdsArg = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start over instead of from the checkpoint.")
    ] = False,
    job_type: TypeOpt = None,
    status: StatusOpt = None,
    stage: StageOpt = None,
    everything: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Retry failed or cancelled jobs (from their last checkpoint unless --restart)."""
    _control("retry", ids, job_type, status, stage, everything, as_json, restart=restart)


@jobs_app.command("delete")
def jobs_delete(
    ids: IdsArg = None,
    job_type: TypeOpt = None,
    status: StatusOpt = None,
    stage: StageOpt = None,
    everything: AllOpt = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete jobs, their timelines and checkpoints (a filter needs --yes)."""
    _control("delete", ids, job_type, status, stage, everything, as_json, confirmed=yes)


@jobs_app.command("force-fail")
def jobs_force_fail(
    ids: IdsArg = None,
    job_type: TypeOpt = None,
    status: StatusOpt = None,
    stage: StageOpt = None,
    everything: AllOpt = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Mark stuck jobs failed (a filter needs --yes)."""
    _control("force_fail", ids, job_type, status, stage, everything, as_json, confirmed=yes)


# --- queue --------------------------------------------------------------------------------

queue_app = typer.Typer(
    help="Pause or resume claiming (whole queue or one job type).", no_args_is_help=True
)
app.add_typer(queue_app, name="queue")
QueueTypeOpt = Annotated[
    str | None, typer.Option("--type", "-t", help="Only this job type (default: all).")
]


@queue_app.command("pause")
def queue_pause(
    job_type: QueueTypeOpt = None,
    running: Annotated[
        bool, typer.Option("--running", help="Also pause running jobs at their next safe point.")
    ] = False,
    reason: Annotated[str, typer.Option("--reason")] = "queue paused",
    as_json: JsonOpt = False,
) -> None:
    """Workers stop claiming; running jobs continue unless --running."""
    a = _app()
    if job_type:
        a.registry.get(job_type)
    result = a.admin().pause_queue(job_type, reason=reason, pause_running=running)
    state = a.admin().queue_state()
    a.close()
    if as_json:
        _emit({"queue": state, "paused_running": result.done})
    else:
        out.print(
            f"queue paused for {job_type or 'all job types'}"
            + (f"; pausing {len(result.done)} running job(s)" if running else "")
        )


@queue_app.command("resume")
def queue_resume(job_type: QueueTypeOpt = None, as_json: JsonOpt = False) -> None:
    """Workers claim again."""
    a = _app()
    if job_type:
        a.registry.get(job_type)
    a.admin().resume_queue(job_type)
    state = a.admin().queue_state()
    a.close()
    if as_json:
        _emit({"queue": state})
    else:
        out.print(f"queue resumed for {job_type or 'all job types'}")


@queue_app.command("status")
def queue_status(as_json: JsonOpt = False) -> None:
    """Show which job types are paused, and the job counts by status."""
    a = _app()
    state = a.admin().queue_state()
    counts = a.store.count_jobs()
    workers = a.store.list_workers()
    a.close()
    by_status: dict[str, int] = {}
    for (status, _), n in counts.items():
        by_status[status] = by_status.get(status, 0) + n
    if as_json:
        _emit(
            {
                "queue": state,
                "counts": by_status,
                "workers": [
                    {
                        "id": w.id,
                        "host": w.host,
                        "pid": w.pid,
                        "concurrency": w.concurrency,
                        "last_seen_at": w.last_seen_at,
                        "stopped_at": w.stopped_at,
                    }
                    for w in workers
                ],
            }
        )
        return
    paused = [k for k, v in state.items() if v["paused"]]
    out.print("paused: " + (", ".join("all" if p == "*" else p for p in paused) or "nothing"))
    out.print("jobs: " + (", ".join(f"{k} {v}" for k, v in sorted(by_status.items())) or "none"))
    live = [w for w in workers if w.stopped_at is None]
    out.print(f"workers: {len(live)} running")


# --- admin --------------------------------------------------------------------------------

admin_app = typer.Typer(help="Clean-up and emergency actions.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
cli_portability.register(app, admin_app)  # export, import, highlights, admin scan-storage


def _admin_action(name: str, run: Any, as_json: bool, yes: bool | None = None) -> None:
    if yes is False:
        raise InvalidInputError(f"`rhizome admin {name}` is destructive.", "Add --yes to confirm.")
    a = _app()
    result = run(a.admin())
    a.close()
    if as_json:
        _emit({"action": name, "result": result})
    else:
        out.print(f"{name}: {json.dumps(result, default=str)}")


@admin_app.command("clear-completed")
def admin_clear_completed(as_json: JsonOpt = False) -> None:
    """Delete every completed job."""
    _admin_action("clear-completed", lambda ad: {"deleted": ad.clear_completed()}, as_json)


@admin_app.command("clear-failed")
def admin_clear_failed(as_json: JsonOpt = False) -> None:
    """Delete every failed job."""
    _admin_action("clear-failed", lambda ad: {"deleted": ad.clear_failed()}, as_json)


@admin_app.command("stop-all")
def admin_stop_all(yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Force-fail every active (pending or processing) job."""
    _admin_action("stop-all", lambda ad: {"stopped": ad.stop_all()}, as_json, yes)


@admin_app.command("clear-all")
def admin_clear_all(yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Fix orphans, then delete every job whatever its status."""
    _admin_action("clear-all", lambda ad: ad.clear_all(), as_json, yes)


@admin_app.command("reset")
def admin_reset(yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Nuclear reset: every job, every checkpoint, and documents still being processed."""
    _admin_action("reset", lambda ad: ad.nuclear_reset(), as_json, yes)


@admin_app.command("fix-orphans")
def admin_fix_orphans(as_json: JsonOpt = False) -> None:
    """Release jobs of dead workers; remove checkpoints of jobs that are gone."""
    _admin_action("fix-orphans", lambda ad: ad.fix_orphans(), as_json)


@admin_app.command("workers")
def admin_workers(as_json: JsonOpt = False) -> None:
    """List worker processes seen in the last day."""
    a = _app()
    workers = a.store.list_workers()
    a.close()
    if as_json:
        _emit([w.__dict__ for w in workers])
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "host", "pid", "concurrency", "last seen", "stopped"):
        table.add_column(col)
    for w in workers:
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            str(w.concurrency),
            str(w.last_seen_at),
            str(w.stopped_at or ""),
        )
    out.print(table)


# --- library: add, docs, connections -----------------------------------------------------

docs_app = typer.Typer(help="Documents in the library.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")
app.add_typer(connections_app, name="connections")
cli_integrations.register(app)  # obsidian, readwise, highlights review
cli_users.register(app)  # users add|list|token|revoke|role


@app.command("add")
def add_cmd(
    sources: Annotated[list[str], typer.Argument(help="Files (PDF, EPUB, HTML, MD, TXT) or URLs.")],
    title: Annotated[str | None, typer.Option("--title", help="Title (one source only).")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until done (runs a worker if none).")
    ] = False,
    user: Annotated[str, typer.Option("--user", help="Owner.")] = "local",
    as_json: JsonOpt = False,
) -> None:
    """Add documents to the library: each becomes a process_document job."""
    from pathlib import Path

    from rhizome.library.ingest import add_bytes, add_url

    a = _app()
    if title and len(sources) > 1:
        raise InvalidInputError("--title applies to one source only.", "Add them one by one.")
    added = []
    for source in sources:
        if source.startswith(("http://", "https://")):
            added.append(add_url(a.store, source, user_id=user, title=title))
            continue
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidInputError(f"No such file: {source}.", "Check the path.")
        added.append(
            add_bytes(
                a.store, a.storage, path.read_bytes(), filename=path.name, user_id=user, title=title
            )
        )
    results: list[dict[str, Any]] = [
        {"document_id": x.document.id, "job_id": x.job.id, "title": x.document.title} for x in added
    ]
    if wait:
        from rhizome.progress import wait_for_jobs

        final = wait_for_jobs(a, [x.job.id for x in added], console=err.real, quiet=as_json)
        for r in results:
            job = final[r["job_id"]]
            r["status"] = job.status.value
            r["error"] = job.error_message
            doc = a.library().get_document(r["document_id"], user)
            r["document_status"], r["title"] = doc.status, doc.title
    a.close()
    if as_json:
        _emit(results if len(results) > 1 else results[0])
    else:
        for r in results:
            line = f"added {r['title']!r}: document {r['document_id']}, job {r['job_id']}"
            if wait:
                line += f" → {r['status']}"
                if r.get("error"):
                    line += f" ({r['error']})"
            out.print(line, highlight=False)
    if wait and any(r["status"] != "completed" for r in results):
        raise typer.Exit(1)


@docs_app.command("list")
def docs_list(
    status: Annotated[str | None, typer.Option("--status")] = None,
    user: Annotated[str, typer.Option("--user")] = "local",
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List documents, newest first."""
    a = _app()
    docs = a.library().list_documents(user, status=status, limit=limit)
    a.close()
    if as_json:
        _emit([d.to_dict() for d in docs])
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=36)
    for col in ("title", "type", "status", "words", "chunks"):
        table.add_column(col)
    for d in docs:
        table.add_row(
            d.id,
            d.title,
            d.source_type,
            d.status,
            str(d.word_count or ""),
            str(d.chunk_count or ""),
        )
    out.print(table)


@docs_app.command("show")
def docs_show(
    document_id: str,
    user: Annotated[str, typer.Option("--user")] = "local",
    as_json: JsonOpt = False,
) -> None:
    """A document with its chunks and connections."""
    a = _app()
    lib = a.library()
    doc = lib.get_document(document_id, user)
    chunks = lib.list_chunks(doc.id, user)
    conns = [c for c in lib.list_connections(doc.id, user) if not c.rejected]
    a.close()
    if as_json:
        _emit(
            {
                "document": doc.to_dict(),
                "chunks": [c.to_dict() for c in chunks],
                "connections": [c.to_dict() for c in conns],
            }
        )
        return
    out.print(f"[bold]{doc.title}[/bold] ({doc.source_type}, {doc.status})", highlight=False)
    out.print(f"{doc.word_count or 0} words, {len(chunks)} chunks, {len(conns)} connections")
    for c in conns[:20]:
        out.print(f"  {c.combined_score:.2f} {c.reason or ''}", highlight=False)


@docs_app.command("delete")
def docs_delete(
    document_ids: list[str],
    user: Annotated[str, typer.Option("--user")] = "local",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete documents with their chunks, connections, files and jobs."""
    from rhizome.library.admin import delete_document

    if not yes:
        raise InvalidInputError("Deleting documents cannot be undone.", "Add --yes to confirm.")
    a = _app()
    deleted = [delete_document(a.store, a.storage, d, user).id for d in document_ids]
    a.close()
    if as_json:
        _emit({"deleted": deleted})
    else:
        out.print(f"deleted {len(deleted)} document(s)")


# --- server -------------------------------------------------------------------------------


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option("--host", help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port.")] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API and UI only; run workers elsewhere.")
    ] = False,
    apps: AppOpt = None,
) -> None:
    """Run the web UI and HTTP API (and, unless --no-worker, a worker) in one process."""
    from rhizome.web.server import run

    a = _app(apps)
    run(a, host=host or a.settings.host, port=port or a.settings.port, worker=not no_worker)


# --- helpers ------------------------------------------------------------------------------


def _check_status(value: str) -> None:
    """A ``--status`` value: a stored status or a derived one (active, pausing, cancelling,
    retrying), as defined once in :mod:`rhizome.jobs.model`."""
    if value not in STATUS_FILTERS:
        raise InvalidInputError(
            f"Unknown status {value!r}.",
            "Use one of: " + ", ".join(STATUS_FILTERS) + ".",
        )


def _status_label(job: Job) -> str:
    return job.display_status


def _safe_url(url: str) -> str:
    from rhizome.jobs.store.postgres import _redact

    return _redact(url)


def _tidy_help(command: Any) -> None:
    """Help shows plain metavars: nothing for flags, TEXT / INTEGER / … for values and
    JOB_ID for arguments (typer would write ``<bool>``, ``<list[str]>``, ``{job_id}``)."""
    original_help = getattr(command, "get_help_option", None)
    if callable(original_help):

        def help_option(ctx: Any, original: Any = original_help) -> Any:
            option = original(ctx)
            if option is not None:
                option.metavar = ""
            return option

        command.get_help_option = help_option
    for param in getattr(command, "params", []):
        if param.metavar is not None:
            continue
        if getattr(param, "param_type_name", "") == "argument":
            name = (param.name or "value").upper()
            param.metavar = name + ("..." if param.nargs != 1 else "")
            kind = getattr(getattr(param, "type_descriptor", None), "annotation", str)
            if typing.get_origin(kind) in (list, tuple) or kind is str or kind == (str | None):
                param.display_type_rich = lambda ctx: "TEXT"
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        else:
            desc = getattr(param, "type_descriptor", None)
            choices = getattr(desc, "choices", None) if getattr(desc, "is_choice", False) else None
            if choices:
                param.metavar = "[" + "|".join(str(c) for c in choices) + "]"
            else:
                kind = getattr(desc, "annotation", str)
                if typing.get_origin(kind) in (list, tuple):
                    kind = (typing.get_args(kind) or (str,))[0]
                names = {int: "INTEGER", float: "FLOAT", str: "TEXT"}
                param.metavar = names.get(kind, getattr(kind, "__name__", "VALUE").upper())
    for sub in (getattr(command, "commands", None) or {}).values():
        _tidy_help(sub)


def main() -> None:
    try:
        command = typer.main.get_command(app)
        _tidy_help(command)
        command(standalone_mode=True)
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
        if debug_enabled():
            raise
        err.print(
            f"[bold red]Unexpected error:[/bold red] {type(exc).__name__}: {exc}", highlight=False
        )
        err.print("Run again with RHIZOME_DEBUG=1 for the full traceback, and report it.")
        sys.exit(1)


if __name__ == "__main__":
    main()
