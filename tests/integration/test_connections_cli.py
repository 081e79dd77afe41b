"""``rhizome connections …`` on both stores: list with filters, validate / star / reject
and their undo, reset, show, and reprocess with the counts; bad ids give a clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rhizome.cli import app
from rhizome.jobs.store import SqlJobStore
from rhizome.library.connections import Curation
from rhizome.storage import LocalStorage
from tests.conftest import cli_env, run_cli
from tests.web import helpers as h


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(db_url, tmp_path / "storage", RHIZOME_LOG_LEVEL="WARNING")


@pytest.fixture
def library(store: SqlJobStore, tmp_path: Path) -> dict[str, Any]:
    storage = LocalStorage(tmp_path / "storage")
    trees, tc = h.document_with_chunks(store, storage, title="Trees")
    rivers, rc = h.document_with_chunks(
        store, storage, title="Rivers", texts=("Rivers carry water.", "Floods feed the plain.")
    )

    def found(i: int, j: int, scores: dict[str, float], combined: float) -> dict[str, Any]:
        return {
            "source_chunk_id": tc[i].id,
            "target_chunk_id": rc[j].id,
            "source_document_id": trees.id,
            "target_document_id": rivers.id,
            "source_text": tc[i].text,
            "target_text": rc[j].text,
            "scores": scores,
            "combined": combined,
            "reason": "because",
        }

    Curation(store).save_detection(
        trees.id,
        "local",
        [
            found(0, 0, {"semantic": 0.9}, 0.9),
            found(1, 1, {"semantic": 0.6, "contradiction": 0.5}, 0.54),
            found(1, 0, {"thematic": 0.7}, 0.7),
        ],
    )
    ids = {c.combined_score: c.id for c in Curation(store).search("local").items}
    return {"trees": trees.id, "ids": ids}


def _run(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(app, ["connections", *args, "--json"], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_list_decide_and_undo(env: dict[str, str], library: dict[str, Any]) -> None:
    ids = library["ids"]
    listed = _run(env, "list")
    assert [c["combined_score"] for c in listed["connections"]] == [0.9, 0.7, 0.54]
    assert listed["connections"][0]["source_text"] == "First chunk about trees."
    assert _run(env, "validate", ids[0.9])["connections"][0]["states"] == ["validated"]
    assert _run(env, "star", ids[0.7])["connections"][0]["states"] == ["starred"]
    assert _run(env, "reject", ids[0.54])["connections"][0]["states"] == ["rejected"]
    for flag, expected in (("--validated", [0.9]), ("--starred", [0.7]), ("--rejected", [0.54])):
        got = _run(env, "list", flag)["connections"]
        assert [c["combined_score"] for c in got] == expected, flag
    assert [c["combined_score"] for c in _run(env, "list")["connections"]] == [0.9, 0.7]
    thematic = _run(env, "list", "--engine", "thematic")["connections"]
    assert [c["combined_score"] for c in thematic] == [0.7]
    assert len(_run(env, "list", library["trees"], "--min-score", "0.8")["connections"]) == 1
    assert _run(env, "reject", "--undo", ids[0.54])["connections"][0]["states"] == []
    assert _run(env, "star", "--undo", ids[0.7])["connections"][0]["states"] == []
    assert _run(env, "validate", "--undo", ids[0.9])["connections"][0]["states"] == []
    _run(env, "star", ids[0.9], ids[0.7])
    reset = _run(env, "reset", ids[0.9], ids[0.7])["connections"]
    assert [c["states"] for c in reset] == [[], []]
    shown = _run(env, "show", ids[0.54])
    assert shown["engine_scores"] == {"semantic": 0.6, "contradiction": 0.5}

    text = CliRunner().invoke(app, ["connections", "list"], env=env).stdout
    assert "0.90" in text and "sem 0.90 con — thm —" in text and "3 visible" in text


def test_reprocess_prints_the_counts(env: dict[str, str], library: dict[str, Any]) -> None:
    _run(env, "validate", library["ids"][0.9])
    result = CliRunner().invoke(
        app, ["connections", "reprocess", library["trees"], "--mode", "all", "--wait"], env=env
    )
    assert result.exit_code == 0, (result.output, result.exception)
    # no embeddings: the engines find nothing; the validated connection stays
    assert "all: 1 document(s) · before 3 → after 1 · added 0, kept 1, removed 2" in result.stdout
    assert "backup: documents/local/" in result.stdout
    job = _run(env, "reprocess", "--mode", "add_new", "--wait")
    assert job["status"] == "completed" and job["output_data"]["backups"] == []


def test_bad_ids_and_options_give_clear_errors(env: dict[str, str]) -> None:
    result = run_cli(["connections", "validate", "nope"], env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is not a connection id" in result.stderr and "What to do:" in result.stderr
    result = run_cli(["connections", "reprocess", "--mode", "everything"], env)
    assert result.returncode == 2 and "Unknown mode" in result.stderr
