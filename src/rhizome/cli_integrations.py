"""``rhizome obsidian config|export|sync|status``, ``rhizome readwise import`` and
``rhizome highlights review``: the integrations' commands (registered on the main
command by :func:`register`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rhizome.app import App
from rhizome.cli_output import Table, console
from rhizome.config import load_settings
from rhizome.errors import InvalidInputError
from rhizome.logs import setup_logging

out = console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
UserOpt = Annotated[str, typer.Option("--user", help="Owner.")]
WaitOpt = Annotated[
    bool,
    typer.Option("--wait", help="Show progress until done (runs a worker here if none is live)."),
]

obsidian_app = typer.Typer(
    help="Obsidian: vault settings, export of documents as notes, two-way sync.",
    no_args_is_help=True,
)
readwise_app = typer.Typer(help="Readwise: import highlights.", no_args_is_help=True)


def _app() -> App:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    return App(settings)


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _run(a: App, job_id: str, wait: bool, quiet: bool) -> dict[str, Any]:
    """The job's id and status; with ``wait``, its end state and output."""
    result: dict[str, Any] = {"job_id": job_id}
    if not wait:
        result["status"] = a.store.get(job_id).status.value
        return result
    from rhizome.progress import wait_for_jobs

    final = wait_for_jobs(a, [job_id], console=err.real, quiet=quiet)[job_id]
    result["status"] = final.status.value
    if final.status.value != "completed":
        result["error"] = final.error_message
    result["output"] = final.output_data or {}
    return result


def _queued(result: dict[str, Any], types: str) -> None:
    out.print(
        f"queued job {result['job_id']} ({result['status']}); add --wait to run it here and "
        f"watch it, or run a worker: rhizome worker --types {types}",
        highlight=False,
    )


def _failed(result: dict[str, Any]) -> None:
    if result.get("status") != "completed":
        err.print(f"[bold red]{result.get('status')}:[/bold red] {result.get('error') or ''}")
        raise typer.Exit(2)


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v) or "nothing"


# --- obsidian ------------------------------------------------------------------------------------


