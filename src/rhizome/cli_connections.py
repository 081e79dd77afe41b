"""``rhizome connections …``: list the library's connections with filters, curate them
(validate, reject, star, and undo), and reprocess them (modes all / add_new / smart, with
a backup of the user's decisions first)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from rhizome.app import App
from rhizome.cli_output import Table, console
from rhizome.config import load_settings
from rhizome.errors import InvalidInputError
from rhizome.logs import setup_logging

out = console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = console(stderr=True)

connections_app = typer.Typer(
    help="Connections between documents: list, validate, reject, star, reset, reprocess.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
UserOpt = Annotated[str, typer.Option("--user", help="Owner.")]
IdsArg = Annotated[list[str], typer.Argument(help="Connection ids.")]
UndoOpt = Annotated[bool, typer.Option("--undo", help="Take the decision back.")]


def _app() -> App:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    return App(settings)


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _scores(c: dict[str, Any]) -> str:
    """The per-engine scores, ``—`` for an engine that did not judge the pair."""
    short = {"semantic": "sem", "contradiction": "con", "thematic": "thm"}
    parts = []
    for engine, name in short.items():
        score = c["engine_scores"].get(engine, 0)
        parts.append(f"{name} {score:.2f}" if score > 0 else f"{name} —")
    return " ".join(parts)


@connections_app.command("list")
def connections_list(
    document: Annotated[str | None, typer.Argument(help="Only this document's.")] = None,
    validated: Annotated[bool, typer.Option("--validated", help="Validated only.")] = False,
    starred: Annotated[bool, typer.Option("--starred", help="Starred only.")] = False,
    rejected: Annotated[bool, typer.Option("--rejected", help="Rejected (hidden) only.")] = False,
    engine: Annotated[
        str | None, typer.Option("--engine", help="semantic, contradiction or thematic.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", min=0.0, max=1.0, help="Combined score ≥ S.")
    ] = None,
    sort: Annotated[
        str, typer.Option("--sort", help="score, score_asc, newest, decided or document.")
    ] = "score",
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """List connections (best first; rejected ones only with --rejected)."""
    from rhizome.library.connections import Curation

    flags = (("validated", validated), ("starred", starred), ("rejected", rejected))
    chosen = [name for name, on in flags if on]
    if len(chosen) > 1:
        raise InvalidInputError(
            "Choose one of --validated, --starred, --rejected.", "Run the command once per state."
        )
    a = _app()
    try:
        page = Curation(a.store).search(
            user,
            document_id=document,
            state=chosen[0] if chosen else None,
            engine=engine,
            min_score=min_score,
            sort=sort,
            limit=limit,
        )
    finally:
        a.close()
    items = [c.to_dict() for c in page.items]
    if as_json:
        _emit({"connections": items, "total": page.total, "counts": page.counts})
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=36)
    for col in ("score", "engines", "state", "from", "to", "reason"):
        table.add_column(col)
    for c in items:
        table.add_row(
            c["id"],
            f"{c['combined_score']:.2f}",
            _scores(c),
            ",".join(c["states"]) or "—",
            f"{c['source_title'][:30]} #{c['source_index']}",
            f"{c['target_title'][:30]} #{c['target_index']}",
            (c["reason"] or "")[:60],
        )
    out.print(table)
    counts = page.counts
    out.print(
        f"{page.total} shown of {counts.get('visible', 0)} visible · "
        f"{counts.get('validated', 0)} validated · {counts.get('starred', 0)} starred · "
        f"{counts.get('rejected', 0)} rejected",
        highlight=False,
    )


@connections_app.command("show")
def connections_show(connection_id: str, user: UserOpt = "local", as_json: JsonOpt = False) -> None:
    """One connection: both passages, the per-engine scores and the reason."""
    from rhizome.library.connections import Curation

    a = _app()
    try:
        c = Curation(a.store).get(connection_id, user).to_dict()
    finally:
        a.close()
    if as_json:
        _emit(c)
        return
    out.print(
        f"[bold]{c['combined_score']:.2f}[/bold]  {_scores(c)}  {','.join(c['states'])}",
        highlight=False,
    )
    out.print(f"[bold]{c['source_title']}[/bold] #{c['source_index']}", highlight=False)
    out.print(f"  {c['source_text']}", highlight=False)
    out.print(f"[bold]{c['target_title']}[/bold] #{c['target_index']}", highlight=False)
    out.print(f"  {c['target_text']}", highlight=False)
    if c["reason"]:
        out.print(f"why: {c['reason']}", highlight=False)


def _decide(ids: list[str], action: str, user: str, as_json: bool) -> None:
    from rhizome.library.connections import Curation

    a = _app()
    try:
        curation = Curation(a.store)
        done = [curation.decide(cid, user, action).to_dict() for cid in ids]
    finally:
        a.close()
    if as_json:
        _emit({"action": action, "connections": done})
        return
    for c in done:
        state = ",".join(c["states"]) or "no decision"
        out.print(f"{c['id']}: {state}", highlight=False)


@connections_app.command("validate")
def connections_validate(
    ids: IdsArg, undo: UndoOpt = False, user: UserOpt = "local", as_json: JsonOpt = False
) -> None:
    """Validate connections: kept forever, whatever later reprocessing does."""
    _decide(ids, "unvalidate" if undo else "validate", user, as_json)


@connections_app.command("reject")
def connections_reject(
    ids: IdsArg, undo: UndoOpt = False, user: UserOpt = "local", as_json: JsonOpt = False
) -> None:
    """Reject connections: hidden, and never re-created by a later detection."""
    _decide(ids, "unreject" if undo else "reject", user, as_json)


@connections_app.command("star")
def connections_star(
    ids: IdsArg, undo: UndoOpt = False, user: UserOpt = "local", as_json: JsonOpt = False
) -> None:
    """Star connections (kept by every reprocess, like validated ones)."""
    _decide(ids, "unstar" if undo else "star", user, as_json)


@connections_app.command("reset")
def connections_reset(ids: IdsArg, user: UserOpt = "local", as_json: JsonOpt = False) -> None:
    """Remove every decision (validated, starred, rejected) from connections."""
    _decide(ids, "reset", user, as_json)


def _print_counts(output: dict[str, Any]) -> None:
    out.print(
        f"{output['mode']}: {output['documents']} document(s) · before {output['before']} → "
        f"after {output['after']} · added {output['added']}, kept {output['kept']}, "
        f"removed {output['removed']}",
        highlight=False,
    )
    for key in output.get("backups") or []:
        out.print(f"backup: {key}", highlight=False)


@connections_app.command("reprocess")
def connections_reprocess(
    document_ids: Annotated[
        list[str] | None, typer.Argument(help="Documents (default: every ready one).")
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="smart: keep every decision, re-detect the rest; all: re-detect everything "
            "but validated and starred; add_new: only add connections to newer documents.",
        ),
    ] = "smart",
    backup: Annotated[
        bool | None,
        typer.Option(
            "--backup/--no-backup",
            help="Back up decided connections first (default: on for all and smart).",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the job and print its counts.")
    ] = False,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Queue a reprocess_connections job (with --wait: run it and print the counts)."""
    from rhizome.library.connections import queue_reprocess

    if mode not in ("all", "add_new", "smart"):
        raise InvalidInputError(f"Unknown mode {mode!r}.", "Use all, add_new or smart.")
    a = _app()
    try:
        job = queue_reprocess(
            a.store, user, mode=mode, document_ids=document_ids or None, backup_first=backup
        )
        if wait:
            from rhizome.progress import wait_for_jobs

            job = wait_for_jobs(a, [job.id], console=err.real, quiet=as_json)[job.id]
    finally:
        a.close()
    if as_json:
        _emit(job.to_dict())
        if wait and job.status.value != "completed":
            raise typer.Exit(1)
        return
    if not wait:
        out.print(f"enqueued reprocess_connections job {job.id}", highlight=False)
        return
    if job.status.value != "completed" or not job.output_data:
        out.print(f"job {job.id} {job.status.value}: {job.error_message or ''}", highlight=False)
        raise typer.Exit(1)
    _print_counts(job.output_data)
