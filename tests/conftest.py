"""Shared fixtures: real SQLite files and a real PostgreSQL database per test run.

PostgreSQL: ``RHIZOME_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``) is
the admin connection; each run creates its own database and drops it at the end. Without
a server, PostgreSQL tests skip locally and FAIL in CI (``CI=true``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rhizome.app import BUILTIN_MIGRATIONS
from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.store import SqlJobStore, open_store
from rhizome.storage import LocalStorage

pytest_plugins = ["tests.s3server"]

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
ADMIN_URL = os.environ.get("RHIZOME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The embedding model's ONNX export is made once per checkout and shared by every test and
# subprocess, not once per test's storage folder (the default cache sits beside storage).
os.environ.setdefault("RHIZOME_MODEL_CACHE_DIR", str(ROOT / ".rhizome" / "models"))

load_builtin_handlers()


def _with_db(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"rhizome_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but not reachable at {ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_pg(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE background_jobs, job_events, workers, queue_controls, documents, chunks,"
            " connections, highlights, connection_rejections, vault_settings, obsidian_notes,"
            " readwise_highlights, readwise_accounts, users, api_tokens, library_index_versions"
        )


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each store kind; empty tables at the start of every test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rhizome.db'}"
    url: str = request.getfixturevalue("pg_url")
    store = open_product_store(url)  # migrate once
    store.close()
    _truncate_pg(url)
    return url


def open_product_store(url: str) -> SqlJobStore:
    """A store with the library's tables too, as the app opens it."""
    return open_store(url, migrations=BUILTIN_MIGRATIONS)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlJobStore]:
    s = open_product_store(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def cli_env(db_url: str, storage_root: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "RHIZOME_DATABASE_URL": db_url,
            "RHIZOME_STORAGE_URL": str(storage_root),
            "RHIZOME_LOG_LEVEL": "INFO",
            "PYTHONFAULTHANDLER": "1",  # a crash of a process under test leaves its stack
            **extra,
        }
    )
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rhizome.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def start_worker(
    env: dict[str, str], *args: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "rhizome.cli", "worker", *args],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