@obsidian_app.command("config")
def obsidian_config(
    vault: Annotated[
        str | None, typer.Option("--vault", help="The vault folder (absolute path).")
    ] = None,
    subfolder: Annotated[
        str | None, typer.Option("--subfolder", help="Inside the vault (default Rhizome).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The vault's name in Obsidian (for links).")
    ] = None,
    highlights: Annotated[
        bool | None,
        typer.Option("--highlights/--no-highlights", help="Write the Highlights notes."),
    ] = None,
    connections: Annotated[
        bool | None,
        typer.Option("--connections/--no-connections", help="Write the Connections notes."),
    ] = None,
    no_check: Annotated[
        bool,
        typer.Option("--no-check", help="Save a folder that only another machine sees."),
    ] = False,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Show or set the vault settings (no options: show them)."""
    from rhizome.library.integrations import obsidian_overview
    from rhizome.library.vault import VaultRepo

    a = _app()
    repo = VaultRepo(a.store)
    current = repo.settings(user)
    changing = any(v is not None for v in (vault, subfolder, name, highlights, connections))
    if changing:
        path = vault or (current.vault_path if current else None)
        if path is None:
            raise InvalidInputError(
                "No vault is configured yet.", "Give it: rhizome obsidian config --vault PATH"
            )
        repo.save_settings(
            user,
            vault_path=str(Path(path).expanduser()) if vault else path,
            subfolder=subfolder
            if subfolder is not None
            else (current.subfolder if current else None),
            vault_name=name if name is not None else (current.vault_name if current else None),
            export_highlights=highlights
            if highlights is not None
            else (current.export_highlights if current else True),
            export_connections=connections
            if connections is not None
            else (current.export_connections if current else True),
            check=not no_check,
        )
    overview = obsidian_overview(a.store, user)
    a.close()
    if as_json:
        _emit(overview)
        return
    s = overview["settings"]
    if s is None:
        out.print("No vault configured. Set it: rhizome obsidian config --vault PATH")
        return
    out.print(f'vault       {s["vault_path"]} ("{s["vault_name"]}" in Obsidian)', highlight=False)
    out.print(f"sub-folder  {s['subfolder']}/", highlight=False)
    out.print(
        f"exports     notes{', highlights' if s['export_highlights'] else ''}"
        f"{', connections' if s['export_connections'] else ''}",
        highlight=False,
    )
    seen = overview["vault_visible_here"]
    out.print(f"here        {'visible' if seen else 'NOT visible on this machine'}")
    out.print(f"notes       {overview['notes']} ({_counts(overview['counts'])})", highlight=False)
    for c in overview["conflicts"]:
        out.print(
            f"conflict    {c['title']}: rhizome obsidian sync --resolve {c['document_id']} "
            "keep-vault|keep-library",
            highlight=False,
        )


@obsidian_app.command("export")
def obsidian_export(
    documents: Annotated[
        list[str] | None, typer.Argument(help="Documents to export (or --all).")
    ] = None,
    all_docs: Annotated[bool, typer.Option("--all", help="Every ready document.")] = False,
    wait: WaitOpt = False,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Write documents as notes into the vault (only files whose bytes changed)."""
    from rhizome.library.integrations import request_obsidian_export

    if bool(documents) == all_docs:
        raise InvalidInputError(
            "Name the documents to export, or use --all.",
            "For example: rhizome obsidian export --all --wait",
        )
    a = _app()
    job = request_obsidian_export(a.store, user, None if all_docs else documents)
    result = _run(a, job.id, wait, as_json)
    a.close()
    if as_json:
        _emit(result)
        if wait:
            _failed(result)
        return
    if not wait:
        _queued(result, "obsidian_export,obsidian_sync")
        return
    _failed(result)
    output = result["output"]
    table = Table("document", "status", "note", "obsidian link")
    for n in output.get("notes") or []:
        table.add_row(
            str(n.get("title") or n.get("document_id")),
            str(n.get("status")),
            str(n.get("note") or ""),
            str(n.get("link") or n.get("message") or ""),
        )
    out.print(table)
    out.print(f"{output.get('documents')} documents: {_counts(output.get('counts') or {})}")


@obsidian_app.command("sync")
def obsidian_sync(
    resolve: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--resolve",
            metavar="DOC keep-vault|keep-library",
            help="Resolve a conflict: keep the vault's or the library's version.",
        ),
    ] = None,
    documents: Annotated[
        list[str] | None, typer.Option("--document", help="Sync only this document's note.")
    ] = None,
    wait: WaitOpt = False,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Sync the vault both ways; report conflicts (nothing overwritten) and resolve them."""
    from rhizome.library.integrations import request_obsidian_sync

    if resolve is not None and resolve[1] not in ("keep-vault", "keep-library", "vault", "library"):
        raise InvalidInputError(
            f"Unknown resolution {resolve[1]!r}.",
            "Use: rhizome obsidian sync --resolve DOC keep-vault (or keep-library)",
        )
    a = _app()
    job = request_obsidian_sync(
        a.store, user, document_ids=documents, resolve=[resolve] if resolve else None
    )
    result = _run(a, job.id, wait, as_json)
    a.close()
    if as_json:
        _emit(result)
        if wait:
            _failed(result)
        return
    if not wait:
        _queued(result, "obsidian_export,obsidian_sync")
        return
    _failed(result)
    output = result["output"]
    table = Table("note", "status", "direction", "highlights", "message")
    for n in output.get("notes") or []:
        table.add_row(
            str(n.get("note")),
            str(n.get("status")),
            str(n.get("direction") or ""),
            _counts(n.get("highlights") or {}) if n.get("highlights") else "",
            str(n.get("message") or ""),
        )
    if output.get("notes"):
        out.print(table)
    out.print(f"sync: {_counts(output.get('counts') or {})}", highlight=False)
    recovery = output.get("highlight_recovery") or {}
    if any(recovery.values()):
        out.print(f"highlights after edits: {_counts(recovery)}", highlight=False)
    for c in output.get("conflicts") or []:
        out.print(
            f"conflict: {c.get('title')} ({c.get('note_path')}) — rhizome obsidian sync "
            f"--resolve {c.get('document_id')} keep-vault|keep-library",
            highlight=False,
        )


@obsidian_app.command("status")
def obsidian_status(user: UserOpt = "local", as_json: JsonOpt = False) -> None:
    """The notes the integration knows, with their sync status."""
    from rhizome.library.vault import VaultRepo

    a = _app()
    notes = VaultRepo(a.store).notes(user)
    a.close()
    if as_json:
        _emit([n.to_dict() for n in notes])
        return
    table = Table("note", "document", "status", "last sync", "message")
    for n in notes:
        table.add_row(
            n.note_path,
            n.document_id or "—",
            n.status,
            n.synced_at.isoformat(timespec="seconds") if n.synced_at else "",
            n.message or "",
        )
    out.print(table)


# --- readwise ------------------------------------------------------------------------------------


@readwise_app.command("import")
def readwise_import(
    file: Annotated[
        Path | None, typer.Argument(help="Readwise's CSV export, or the export API's JSON.")
    ] = None,
    api: Annotated[
        bool, typer.Option("--api", help="Fetch from the Readwise export API instead.")
    ] = False,
    token: Annotated[
        str | None, typer.Option("--token", help="Your Readwise access token (stored).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="With --api: everything, not only what is new.")
    ] = False,
    wait: WaitOpt = False,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Import Readwise highlights into the documents they come from."""
    from rhizome.library.integrations import request_readwise_api, request_readwise_file

    if (file is None) == (not api):
        raise InvalidInputError(
            "Give the export file, or --api to fetch from Readwise.",
            "For example: rhizome readwise import readwise-export.csv --wait",
        )
    a = _app()
    if file is not None:
        path = file.expanduser()
        if not path.is_file():
            raise InvalidInputError(f"No such file: {file}.", "Check the path.")
        job = request_readwise_file(a.store, a.storage, user, path.read_bytes(), path.name)
    else:
        job = request_readwise_api(a.store, user, token=token, full=full)
    result = _run(a, job.id, wait, as_json)
    a.close()
    if as_json:
        _emit(result)
        if wait:
            _failed(result)
        return
    if not wait:
        _queued(result, "readwise_import")
        return
    _failed(result)
    output = result["output"]
    table = Table("book", "document", "score", "matched", "review", "unmatched", "skipped", "dup")
    for b in output.get("books") or []:
        c = b.get("counts") or {}
        table.add_row(
            f"{b['title']}" + (f" — {b['author']}" if b.get("author") else ""),
            str(b.get("document_title") or f"not placed: {b.get('reason')}"),
            f"{float(b.get('score') or 0):.2f}",
            str(c.get("matched", 0)),
            str(c.get("needs_review", 0)),
            str(c.get("unmatched", 0)),
            str(c.get("skipped", 0)),
            str(c.get("duplicates", 0)),
        )
    out.print(table)
    out.print(f"highlights: {_counts(output.get('counts') or {})}", highlight=False)
    if (output.get("counts") or {}).get("needs_review"):
        out.print("review the suggested passages: rhizome highlights review")


