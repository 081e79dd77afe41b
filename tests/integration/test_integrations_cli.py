"""The integrations' commands on both stores, run in-process (typer's runner):
``rhizome obsidian config|export|sync|status`` (a conflict and ``--resolve``),
``rhizome readwise import FILE`` and ``rhizome highlights review [--accept|--reject]``,
with ``--json`` and ``--wait``; bad input exits 2 with a hint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rhizome.cli import app
from rhizome.errors import RhizomeError
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.library.rechunk import swap_content
from rhizome.storage import LocalStorage
from tests.conftest import CORPUS
from tests.integrations import ready_document

TEXT = (
    "# Sea notes\n\nThe harbour master counts the ships at dawn. Gulls follow the fishing "
    "boats back in.\n\nSpring tides flood the lower quay twice a month. The old pier creaks "
    "in every winter storm.\n"
)


@pytest.fixture
def cli(db_url: str, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RHIZOME_DATABASE_URL", db_url)
    monkeypatch.setenv("RHIZOME_STORAGE_URL", str(storage.root))
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")
    monkeypatch.setenv("RHIZOME_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("RHIZOME_POLL_SECONDS", "0.05")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args), catch_exceptions=True)
        exit_code = result.exit_code
        if isinstance(result.exception, RhizomeError):
            exit_code = 2  # what `rhizome` (cli.main) exits with, after message and hint
            assert result.exception.hint, result.exception
        assert exit_code == code, (args, result.output, result.exception)
        text = result.stdout
        return json.loads(text) if "--json" in args and text.strip() else text

    return run


def test_obsidian_commands(
    cli: Any, store: SqlJobStore, storage: LocalStorage, tmp_path: Path
) -> None:
    doc = ready_document(store, storage, "Sea notes", TEXT)
    vault = tmp_path / "vault"
    (vault / ".obsidian").mkdir(parents=True)
    cli("obsidian", "export", "--all", code=2)  # no vault yet
    cli("obsidian", "config", "--vault", "relative/dir", code=2)
    cli("obsidian", "config", "--vault", str(vault), "--subfolder", "../out", code=2)
    shown = cli("obsidian", "config", "--vault", str(vault), "--no-connections", "--json")
    assert shown["settings"]["export_connections"] is False
    assert shown["settings"]["subfolder"] == "Rhizome" and shown["vault_visible_here"]
    cli("obsidian", "export", code=2)  # neither documents nor --all

    queued = cli("obsidian", "export", doc, "--json")
    assert queued["status"] == "pending"
    done = cli("obsidian", "export", "--all", "--wait", "--json")
    assert done["status"] == "completed"  # the queued one may have run first in this worker
    assert done["output"]["counts"] in ({"written": 1}, {"unchanged": 1})
    folder = vault / "Rhizome" / "Documents" / "Sea notes"
    assert not (folder / "Sea notes - Connections.md").exists()
    note = folder / "Sea notes.md"
    note.write_text(note.read_text().replace("at dawn", "at first light"))
    swap_content(store, storage, doc, "local", TEXT.replace("twice a month", "fortnightly"))

    synced = cli("obsidian", "sync", "--wait", "--json")
    assert synced["output"]["counts"] == {"conflict": 1}
    text = cli("obsidian", "config")
    assert f"rhizome obsidian sync --resolve {doc} keep-vault|keep-library" in text
    status = cli("obsidian", "status", "--json")
    assert [s["status"] for s in status] == ["conflict"]
    cli("obsidian", "sync", "--resolve", doc, "keep-both", code=2)
    resolved = cli("obsidian", "sync", "--resolve", doc, "keep-library", "--wait", "--json")
    assert resolved["output"]["counts"] == {"resolved": 1}
    assert "fortnightly" in note.read_text() and "first light" not in note.read_text()
    table = cli("obsidian", "sync", "--wait")
    assert "sync: 1 unchanged" in table


def test_readwise_and_review_commands(
    cli: Any, store: SqlJobStore, storage: LocalStorage, tmp_path: Path
) -> None:
    doc = ready_document(store, storage, "Sea notes", TEXT)
    cli("readwise", "import", code=2)
    cli("readwise", "import", str(tmp_path / "missing.csv"), code=2)
    export = tmp_path / "export.csv"
    export.write_text(
        "Highlight,Book Title,Book Author,Location Type,Location\n"
        '"The harbour master counts the ships at dawn.",Sea Notes,,order,1\n'
        '"Spring tides often flood the quay at the lower end twice in a month.",'
        "Sea Notes,,order,2\n"
        '"The old pier groans loudly in each winter storm.",Sea Notes,,order,3\n'
    )
    result = cli("readwise", "import", str(export), "--wait", "--json")
    assert result["output"]["counts"]["matched"] == 1
    assert result["output"]["counts"]["needs_review"] == 2
    table = cli("readwise", "import", str(CORPUS / "readwise" / "readwise-export.csv"), "--wait")
    assert "A Book Not Imported" in table and "not placed" in table

    pending = cli("highlights", "review", "--json")
    assert len(pending) == 2 and all(p["document_id"] == doc for p in pending)
    listed = cli("highlights", "review")
    assert "rhizome highlights review --accept ID" in listed
    first, second = (p["id"] for p in pending)
    decided = cli("highlights", "review", "--accept", first, "--reject", second, "--json")
    assert decided["accepted"] == [first] and decided["rejected"] == [second]
    assert cli("highlights", "review") == "nothing to review\n"
    cli("highlights", "review", "--accept", "not-an-id", code=2)
    statuses = {h["id"]: h["status"] for h in cli("highlights", "list", doc, "--json")}
    assert (statuses[first], statuses[second]) == ("matched", "unmatched")
    assert Library(store).get_document(doc, "local").status == "ready"
