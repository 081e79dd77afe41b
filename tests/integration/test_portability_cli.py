"""The portability commands on both stores, run in-process (typer's runner): ``rhizome
export -o``, ``rhizome import`` (the conflict report and exit 3, then a strategy),
``rhizome highlights list|add|delete`` and ``rhizome admin scan-storage``, all with
``--json``."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rhizome.cli import app
from rhizome.cli_portability import NEEDS_STRATEGY_EXIT
from rhizome.errors import RhizomeError
from rhizome.jobs.store import SqlJobStore
from rhizome.library import Library
from rhizome.storage import LocalStorage
from tests.portability import snapshot, synthetic_library


@pytest.fixture
def cli(db_url: str, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RHIZOME_DATABASE_URL", db_url)
    monkeypatch.setenv("RHIZOME_STORAGE_URL", str(storage.root))
    monkeypatch.setenv("RHIZOME_EMBEDDER", "hash")
    monkeypatch.setenv("RHIZOME_LOG_LEVEL", "WARNING")
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


def test_export_import_and_scan_commands(
    cli: Any, store: SqlJobStore, storage: LocalStorage, tmp_path: Path
) -> None:
    ids = synthetic_library(store, storage, 2)
    before = snapshot(store, storage)
    target = tmp_path / "out" / "library.zip"
    target.parent.mkdir()
    result = cli("export", "--all", "-o", str(target), "--json")
    assert result["status"] == "completed" and result["documents"] == 2
    assert result["output"] == str(target)
    assert zipfile.ZipFile(target).testzip() is None
    cli("export", code=2)  # neither documents nor --all: an error with a hint

    conflict = cli("import", str(target), "--json", code=NEEDS_STRATEGY_EXIT)
    report = conflict["conflict"]
    assert report["conflicting"] == 2 and report["recommended"] == "merge_smart"
    assert storage.list("imports") == []  # nothing uploaded for a refused import
    done = cli("import", str(target), "--strategy", "merge_smart", "--wait", "--json")
    assert done["status"] == "completed", done
    assert done["result"]["changed_documents"] == 0
    assert storage.list("imports") == []  # the upload is removed once imported
    assert snapshot(store, storage) == before
    cli("import", str(target), "--strategy", "nonsense", code=2)

    Library(store).delete_document(ids[0], "local")
    scan = cli("admin", "scan-storage", "--json")["result"]
    assert scan["counts"]["missing_from_db"] == 1 and scan["counts"]["healthy"] == 1
    text = cli("admin", "scan-storage")
    assert f"rhizome import {ids[0]}" in text
    back = cli("import", ids[0], "--wait", "--json")
    assert back["status"] == "completed", back
    assert cli("admin", "scan-storage", "--json")["result"]["counts"]["healthy"] == 2


def test_highlights_commands(cli: Any, store: SqlJobStore, storage: LocalStorage) -> None:
    [doc_id] = synthetic_library(store, storage, 1)
    content = storage.get(f"documents/local/{doc_id}/content.md").decode()
    chunk = Library(store).list_chunks(doc_id, "local")[1]
    passage = chunk.text[10:40]
    added = cli(
        "highlights", "add", doc_id, "--text", passage, "--note", "why", "--color", "blue",
        "--tag", "a", "--tag", "b", "--json",
    )  # fmt: skip
    assert content[added["start"] : added["end"]] == passage
    assert added["chunk_ids"] == [chunk.id] and added["tags"] == ["a", "b"]
    assert added["match_method"] == "exact"
    by_offsets = cli("highlights", "add", doc_id, "--start", "2", "--end", "12", "--json")
    assert by_offsets["text"] == content[2:12]
    listed = cli("highlights", "list", doc_id, "--json")
    assert len(listed) == 3  # with the one the library came with
    assert "why" in cli("highlights", "list")
    cli("highlights", "add", doc_id, "--text", "not in the document at all", code=2)
    cli("highlights", "delete", added["id"], by_offsets["id"], "--json")
    assert len(cli("highlights", "list", doc_id, "--json")) == 1
    cli("highlights", "delete", added["id"], code=2)  # gone