# --- highlights review ---------------------------------------------------------------------------


def _ids(values: list[str] | None) -> list[str]:
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def highlights_review(
    accept: Annotated[
        list[str] | None,
        typer.Option("--accept", help="Accept the suggested passage (repeatable, or a,b,c)."),
    ] = None,
    reject: Annotated[
        list[str] | None,
        typer.Option("--reject", help="Reject the suggestion (repeatable, or a,b,c)."),
    ] = None,
    document: Annotated[
        str | None, typer.Option("--document", help="Only this document's highlights.")
    ] = None,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Highlights waiting for review (a passage was only suggested); accept or reject."""
    from rhizome.library.review import Review

    a = _app()
    review = Review(a.store, a.storage)
    accepted, rejected = _ids(accept), _ids(reject)
    if accepted or rejected:
        outcome = review.decide(user, accept=accepted, reject=rejected)
        a.close()
        if as_json:
            _emit(outcome.to_dict())
            return
        out.print(
            f"accepted {len(outcome.accepted)}, rejected {len(outcome.rejected)}, "
            f"skipped {len(outcome.skipped)}",
            highlight=False,
        )
        for s in outcome.skipped:
            out.print(f"  skipped {s['id']}: {s['reason']}", highlight=False)
        return
    items = review.pending(user, document_id=document, limit=10_000)
    a.close()
    if as_json:
        _emit(items)
        return
    if not items:
        out.print("nothing to review")
        return
    table = Table("id", "document", "highlight", "suggested passage", "why")
    for h in items:
        text = " ".join(str(h["text"]).split())
        sugg = " ".join(str(h.get("suggested") or "—").split())
        table.add_row(
            h["id"],
            str(h.get("document_title") or ""),
            text if len(text) <= 70 else text[:69] + "…",
            sugg if len(sugg) <= 70 else sugg[:69] + "…",
            str(h.get("match_reason") or ""),
        )
    out.print(table)
    out.print("accept or reject: rhizome highlights review --accept ID --reject ID")


def register(app: typer.Typer) -> None:
    """Add the integrations' commands to the ``rhizome`` command."""
    from rhizome.cli_portability import highlights_app

    app.add_typer(obsidian_app, name="obsidian")
    app.add_typer(readwise_app, name="readwise")
    highlights_app.command("review")(highlights_review)
