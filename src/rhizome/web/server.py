"""``rhizome serve``: the API, the UI, live updates and (by default) an embedded worker in
one uvicorn process. SIGTERM/SIGINT: event streams close, the worker stops claiming and
releases its jobs at their next safe point, then the process exits."""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn

from rhizome.app import App
from rhizome.web.app import create_app
from rhizome.web.security import check_bind

log = logging.getLogger("rhizome.web.server")

WEB_CONNECTIONS = 16
"""Database connections for web requests, on top of the worker's."""


class _Server(uvicorn.Server):
    """Exit with status 0 after a graceful shutdown on SIGTERM/SIGINT (uvicorn re-raises
    the signal otherwise, which skips our clean-up)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def run(app: App, *, host: str = "127.0.0.1", port: int = 8000, worker: bool = True) -> None:
    """Serve until SIGTERM/SIGINT. Refuses a non-loopback ``host`` without an API token."""
    settings = app.settings
    check_bind(host, settings.api_token)
    if app._store is None:  # room for web requests next to the worker's threads
        app._store = app.open_store(max_connections=settings.concurrency + WEB_CONNECTIONS)
    web = create_app(app, worker=worker, bind_host=host)
    config = uvicorn.Config(
        web,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(5, int(settings.shutdown_grace_seconds) + 5),
        proxy_headers=False,
        server_header=False,
    )
    server = _Server(config)
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "serving http://%s:%d/ (worker: %s, api token: %s)",
        shown,
        port,
        "embedded" if worker else "none",
        "required" if settings.api_token else "not set (loopback only)",
    )
    try:
        server.run()
    finally:
        app.close()
