"""Job types from the user's own code: the README's ``count.py`` run through ``--app``
(worker, enqueue, serve + web UI), ``RHIZOME_APPS``, an installed entry point, the README's
harness example, and clear errors for modules that cannot be imported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rhizome.jobs.model import JobStatus
from rhizome.jobs.store import SqlJobStore
from tests.conftest import ROOT, cli_env
from tests.helpers import wait_for, wait_status
from tests.web.conftest import start_server

RHIZOME = Path(sys.executable).parent / "rhizome"
"""The installed console script, as a user runs it (its sys.path does not hold the cwd)."""


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {re.escape(name)} -->\n```python\n(.*?)```\n<!-- /", text, re.S)
    assert match, f"README has no {name} block"
    return match.group(1)


def readme_test_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(from rhizome\.jobs\.testing import .*?)```", text, re.S)
    assert match, "README has no harness example"
    return match.group(1)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "myapp"
    folder.mkdir()
    (folder / "count.py").write_text(readme_block("count.py"))
    return folder


def _cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RHIZOME), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_readme_example_runs_under_the_cli(
    store: SqlJobStore, db_url: str, tmp_path: Path, app_dir: Path
) -> None:
    env = cli_env(db_url, tmp_path / "storage", RHIZOME_HEARTBEAT_SECONDS="0.5")
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [str(RHIZOME), "worker", "--app", "count"],
            env=env,
            cwd=app_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: any("count" in w.job_types for w in store.list_workers()),
            timeout=60,
            what=f"the worker to register count:\n{log.read_text(errors='replace')}",
        )
        # another folder, no --app: the live worker that runs `count` is enough
        done = _cli(["jobs", "enqueue", "count", "--input", '{"n": 100}', "--json"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        job_id = json.loads(done.stdout)["id"]
        job = wait_status(store, job_id, JobStatus.COMPLETED, timeout=60)
        assert job.output_data == {"counted": 100}
        assert job.progress["percent"] == 100 or job.progress["stage"] == "save"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert "loaded app count" in log.read_text()


def test_rhizome_apps_setting_and_bad_modules(
    store: SqlJobStore, db_url: str, tmp_path: Path, app_dir: Path
) -> None:
    env = cli_env(db_url, tmp_path / "storage", RHIZOME_APPS="count")
    made = _cli(["jobs", "enqueue", "count", "--input", '{"n": 3, "sleep_ms": 0}'], env, app_dir)
    assert made.returncode == 0, made.stderr
    ran = _cli(["worker", "--burst", "--json"], env, app_dir)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["completed"] == 1

    # bad input is refused at once when the type is known here
    bad = _cli(["jobs", "enqueue", "count", "--input", '{"n": "many"}'], env, app_dir)
    assert bad.returncode == 2 and "n:" in bad.stderr

    plain = cli_env(db_url, tmp_path / "storage")
    unknown = _cli(["jobs", "enqueue", "count", "--input", "{}"], plain, tmp_path)
    assert unknown.returncode == 2
    assert "Unknown job type 'count'" in unknown.stderr and "--app" in unknown.stderr

    missing = _cli(["worker", "--burst", "--app", "no_such_module"], plain, tmp_path)
    assert missing.returncode == 2
    assert "Cannot import the app module 'no_such_module'" in missing.stderr
    assert "What to do" in missing.stderr and "Traceback" not in missing.stderr

    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    broken = _cli(["worker", "--burst", "--app", "broken"], plain, tmp_path)
    assert broken.returncode == 2
    assert "RuntimeError on import: boom at import" in broken.stderr

    (tmp_path / "needs.py").write_text("import not_installed_anywhere\n")
    needs = _cli(["worker", "--burst", "--app", "needs"], plain, tmp_path)
    assert needs.returncode == 2 and "not_installed_anywhere" in needs.stderr


def test_installed_entry_point_registers_job_types(
    store: SqlJobStore, db_url: str, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / "plugged_jobs").mkdir(parents=True)
    (site / "plugged_jobs" / "__init__.py").write_text(
        "from rhizome.jobs import Stage, registry\n\n"
        "@registry.job_type('plugged', label='Plugged in', icon='plug',\n"
        "                   stages=[Stage('only', 'Only step', 0, 100)])\n"
        "def plugged(ctx, data):\n"
        "    return {'answer': ctx.run_stage('only', lambda: 42)}\n"
    )
    info = site / "plugged_jobs-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugged-jobs\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[rhizome.job_types]\nplugged = plugged_jobs\n")
    env = cli_env(db_url, tmp_path / "storage")
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    types = _cli(["jobs", "types", "--json"], env, tmp_path)
    assert types.returncode == 0, types.stderr
    assert "plugged" in types.stdout
    made = _cli(["jobs", "enqueue", "plugged", "--json"], env, tmp_path)
    assert made.returncode == 0, made.stderr
    ran = _cli(["worker", "--burst"], env, tmp_path)
    assert ran.returncode == 0, ran.stderr
    job = store.get(json.loads(made.stdout)["id"])
    assert job.status is JobStatus.COMPLETED and job.output_data == {"answer": 42}


def test_readme_harness_example_passes(tmp_path: Path, app_dir: Path) -> None:
    test_file = app_dir / "test_count.py"
    test_file.write_text(readme_test_example())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(app_dir), str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


def test_serve_with_app_shows_the_job_with_label_icon_and_stages(
    tmp_path: Path, app_dir: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'rhizome.db'}"
    (tmp_path / "count.py").write_text((app_dir / "count.py").read_text())
    server = start_server(tmp_path, db_url, "--app", "count")
    try:
        with server.client() as http:
            made = http.post("/api/jobs", json={"type": "count", "input": {"n": 5}})
            assert made.status_code in (200, 201), made.text
            job_id = made.json()["jobs"][0]["id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                job = http.get(f"/api/jobs/{job_id}").json()["job"]
                if job["status"] == "completed":
                    break
                time.sleep(0.2)
            assert job["status"] == "completed", job
            types = {t["name"]: t for t in http.get("/api/job-types").json()["job_types"]}
            assert types["count"]["label"] == "Counting" and types["count"]["icon"] == "hash"
            assert [s["name"] for s in types["count"]["stages"]] == ["count", "save"]
            page = http.get(f"/jobs/{job_id}").text
            assert "Counting" in page and "Saving" in page
            listing = http.get("/jobs").text
            assert "Counting" in listing
    finally:
        server.stop()
