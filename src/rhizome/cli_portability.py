"""``rhizome export``, ``rhizome import``, ``rhizome highlights …`` and ``rhizome admin
scan-storage``: the library's portability commands (registered on the main command by
:func:`register`)."""

from __future__ import annotations

import json
import sys
import uuid
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
Strategies = ("skip", "replace", "merge_smart")
NEEDS_STRATEGY_EXIT = 3
"""Exit status of `rhizome import` when a conflict needs a strategy (errors exit 2)."""

highlights_app = typer.Typer(help="Highlights on documents.", no_args_is_help=True)


def _app() -> App:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    return App(settings)


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:,.1f} {unit}"


def _wait(a: App, job_id: str, quiet: bool) -> Any:
    from rhizome.progress import wait_for_jobs

    return wait_for_jobs(a, [job_id], console=err.real, quiet=quiet)[job_id]


# --- export --------------------------------------------------------------------------------------


def export_cmd(
    documents: Annotated[
        list[str] | None, typer.Argument(help="Documents to export (or --all).")
    ] = None,
    all_docs: Annotated[bool, typer.Option("--all", help="Export the whole library.")] = False,
    no_connections: Annotated[
        bool, typer.Option("--no-connections", help="Leave connections.json out.")
    ] = False,
    no_highlights: Annotated[
        bool, typer.Option("--no-highlights", help="Leave highlights.json out.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Wait, then copy the ZIP to this file."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until done.")] = False,
    sync_storage: Annotated[
        bool,
        typer.Option(
            "--sync-storage", help="Also rewrite each document's chunks.json from the database."
        ),
    ] = False,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Export documents (files, chunks, embeddings, highlights, connections) to one ZIP."""
    from rhizome.library.portability import request_export

    if bool(documents) == all_docs:
        raise InvalidInputError(
            "Name the documents to export, or use --all for the whole library.",
            "For example: rhizome export --all -o library.zip",
        )
    if output is not None and output.exists() and output.is_dir():
        raise InvalidInputError(f"{output} is a folder.", "Give a file name for the ZIP.")
    a = _app()
    job = request_export(
        a.store,
        user,
        None if all_docs else documents,
        connections=not no_connections,
        highlights=not no_highlights,
        sync_storage=sync_storage,
    )
    result: dict[str, Any] = {"job_id": job.id, "status": job.status.value}
    if output is not None or wait:
        final = _wait(a, job.id, as_json)
        result["status"] = final.status.value
        if final.status.value != "completed":
            result["error"] = final.error_message
        else:
            result.update(final.output_data or {})
            if output is not None:
                with a.storage.open_read(final.output_data["path"]) as src:
                    tmp = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.part")
                    with open(tmp, "wb") as dst:
                        while block := src.read(1024 * 1024):
                            dst.write(block)
                    tmp.replace(output)
                result["output"] = str(output)
    a.close()
    if as_json:
        _emit(result)
    elif result["status"] == "completed" and "path" in result:
        where = result.get("output") or result["path"]
        out.print(
            f"exported {result['documents']} documents ({result['chunks']:,} chunks, "
            f"{result['highlights']:,} highlights, {result['connections']:,} connections) "
            f"→ {where} ({_size(int(result['size']))})",
            highlight=False,
        )
    elif result["status"] in ("pending", "processing"):
        out.print(f"export queued: job {job.id} (rhizome jobs show {job.id})", highlight=False)
    else:
        out.print(f"export {result['status']}: {result.get('error')}", highlight=False)
    if result["status"] not in ("completed", "pending", "processing"):
        raise typer.Exit(1)


# --- import --------------------------------------------------------------------------------------


def _print_report(report: dict[str, Any]) -> None:
    err.print(
        f"[bold yellow]Conflict:[/bold yellow] {report['conflicting']} of "
        f"{report['documents']} documents already have chunks in the library.",
        highlight=False,
    )
    for c in report["conflicts"]:
        table = Table(title=f"{c['title']} ({c['document_id']})", show_lines=True)
        table.add_column("", style="bold")
        table.add_column("In the library")
        table.add_column("In the import")
        db, imp = c["database"], c["import"]
        table.add_row("chunks", str(db["chunk_count"]), str(imp["chunk_count"]))
        table.add_row(
            "dates",
            f"created {db['created_at']}\nupdated {db['updated_at']}",
            f"exported {imp.get('exported_at') or '—'}",
        )
        for i in range(max(len(db["samples"]), len(imp["samples"]))):
            left = db["samples"][i] if i < len(db["samples"]) else None
            right = imp["samples"][i] if i < len(imp["samples"]) else None
            table.add_row(
                f"sample {i + 1}",
                f"#{left['index']} {left['text']}" if left else "",
                f"#{right['index']} {right['text']}" if right else "",
            )
        table.add_row("recommended", c["recommended"], "")
        err.print(table)
    err.print("Strategies:", highlight=False)
    for name, text in report["strategies"].items():
        mark = " (recommended)" if name == report["recommended"] else ""
        err.print(f"  [bold]{name}[/bold]{mark}: {text}", highlight=False)
    err.print(
        f"Run again with --strategy {report['recommended']} (or replace, or skip).",
        highlight=False,
    )


def import_cmd(
    source: Annotated[str, typer.Argument(help="An export ZIP, or the id of a document folder.")],
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy", help="For documents that have chunks: skip|replace|merge_smart."
        ),
    ] = None,
    regenerate_embeddings: Annotated[
        bool, typer.Option("--regenerate-embeddings", help="Embed every imported chunk again.")
    ] = False,
    reprocess_connections: Annotated[
        bool,
        typer.Option("--reprocess-connections", help="Queue connection detection afterwards."),
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until done.")] = False,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Import an export ZIP or a document folder (a conflict without --strategy: exit 3)."""
    from rhizome.library.portability import (
        ImportConflictError,
        ZipSource,
        plan_import,
        request_import,
        save_upload,
    )

    if strategy is not None and strategy not in Strategies:
        raise InvalidInputError(
            f"Unknown strategy {strategy!r}.", "Use one of: " + ", ".join(Strategies) + "."
        )
    path = Path(source).expanduser()
    a = _app()
    options: dict[str, Any] = {
        "strategy": strategy,
        "regenerate_embeddings": regenerate_embeddings,
        "reprocess_connections": reprocess_connections,
    }
    try:
        if path.is_file():
            with open(path, "rb") as fh:  # check and plan here, before uploading anything
                zsource = ZipSource(fh, path.name)
                try:
                    plan = plan_import(a.store, zsource, user, options["strategy"], parse=False)
                finally:
                    zsource.close()
            if plan.report is not None and strategy is None:
                raise ImportConflictError(plan.report)
            key = save_upload(a.storage, user, str(path))
            job, plan = request_import(
                a.store, a.storage, user, zip_key=key, delete_source=True, **options
            )
        else:
            try:
                uuid.UUID(source)
            except ValueError:
                raise InvalidInputError(
                    f"No such file: {source}.",
                    "Give an export ZIP, or the id of a document folder in storage.",
                ) from None
            job, plan = request_import(a.store, a.storage, user, document_id=source, **options)
    except ImportConflictError as exc:
        a.close()
        if as_json:
            _emit(
                {
                    "error": {"type": "ImportConflict", "message": exc.message, "hint": exc.hint},
                    "conflict": exc.report,
                }
            )
        _print_report(exc.report)
        err.print(f"[bold red]Error:[/bold red] {exc.message}", highlight=False)
        raise typer.Exit(NEEDS_STRATEGY_EXIT) from None
    result: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status.value,
        "documents": len(plan.documents),
        "conflicts": len(plan.conflicts),
    }
    if wait:
        final = _wait(a, job.id, as_json)
        result["status"] = final.status.value
        if final.status.value == "completed":
            result["result"] = final.output_data
        else:
            result["error"] = final.error_message
    a.close()
    if as_json:
        _emit(result)
    elif result["status"] == "completed":
        r = result["result"]
        t = r["totals"]
        out.print(
            f"imported {r['imported']} documents, skipped {r['skipped']} "
            f"({r['changed_documents']} changed): chunks +{t.get('chunks_inserted', 0)} "
            f"~{t.get('chunks_updated', 0)} -{t.get('chunks_deleted', 0)}, highlights "
            f"+{t.get('highlights_added', 0)} kept {t.get('highlights_kept', 0)}, connections "
            f"+{t.get('connections_added', 0)} kept {t.get('connections_kept', 0)} dropped "
            f"{t.get('connections_dropped', 0)}",
            highlight=False,
        )
    elif result["status"] in ("pending", "processing"):
        out.print(f"import queued: job {job.id}, {result['documents']} documents", highlight=False)
    else:
        out.print(f"import {result['status']}: {result.get('error')}", highlight=False)
    if result["status"] not in ("completed", "pending", "processing"):
        raise typer.Exit(1)


# --- highlights -----------------------------------------------------------------------------


@highlights_app.command("list")
def highlights_list(
    document: Annotated[str | None, typer.Argument(help="Only this document.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="matched, needs_review or unmatched.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 1000,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """List highlights (of one document, or all)."""
    from rhizome.library.highlights import Highlights

    a = _app()
    items = Highlights(a.store).find(user, document, status=status, limit=limit)
    a.close()
    if as_json:
        _emit([h.to_dict() for h in items])
        return
    table = Table("id", "document", "offsets", "text", "note", "colour", "tags", "status")
    for h in items:
        text = " ".join(h.text.split())
        table.add_row(
            h.id,
            h.document_id[:8],
            f"{h.start}-{h.end}" if h.start is not None else "—",
            text if len(text) <= 60 else text[:59] + "…",
            h.note or "",
            h.color or "",
            ", ".join(h.tags),
            h.status,
        )
    out.print(table)


@highlights_app.command("add")
def highlights_add(
    document: Annotated[str, typer.Argument(help="The document.")],
    text: Annotated[
        str | None, typer.Option("--text", help="The passage (found in the markdown).")
    ] = None,
    start: Annotated[
        int | None, typer.Option("--start", min=0, help="Offset into content.md.")
    ] = None,
    end: Annotated[int | None, typer.Option("--end", min=1, help="End offset (exclusive).")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    color: Annotated[str | None, typer.Option("--color", help="yellow, green, #ffcc00, …")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Highlight a passage: by its text, or by its offsets into content.md."""
    from rhizome.library.highlights import Highlights
    from rhizome.library.repo import Library

    a = _app()
    doc = Library(a.store).get_document(document, user)
    try:
        content: str | None = a.storage.get(f"{doc.storage_folder}/content.md").decode("utf-8")
    except FileNotFoundError:
        content = None
    if text is None:
        if start is None or end is None or content is None:
            raise InvalidInputError(
                "Give the passage with --text, or its offsets with --start and --end.",
                "For example: rhizome highlights add DOC --text 'Call me Ishmael'",
            )
        text = content[start:end]
    h = Highlights(a.store).create(
        doc.id,
        user,
        text=text,
        start=start,
        end=end,
        content=content,
        note=note,
        color=color,
        tags=tags or [],
    )
    a.close()
    if as_json:
        _emit(h.to_dict())
    else:
        out.print(f"highlight {h.id} at {h.start}-{h.end} ({h.match_method})", highlight=False)


@highlights_app.command("delete")
def highlights_delete(
    ids: Annotated[list[str], typer.Argument(help="Highlight ids.")],
    user: UserOpt = "local",
    as_json: JsonOpt = False,
) -> None:
    """Delete highlights."""
    from rhizome.library.highlights import Highlights

    a = _app()
    repo = Highlights(a.store)
    deleted = [repo.delete(i, user).id for i in ids]
    a.close()
    if as_json:
        _emit({"deleted": deleted})
    else:
        out.print(f"deleted {len(deleted)} highlight(s)", highlight=False)


# --- admin scan-storage ---------------------------------------------------------------------


def scan_storage_cmd(user: UserOpt = "local", as_json: JsonOpt = False) -> None:
    """Compare document folders in storage with the database: healthy, missing_from_db
    (import it: rhizome import ID), missing_from_storage or out_of_sync (re-export it)."""
    from rhizome.library.portability import scan_storage

    a = _app()
    result = scan_storage(a.store, a.storage, user)
    a.close()
    if as_json:
        _emit({"action": "scan-storage", "result": result})
        return
    table = Table("document", "title", "status", "db chunks", "storage chunks", "fix")
    fixes = {
        "import": "rhizome import {id} --strategy merge_smart",
        "export": "rhizome export {id} --sync-storage",
    }
    for r in result["documents"]:
        table.add_row(
            r["document_id"],
            r["title"] or "",
            r["status"],
            "—" if r["db_chunks"] is None else str(r["db_chunks"]),
            "—" if r["storage_chunks"] is None else str(r["storage_chunks"]),
            fixes[r["action"]].format(id=r["document_id"]) if r["action"] else "",
        )
    out.print(table)
    out.print(", ".join(f"{k}: {v}" for k, v in result["counts"].items()), highlight=False)


def register(app: typer.Typer, admin_app: typer.Typer) -> None:
    """Add the portability commands to the ``rhizome`` command."""
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)
    app.add_typer(highlights_app, name="highlights")
    admin_app.command("scan-storage")(scan_storage_cmd)
