"""Users, roles and tokens over HTTP, on both stores: tokens stored hashed, revoking works,
the admin role guards queue and admin actions, wrong tokens are throttled per client,
X-Rhizome-User counts only from a trusted proxy, the Host header is parsed strictly, and
the laptop install (loopback, no token, no users) stays a one-person admin setup."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rhizome.app import App
from rhizome.auth import Users, session_value
from rhizome.config import Settings
from rhizome.errors import ConfigError, InvalidInputError, NotFoundError
from rhizome.jobs.store import SqlJobStore
from rhizome.storage import LocalStorage
from rhizome.web import create_app
from rhizome.web.security import SESSION_COOKIE, LoginThrottle, TrustedProxies, parse_host
from tests.conftest import cli_env, run_cli

MASTER = "master-token-for-tests"
ADMIN_ROUTES = [
    ("POST", "/api/queue/pause", {}),
    ("POST", "/api/queue/resume", {}),
    ("POST", "/api/admin/clear-completed", None),
    ("POST", "/api/admin/clear-failed", None),
    ("POST", "/api/admin/stop-all", {"confirm": True}),
    ("POST", "/api/admin/clear-all", {"confirm": True}),
    ("POST", "/api/admin/nuclear-reset", {"confirm": True}),
    ("POST", "/api/admin/fix-orphans", None),
]


def web_app(
    store: SqlJobStore, storage: LocalStorage, db_url: str, **settings: Any
) -> tuple[App, FastAPI]:
    throttle = settings.pop("throttle", None)
    app = App(
        Settings(database_url=db_url, storage_url=str(storage.root), **settings),
        _store=store,
        _storage=storage,
    )
    return app, create_app(app, allowed_hosts=["testserver"], login_throttle=throttle)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def all_text(store: SqlJobStore, db_url: str) -> str:
    """Every value of the users and api_tokens tables, as one string."""
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            rows = [*conn.execute("SELECT * FROM users"), *conn.execute("SELECT * FROM api_tokens")]
    else:
        with psycopg.connect(db_url) as conn:
            rows = [
                *conn.execute("SELECT * FROM users").fetchall(),
                *conn.execute("SELECT * FROM api_tokens").fetchall(),
            ]
    return repr(rows)


# --- the users table -----------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_revoking_works(store: SqlJobStore, db_url: str) -> None:
    users = Users(store)
    assert users.count() == 0
    alice = users.add("alice", "user", "laptop")
    assert alice.token.startswith("rhz_") and len(alice.token) > 40
    second = users.issue("alice")
    admin = users.add("root", "admin")
    stored = all_text(store, db_url)
    for issued in (alice, second, admin):
        assert issued.token not in stored
        assert session_value(issued.token) not in stored  # nor the login cookie
        assert hashlib.sha256(issued.token.encode()).hexdigest() in stored
    who = users.authenticate(alice.token)
    assert who is not None and (who.user, who.role, who.is_admin) == ("alice", "user", False)
    assert users.authenticate(admin.token).is_admin  # type: ignore[union-attr]
    assert users.authenticate(alice.token[:-1] + "x") is None
    assert users.by_session(session_value(second.token)).user == "alice"  # type: ignore[union-attr]

    assert users.revoke("alice", alice.token_id) == [alice.token_id]
    assert users.authenticate(alice.token) is None
    assert users.authenticate(second.token) is not None
    assert users.revoke("alice") == [second.token_id]
    assert users.authenticate(second.token) is None
    assert users.by_session(session_value(second.token)) is None

    listed = {u["user"]: u for u in users.all()}
    assert listed["alice"]["active_tokens"] == 0 and listed["root"]["role"] == "admin"
    assert [t["revoked_at"] is not None for t in users.tokens("alice")] == [True, True]
    users.set_role("alice", "admin")
    assert users.role_of("alice") == "admin"
    with pytest.raises(InvalidInputError):
        users.add("alice")
    for bad in ("", "a/b", "x" * 65, "bad user"):
        with pytest.raises(InvalidInputError):
            users.add(bad)
    with pytest.raises(InvalidInputError):
        users.add("carol", "superuser")
    with pytest.raises(NotFoundError):
        users.issue("nobody")
    with pytest.raises(NotFoundError):
        users.revoke("root", "tok_nope")


def test_users_cli(tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path / 'rhizome.db'}", tmp_path / "storage")
    r = run_cli(["users", "add", "alice", "--json"], env)
    assert r.returncode == 0, r.stderr
    issued = json.loads(r.stdout)
    assert issued["user"] == "alice" and issued["role"] == "user"
    r = run_cli(["users", "token", "alice", "--name", "phone", "--json"], env)
    token = json.loads(r.stdout)["token"]
    assert token != issued["token"]
    r = run_cli(["users", "list", "--tokens", "--json"], env)
    [row] = json.loads(r.stdout)["users"]
    assert row["active_tokens"] == 2 and [t["name"] for t in row["tokens"]] == [None, "phone"]
    r = run_cli(["users", "revoke", "alice", "--json"], env)
    assert len(json.loads(r.stdout)["revoked"]) == 2
    r = run_cli(["users", "add", "alice"], env)
    assert r.returncode == 2 and "already a user" in r.stderr
    r = run_cli(["users", "role", "alice", "admin"], env)
    assert r.returncode == 0 and "admin" in r.stdout


# --- who a request is ------------------------------------------------------------------------


def test_the_laptop_install_is_the_local_admin(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    _, web = web_app(store, storage, db_url)
    client = TestClient(web)
    job = client.post("/api/jobs", json={"type": "noop"}).json()["jobs"][0]
    assert job["user_id"] == "local"
    for method, path, body in ADMIN_ROUTES:
        r = client.request(method, path, json=body)
        assert r.status_code == 200, (path, r.text)


def test_with_users_every_request_needs_a_token_and_roles_count(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    users = Users(store)
    alice = users.add("alice", "user")
    root = users.add("root", "admin")
    app, web = web_app(store, storage, db_url)
    client = TestClient(web)
    # users exist: even on loopback without RHIZOME_API_TOKEN, a token is needed
    r = client.get("/api/jobs")
    assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
    assert client.get("/jobs", follow_redirects=False).status_code == 303
    assert client.get("/healthz").status_code == 200

    mine = client.post("/api/jobs", json={"type": "noop"}, headers=bearer(alice.token))
    assert mine.status_code == 201 and mine.json()["jobs"][0]["user_id"] == "alice"
    theirs = client.get("/api/jobs?include_hidden=1", headers=bearer(root.token)).json()
    assert theirs["total"] == 0  # root is another user: it sees its own jobs
    for method, path, body in ADMIN_ROUTES:
        r = client.request(method, path, json=body, headers=bearer(alice.token))
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["type"] == "ForbiddenError"
        assert "admin role" in r.json()["error"]["message"]
    assert app.store.queue_controls().get("*", {}).get("paused") in (None, False)
    for method, path, body in ADMIN_ROUTES:
        r = client.request(method, path, json=body, headers=bearer(root.token))
        assert r.status_code == 200, (path, r.text)
    # a user's own jobs stay theirs to control
    job_id = mine.json()["jobs"][0]["id"]
    r = client.post(f"/api/jobs/{job_id}/cancel", headers=bearer(alice.token))
    assert r.status_code == 200

    # the login page takes a user's token; the cookie then stands for that user
    form = {"token": alice.token, "next": "/jobs"}
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303 and alice.token not in r.headers["set-cookie"]
    assert client.cookies.get(SESSION_COOKIE) == session_value(alice.token)
    assert client.get("/api/jobs?include_hidden=1").json()["total"] == 1
    r = client.post("/api/queue/pause", json={}, headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 403
    client.cookies.clear()

    # revoked: refused (at once in this process; other processes within seconds)
    users.revoke("alice")
    fresh = TestClient(web_app(store, storage, db_url)[1])
    assert fresh.get("/api/jobs", headers=bearer(alice.token)).status_code == 401
    web.state.web.security.authenticator.forget()
    assert client.get("/api/jobs", headers=bearer(alice.token)).status_code == 401
    assert client.post("/login", data=form).status_code == 401


def test_the_master_token_is_the_local_admin(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    Users(store).add("alice")
    _, web = web_app(store, storage, db_url, api_token=MASTER)
    client = TestClient(web)
    r = client.post("/api/queue/pause", json={}, headers=bearer(MASTER))
    assert r.status_code == 200
    r = client.post("/api/jobs", json={"type": "noop"}, headers=bearer(MASTER))
    assert r.json()["jobs"][0]["user_id"] == "local"
    assert client.get("/api/jobs", headers=bearer("rhz_not-a-token")).status_code == 401


def test_x_rhizome_user_counts_only_from_a_trusted_proxy(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    alice = {"X-Rhizome-User": "alice"}
    # not trusted: the header is ignored (the local admin of a laptop install)
    _, web = web_app(store, storage, db_url)
    client = TestClient(web)
    r = client.post("/api/jobs", json={"type": "noop"}, headers=alice)
    assert r.json()["jobs"][0]["user_id"] == "local"
    assert client.get("/api/jobs", headers={"X-Rhizome-User": "bad user"}).status_code == 200
    # trusted only from listed addresses: the test client's peer is not one
    _, web = web_app(store, storage, db_url, trusted_proxy="10.0.0.5")
    assert TestClient(web).get("/api/jobs", headers=alice).status_code == 200
    r = TestClient(web).post("/api/jobs", json={"type": "noop"}, headers=alice)
    assert r.json()["jobs"][0]["user_id"] == "local"
    proxied = TestClient(web, client=("10.0.0.5", 4321))
    r = proxied.post("/api/jobs", json={"type": "noop"}, headers=alice)
    assert r.json()["jobs"][0]["user_id"] == "alice"
    # a proxied user has the role the users table gives it (user when not there)
    assert proxied.post("/api/queue/pause", json={}, headers=alice).status_code == 403
    Users(store).add("alice", "admin")
    _, web = web_app(store, storage, db_url, trusted_proxy="10.0.0.0/8")
    proxied = TestClient(web, client=("10.1.2.3", 4321))
    assert proxied.post("/api/queue/pause", json={}, headers=alice).status_code == 200
    assert proxied.get("/api/jobs", headers={"X-Rhizome-User": "bad user"}).status_code == 422
    # with users, a request that is neither proxied nor token-bearing is refused
    assert TestClient(web).get("/api/jobs", headers=alice).status_code == 401


def test_trusted_proxy_setting() -> None:
    assert not TrustedProxies.parse(None) and not TrustedProxies.parse("0")
    local = TrustedProxies.parse("1")
    assert local.trusts("127.0.0.1") and local.trusts("::1") and not local.trusts("10.0.0.1")
    assert not local.trusts("testclient") and not local.trusts(None)
    listed = TrustedProxies.parse("10.0.0.5, 192.168.0.0/24")
    assert listed.trusts("10.0.0.5") and listed.trusts("192.168.0.77")
    assert not listed.trusts("10.0.0.6") and not listed.trusts("127.0.0.1")
    assert TrustedProxies.parse("*").trusts("anything")
    with pytest.raises(ConfigError):
        TrustedProxies.parse("proxy.example")


# --- throttling and the Host header ---------------------------------------------------------


def test_wrong_tokens_are_throttled_per_client(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    alice = Users(store).add("alice")
    _, web = web_app(store, storage, db_url, throttle=LoginThrottle(burst=3, refill_seconds=60))
    guesser = TestClient(web, client=("10.9.9.9", 1000))
    for _ in range(3):
        assert guesser.get("/api/jobs", headers=bearer("rhz_guess")).status_code == 401
    r = guesser.get("/api/jobs", headers=bearer("rhz_guess"))
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["type"] == "TooManyAttempts"
    # even the right token waits: a guesser learns nothing from the answers
    assert guesser.get("/api/jobs", headers=bearer(alice.token)).status_code == 429
    assert guesser.post("/login", data={"token": alice.token}).status_code == 429
    # another client is not affected
    other = TestClient(web, client=("10.9.9.10", 1000))
    assert other.get("/api/jobs", headers=bearer(alice.token)).status_code == 200
    # wrong logins count too
    for _ in range(3):
        assert other.post("/login", data={"token": "nope"}).status_code == 401
    assert other.post("/login", data={"token": alice.token}).status_code == 429


def test_the_host_header_is_parsed_strictly(
    store: SqlJobStore, storage: LocalStorage, db_url: str
) -> None:
    assert parse_host("localhost:8000") == ("localhost", 8000)
    assert parse_host("127.0.0.1") == ("127.0.0.1", None)
    assert parse_host("[::1]:8000") == ("::1", 8000)
    assert parse_host("Rhizome.LAN.") == ("rhizome.lan", None)
    for bad in (
        "",
        "localhost:8000@evil.example",
        "evil.example@localhost",
        "localhost:8000/path",
        "localhost:99999",
        "localhost:80:80",
        "local host",
        "[::1",
        "[nothex]:80",
        "localhost:",
        "localhost\t",
        "user:pw@localhost",
        "localhost#frag",
    ):
        assert parse_host(bad) is None, bad
    _, web = web_app(store, storage, db_url)
    client = TestClient(web, base_url="http://127.0.0.1:8000")
    for bad in ("localhost:8000@evil.example", "127.0.0.1:8000/x", "127.0.0.1 :8000"):
        r = client.get("/api/jobs", headers={"host": bad})
        assert r.status_code == 400 and r.json()["error"]["type"] == "BadHost", bad
    assert client.get("/api/jobs", headers={"host": "evil.example:8000"}).status_code == 421
    assert client.get("/api/jobs", headers={"host": "localhost:8000"}).status_code == 200
    # a token does not excuse a malformed Host either
    _, web = web_app(store, storage, db_url, api_token=MASTER)
    r = TestClient(web).get(
        "/api/jobs", headers={"host": "localhost:8000@evil.example", **bearer(MASTER)}
    )
    assert r.status_code == 400
