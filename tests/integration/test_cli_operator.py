"""The command line speaks the UI's vocabulary: every status filter value (stored and
derived) selects what the store does, ids are accepted by a unique prefix of 8+
characters, `jobs list` has a title column and human labels, `jobs show` fits a
terminal, `jobs logs` prints a job's log, deleting says "deleted", and --help shows plain
metavars."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rhizome.jobs.model import STATUS_FILTERS, JobFilter, NewJob
from rhizome.jobs.store import SqlJobStore
from tests.conftest import cli_env, run_cli
from tests.web import helpers as h

# Every status filter in one process (a CLI start costs a second or two).
_EVERY_STATUS = """
import json, sys
from typer.testing import CliRunner
from rhizome.cli import app
out = {}
for value in sys.argv[1:]:
    result = CliRunner().invoke(app, ["jobs", "list", "--status", value, "--json"])
    assert result.exit_code == 0, (value, result.output)
    out[value] = sorted(j["id"] for j in json.loads(result.stdout))
print(json.dumps(out))
"""


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(db_url, tmp_path / "storage", RHIZOME_LOG_LEVEL="WARNING")


def _every_state(store: SqlJobStore) -> dict[str, str]:
    """One job in each shown status."""
    jobs = {
        "pending": h.new(store),
        "processing": h.running(store, stage="step-1", percent=30),
        "pausing": h.running(store),
        "cancelling": h.running(store),
        "paused": h.paused(store),
        "retrying": h.failed(store, retry_in=600),
        "failed": h.failed(store),
        "cancelled": h.cancelled(store),
        "completed": h.finished(store),
    }
    store.request_pause(jobs["pausing"].id)
    store.request_cancel(jobs["cancelling"].id)
    return {k: v.id for k, v in jobs.items()}


def test_every_status_filter_and_the_labels(store: SqlJobStore, env: dict[str, str]) -> None:
    ids = _every_state(store)
    result = subprocess.run(
        [sys.executable, "-c", _EVERY_STATUS, *STATUS_FILTERS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    for value in STATUS_FILTERS:
        expected = sorted(j.id for j in store.search_jobs(JobFilter(statuses=(value,))))
        assert listed[value] == expected and expected, value
    assert listed["retrying"] == [ids["retrying"]]
    assert set(listed["processing"]) == {ids["processing"], ids["pausing"], ids["cancelling"]}

    table = run_cli(["jobs", "list", "--limit", "100"], env)
    assert table.returncode == 0, table.stderr
    head = table.stdout.splitlines()[0].split()
    assert head[:3] == ["id", "title", "type"]
    for shown in ("Retrying", "Pausing…", "Cancelling…", "Paused", "Completed", "No-op"):
        assert shown in table.stdout, shown
    assert ids["retrying"][-8:] in table.stdout and ids["retrying"] not in table.stdout
    assert "Step 1" in table.stdout  # the stage's label, not step-1


def test_prefixes_show_logs_delete_and_help(store: SqlJobStore, env: dict[str, str]) -> None:
    [job] = store.enqueue([NewJob("noop", {"stages": 1, "units": 2, "log_units": True})])
    run = run_cli(["worker", "--burst"], {**env, "RHIZOME_LOG_LEVEL": "INFO"})
    assert run.returncode == 0, run.stderr
    prefix = job.short_id  # the short id jobs list shows

    shown = run_cli(["jobs", "show", prefix], env)
    assert shown.returncode == 0, shown.stderr
    assert job.id in shown.stdout and "Step 1 started" in shown.stdout
    assert "run time" in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) < 200  # no padded table

    logs = run_cli(["jobs", "logs", prefix, "--follow"], env)  # finished: follow ends
    assert logs.returncode == 0, logs.stderr
    assert "Step 1 of 1: unit 2 of 2 done" in logs.stdout

    deleted = run_cli(["jobs", "delete", prefix], env)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith(f"deleted job {job.id}") and "pending" not in deleted.stdout

    help_text = run_cli(["jobs", "list", "--help"], {**env, "COLUMNS": "120"}).stdout
    assert "<bool>" not in help_text and "<list[str]>" not in help_text
    assert "--status" in help_text and "TEXT" in help_text
