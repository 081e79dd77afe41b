"""Who may call the server: token on non-loopback binds, same-origin writes, Host checks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rhizome.app import App
from rhizome.config import Settings
from rhizome.errors import ConfigError
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from rhizome.web import create_app
from rhizome.web.security import LoginThrottle, check_bind, is_loopback
from rhizome.web.server import run
from tests.web.conftest import start_server

TOKEN = "s3cret-token-for-tests"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rhizome.db'}"


def token_app(tmp_path: Path, sqlite_url: str, **kwargs: Any) -> FastAPI:
    settings = Settings(
        database_url=sqlite_url, storage_url=str(tmp_path / "storage"), api_token=TOKEN
    )
    return create_app(App(settings), bind_host="0.0.0.0", **kwargs)


def write_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every state-changing operation of the API (from its OpenAPI schema) and the page
    routes that change something (logout)."""
    out = [("POST", "/logout")]
    for path, ops in app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)
        out.extend((m.upper(), concrete) for m in ops if m.upper() in WRITES)
    return out


def test_loopback_detection_and_bind_check() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.1.2.3", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.4", "example.org"):
        assert not is_loopback(host), host
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ConfigError) as info:
        check_bind("0.0.0.0", None)
    assert "RHIZOME_API_TOKEN" in info.value.hint


def test_run_refuses_a_public_bind_without_token(tmp_path: Path, sqlite_url: str) -> None:
    app = App(Settings(database_url=sqlite_url, storage_url=str(tmp_path / "s")))
    with pytest.raises(ConfigError):
        run(app, host="0.0.0.0", port=1, worker=False)


def test_every_write_needs_the_token(tmp_path: Path, sqlite_url: str) -> None:
    app = token_app(tmp_path, sqlite_url, login_throttle=LoginThrottle(burst=10_000))
    routes = write_routes(app)
    assert len(routes) >= 20
    client = TestClient(app, base_url="http://192.168.1.10:8000")
    for method, path in routes:
        r = client.request(method, path, json={})
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"]["type"] == "Unauthorized"
        r = client.request(method, path, json={}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, (method, path)
    # reads need it too (the library is private), except the health check
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/events").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200
    page = client.get("/jobs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")

    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/api/jobs", json={"type": "noop"}, headers=auth)
    assert r.status_code == 201
    assert client.get("/api/jobs?include_hidden=1", headers=auth).json()["total"] == 1
    # a bearer client may even send a foreign Origin: the token is the proof
    r = client.post(
        "/api/jobs", json={"type": "noop"}, headers={**auth, "Origin": "https://evil.example"}
    )
    assert r.status_code == 201


def test_login_cookie_and_its_same_origin_rule(tmp_path: Path, sqlite_url: str) -> None:
    app = token_app(tmp_path, sqlite_url)
    client = TestClient(app, base_url="http://rhizome.lan:8000")
    same = {"Origin": "http://rhizome.lan:8000"}
    r = client.post("/login", data={"token": "nope", "next": "/jobs"}, headers=same)
    assert r.status_code == 401 and "not the token" in r.text
    r = client.post(
        "/login",
        data={"token": TOKEN, "next": "//evil.example"},
        headers=same,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    assert TOKEN not in r.headers["set-cookie"]
    assert client.get("/jobs").status_code == 200  # the cookie is enough to read
    r = client.post("/api/jobs", json={"type": "noop"}, headers=same)
    assert r.status_code == 201
    r = client.post("/api/jobs", json={"type": "noop"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/jobs", json={"type": "noop"})  # cookie, but no browser proof
    assert r.status_code == 403
    r = client.post("/api/jobs", json={"type": "noop"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201
    client.post("/logout", headers=same)
    assert client.get("/api/jobs").status_code == 401


def test_loopback_without_token_checks_origin_and_host(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    settings = Settings(database_url=db_url, storage_url=str(storage.root))
    app = create_app(App(settings, _store=store, _storage=storage))
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    assert client.post("/api/jobs", json={"type": "noop"}).status_code == 201  # CLI-like
    ok = {"Origin": "http://127.0.0.1:8000"}
    assert client.post("/api/jobs", json={"type": "noop"}, headers=ok).status_code == 201
    for bad in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "https://evil.example/page"},
    ):
        r = client.post("/api/jobs", json={"type": "noop"}, headers=bad)
        assert r.status_code == 403, bad
        assert r.json()["error"]["type"] == "CrossOriginRefused"
        assert client.delete("/api/jobs/x", headers=bad).status_code == 403
    # DNS rebinding: a foreign name resolving to 127.0.0.1 is not this server
    rebound = TestClient(app, base_url="http://evil.example:8000")
    assert rebound.get("/api/jobs").status_code == 421
    assert TestClient(app, base_url="http://localhost:8000").get("/api/jobs").status_code == 200
    assert TestClient(app, base_url="http://[::1]:8000").get("/api/jobs").status_code == 200


def test_serve_on_all_interfaces(tmp_path: Path, sqlite_url: str) -> None:
    """A real `rhizome serve --host 0.0.0.0`: refused without a token; with one, every
    write without it is refused."""
    server = start_server(tmp_path, sqlite_url, host="0.0.0.0", wait=False, name="refused")
    assert server.proc.wait(30) != 0
    assert "RHIZOME_API_TOKEN" in server.output()

    server = start_server(
        tmp_path, sqlite_url, "--no-worker", host="0.0.0.0", env={"RHIZOME_API_TOKEN": TOKEN}
    )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.post("/api/jobs", json={"type": "noop"}).status_code == 401
            assert c.post("/api/admin/nuclear-reset", json={"confirm": True}).status_code == 401
            assert c.delete("/api/documents/x").status_code == 401
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert c.post("/api/jobs", json={"type": "noop"}, headers=auth).status_code == 201
    finally:
        server.stop()
