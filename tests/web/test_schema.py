"""Schemathesis over /openapi.json (every operation but the endpless event stream):
generated valid and invalid requests must never produce a server error."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from rhizome.app import App
from rhizome.config import Settings
from rhizome.jobs.model import NewJob
from rhizome.web import create_app
from tests.web.conftest import load_all_handlers

load_all_handlers()

# schemathesis parametrizes at import time, so the app (and its SQLite file) exist then
_root = Path(tempfile.mkdtemp(prefix="rhizome-schema-"))
_app = App(
    Settings(database_url=f"sqlite:///{_root / 'rhizome.db'}", storage_url=str(_root / "storage"))
)
_web = create_app(_app, allowed_hosts=["testserver", "localhost"], max_upload_bytes=100_000)
# something to find: jobs in a few states
_jobs = _app.store.enqueue([NewJob("noop", {}), NewJob("reprocess_connections", {"title": "x"})])
_app.store.request_pause(_jobs[0].id)

schema = schemathesis.openapi.from_asgi("/openapi.json", _web).exclude(path="/api/events")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: Any) -> None:
    case.call_and_validate(checks=[schemathesis.checks.not_a_server_error])
