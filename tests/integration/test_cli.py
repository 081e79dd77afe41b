"""The ``rhizome`` command on both stores, including bad input: clear messages, exit code 2,
never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rhizome.app import BUILTIN_MIGRATIONS
from rhizome.jobs.store import JOBS_MIGRATIONS
from rhizome.jobs.store.queries import load_migrations
from tests.conftest import cli_env, run_cli


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(db_url, tmp_path / "storage", RHIZOME_LOG_LEVEL="WARNING")


def _ok(args: list[str], env: dict[str, str]) -> object:
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_db_upgrade_is_idempotent(env: dict[str, str], db_url: str) -> None:
    first = _ok(["db", "upgrade", "--json"], env)
    assert isinstance(first, dict)
    # the postgres fixture has migrated its database already; the SQLite file is new
    fresh = db_url.startswith("sqlite")
    every = [
        f"{component}/{m.version:04d}_{m.name}"
        for component, package in (JOBS_MIGRATIONS, *BUILTIN_MIGRATIONS)
        for m in load_migrations("sqlite", component, package)
    ]
    assert {"jobs", "library"} <= {name.split("/")[0] for name in every}
    assert first["applied"] == (every if fresh else [])
    again = _ok(["db", "upgrade", "--json"], env)
    assert isinstance(again, dict) and again["applied"] == []


def test_enqueue_list_show_and_run(env: dict[str, str]) -> None:
    job = _ok(["jobs", "enqueue", "noop", "--input", '{"stages": 2}', "--json"], env)
    assert isinstance(job, dict) and job["status"] == "pending"
    many = _ok(["jobs", "enqueue", "noop", "--count", "5", "--priority", "3", "--json"], env)
    assert isinstance(many, dict) and many["count"] == 5 and len(many["ids"]) == 5

    listed = _ok(["jobs", "list", "--status", "pending", "--type", "noop", "--json"], env)
    assert isinstance(listed, list) and len(listed) == 6

    result = _ok(["worker", "--burst", "--concurrency", "2", "--json"], env)
    assert isinstance(result, dict) and result["completed"] == 6

    assert _ok(["jobs", "list", "--status", "pending", "--json"], env) == []
    done = _ok(["jobs", "list", "--status", "completed", "--json"], env)
    assert isinstance(done, list) and len(done) == 6
    # --stage selects unfinished jobs only ("stuck in step-2"): these all completed
    assert _ok(["jobs", "list", "--stage", "step-2", "--json"], env) == []

    shown = _ok(["jobs", "show", job["id"], "--json"], env)
    assert isinstance(shown, dict)
    assert shown["job"]["id"] == job["id"] and shown["job"]["status"] == "completed"
    statuses = [e["to_status"] for e in shown["events"] if e["to_status"]]
    assert statuses == ["pending", "processing", "completed"]

    human = _ok(["jobs", "show", job["id"]], env)
    assert isinstance(human, str) and "timeline" in human and "completed" in human
    table = _ok(["jobs", "list"], env)
    assert isinstance(table, str) and "No-op" in table and job["id"][-8:] in table


def test_types_lists_noop(env: dict[str, str]) -> None:
    types = _ok(["jobs", "types", "--json"], env)
    assert isinstance(types, list)
    noop = next(t for t in types if t["name"] == "noop")
    assert noop["hidden"] is True and noop["label"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["jobs", "enqueue", "no_such_type"], "Unknown job type 'no_such_type'"),
        (["jobs", "enqueue", "noop", "--input", "{not json"], "--input is not valid JSON"),
        (["jobs", "enqueue", "noop", "--input", "[1, 2]"], "must be a JSON object"),
        (["jobs", "enqueue", "noop", "--input", '{"sleep_ms": -5}'], "sleep_ms"),
        (["jobs", "enqueue", "noop", "--input", '{"color": "red"}'], "color"),
        (["jobs", "show", "not-a-uuid"], "is not a job id"),
        (["jobs", "show", "00000000-0000-0000-0000-000000000000"], "No job with id"),
        (["jobs", "list", "--status", "sleeping"], "Unknown status 'sleeping'"),
        (["worker", "--types", "nope", "--burst"], "Unknown job type 'nope'"),
    ],
)
def test_bad_input_gives_a_clear_error(env: dict[str, str], args: list[str], expected: str) -> None:
    result = run_cli(args, env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "What to do:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_input_with_json_prints_a_json_error(env: dict[str, str]) -> None:
    result = run_cli(["jobs", "enqueue", "nope", "--json"], env)
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "UnknownJobTypeError" and "noop" in error["message"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:1/nowhere", "Cannot connect to PostgreSQL"),
        ("mysql://root@localhost/x", "Unsupported database URL"),
        ("sqlite:////proc/definitely/not/here.db", "SQLite database"),
    ],
)
def test_unreachable_database_gives_a_clear_error(tmp_path: Path, url: str, expected: str) -> None:
    env = cli_env(url, tmp_path / "storage")
    result = run_cli(["jobs", "list"], env, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_configuration_is_reported(tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path}/x.db", tmp_path / "s", RHIZOME_LEASE_SECONDS="abc")
    result = run_cli(["jobs", "list"], env)
    assert result.returncode == 2
    assert "RHIZOME_LEASE_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr


def test_control_commands(env: dict[str, str]) -> None:
    ids = _ok(["jobs", "enqueue", "noop", "--count", "4", "--json"], env)
    assert isinstance(ids, dict)
    first, second, *_ = ids["ids"]
    paused = _ok(["jobs", "pause", first, "--json"], env)
    assert isinstance(paused, dict) and paused["status"] == "paused"
    bulk = _ok(["jobs", "cancel", "--status", "pending", "--json"], env)
    assert isinstance(bulk, dict) and bulk["count"] == 3
    resumed = _ok(["jobs", "resume", first, "--restart", "--json"], env)
    assert isinstance(resumed, dict) and resumed["status"] == "pending"
    retried = _ok(["jobs", "retry", second, "--json"], env)
    assert isinstance(retried, dict) and retried["status"] == "pending"
    skipped = _ok(["jobs", "resume", "--all", "--json"], env)
    assert isinstance(skipped, dict) and skipped["count"] == 0 and len(skipped["skipped"]) == 4

    # deleting by filter needs --yes
    refused = run_cli(["jobs", "delete", "--status", "cancelled"], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    deleted = _ok(["jobs", "delete", "--status", "cancelled", "--yes", "--json"], env)
    assert isinstance(deleted, dict) and deleted["count"] == 2


def test_queue_and_admin_commands(env: dict[str, str]) -> None:
    _ok(["jobs", "enqueue", "noop", "--count", "2"], env)
    state = _ok(["queue", "pause", "--type", "noop", "--json"], env)
    assert isinstance(state, dict) and state["queue"]["noop"]["paused"] is True
    ran = _ok(["worker", "--burst", "--json"], env)
    assert isinstance(ran, dict) and ran["completed"] == 0
    status = _ok(["queue", "status", "--json"], env)
    assert isinstance(status, dict) and status["counts"] == {"pending": 2}
    _ok(["queue", "resume"], env)
    ran = _ok(["worker", "--burst", "--json"], env)
    assert isinstance(ran, dict) and ran["completed"] == 2

    cleared = _ok(["admin", "clear-completed", "--json"], env)
    assert isinstance(cleared, dict) and cleared["result"] == {"deleted": 2}
    _ok(["jobs", "enqueue", "noop", "--count", "3"], env)
    for action in ("stop-all", "clear-all", "reset"):
        refused = run_cli(["admin", action], env)
        assert refused.returncode == 2 and "--yes" in refused.stderr, action
    stopped = _ok(["admin", "stop-all", "--yes", "--json"], env)
    assert isinstance(stopped, dict) and stopped["result"] == {"stopped": 3}
    failed = _ok(["admin", "clear-failed", "--json"], env)
    assert isinstance(failed, dict) and failed["result"] == {"deleted": 3}
    orphans = _ok(["admin", "fix-orphans", "--json"], env)
    assert isinstance(orphans, dict) and orphans["result"]["removed_checkpoint_files"] == 0
    _ok(["jobs", "enqueue", "noop"], env)
    reset = _ok(["admin", "reset", "--yes", "--json"], env)
    assert isinstance(reset, dict) and reset["result"]["deleted_jobs"] == 1
    assert _ok(["jobs", "list", "--json"], env) == []
