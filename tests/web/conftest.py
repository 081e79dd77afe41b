"""Fixtures for the web tests: an in-process client per store, a real ``rhizome serve``
subprocess (uvicorn, embedded worker) and a headless Chromium for the end-to-end tests."""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import rhizome.handlers
from rhizome.app import App
from rhizome.config import Settings
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from rhizome.web import create_app
from tests.conftest import cli_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
FAST_ENV = {
    "RHIZOME_HEARTBEAT_SECONDS": "1",
    "RHIZOME_LEASE_SECONDS": "5",
    "RHIZOME_POLL_SECONDS": "0.2",
    "RHIZOME_SHUTDOWN_GRACE_SECONDS": "5",
    "RHIZOME_RETRY_BASE_SECONDS": "1",
}


def load_all_handlers() -> None:
    """Register every built-in job type (whatever ``load_builtin_handlers`` covers yet)."""
    for info in pkgutil.iter_modules(rhizome.handlers.__path__):
        importlib.import_module(f"rhizome.handlers.{info.name}")


load_all_handlers()


def make_web(
    store: SqlJobStore,
    storage: LocalStorage,
    db_url: str,
    **kwargs: Any,
) -> tuple[App, FastAPI]:
    # the test client stands for a trusted proxy: X-Rhizome-User picks the user
    settings = Settings(database_url=db_url, storage_url=str(storage.root), trusted_proxy="*")
    app = App(settings, _store=store, _storage=storage)
    kwargs.setdefault("allowed_hosts", ["testserver"])
    return app, create_app(app, **kwargs)


@pytest.fixture
def web(store: SqlJobStore, storage: LocalStorage, db_url: str) -> tuple[App, FastAPI]:
    return make_web(store, storage, db_url, max_upload_bytes=200_000)


@pytest.fixture
def client(web: tuple[App, FastAPI]) -> TestClient:
    """Requests only: the lifespan (change feed, worker) does not run; SSE tests use a
    real server."""
    return TestClient(web[1])


# --- a real server process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def start_server(
    tmp_path: Path,
    db_url: str,
    *args: str,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    connect_host: str = "127.0.0.1",
    wait: bool = True,
    name: str = "server",
) -> LiveServer:
    port = free_port()
    full_env = cli_env(db_url, tmp_path / "storage", **FAST_ENV)
    full_env.pop("RHIZOME_API_TOKEN", None)
    full_env.update(env or {})
    log = tmp_path / f"{name}-{port}.log"
    out = open(log, "wb")  # noqa: SIM115  (the child keeps it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rhizome.cli", "serve", "--host", host, "--port", str(port), *args],
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    server = LiveServer(f"http://{connect_host}:{port}", proc, log, full_env)
    if not wait:
        return server
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"server did not become healthy:\n{server.output()}")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """``rhizome serve`` with an embedded worker on a fresh SQLite database."""
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'rhizome.db'}")
    try:
        yield server
    finally:
        server.stop()
        print("--- server log ---\n" + server.output()[-6000:])  # shown when a test fails


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (install Debian's chromium; .ci/run does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where a test saves its screenshots (kept under its temporary folder)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@pytest.fixture
def page(browser: Any, live_server: LiveServer, shots: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    context.add_cookies([{"name": "rhizome_hidden", "value": "1", "url": live_server.url}])
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(15_000)
    try:
        yield pg
    finally:
        pg.screenshot(path=str(shots / "zz-last.png"), full_page=True)
        context.close()
    assert not errors, f"JavaScript errors: {errors}"
