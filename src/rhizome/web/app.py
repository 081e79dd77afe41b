"""``create_app``: the ASGI application (API + UI + live updates [+ embedded worker])."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette.sse import EventSourceResponse

import rhizome
from rhizome.app import App
from rhizome.auth import Users
from rhizome.config import Settings
from rhizome.library.ingest import MAX_UPLOAD_BYTES
from rhizome.web import (
    connection_pages,
    errors,
    integration_pages,
    metrics,
    operator_pages,
    pages,
    portability,
)
from rhizome.web.api import router as api_router
from rhizome.web.readcache import CachedAnswers
from rhizome.web.rendering import make_templates
from rhizome.web.resources import STATIC
from rhizome.web.security import (
    Authenticator,
    GuardMiddleware,
    LoginThrottle,
    SecurityConfig,
    TrustedProxies,
)
from rhizome.web.sse import Broadcaster, event_stream, snapshot
from rhizome.web.state import StateDep, UserDep, WebState

log = logging.getLogger("rhizome.web")

REQUEST_THREADS = 10
"""Threads that run request handlers (their blocking database calls) beside the event loop:
enough to overlap database round trips; more only fight over the GIL under load."""


def embedder_health(settings: Settings) -> dict[str, Any] | str:
    """The embedding model the workers of this process use, and where the local model runs
    (ONNX Runtime int8/fp32 or PyTorch, and why it fell back), without loading anything."""
    from rhizome.pipeline.embed import get_embedder

    try:
        embedder = get_embedder(settings=settings)
    except Exception as exc:
        return f"error: {getattr(exc, 'message', exc)}"
    describe = getattr(embedder, "describe", None)
    if callable(describe):
        info: dict[str, Any] = describe()
        return info
    return {"model": embedder.name, "runtime": type(embedder).__name__}


def create_app(
    app: App,
    *,
    worker: bool = False,
    bind_host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    login_throttle: LoginThrottle | None = None,
) -> FastAPI:
    """The web application over ``app``'s store and storage. With ``worker``, an embedded
    worker runs in a thread for the application's lifetime. ``allowed_hosts``: extra Host
    names accepted without a token (loopback names always are)."""
    security = SecurityConfig(
        token=app.settings.api_token or None,
        bind_host=bind_host.lower(),
        allowed_hosts=frozenset(h.lower() for h in allowed_hosts),
        max_upload_request_bytes=max_upload_bytes + 1024 * 1024,
        upload_paths=(
            "/api/documents",
            "/api/imports/uploads",
            "/api/integrations/readwise/uploads",
        ),
        trusted_proxies=TrustedProxies.parse(app.settings.trusted_proxy),
        auth=Authenticator(Users(app.store), app.settings.api_token),
        throttle=login_throttle or LoginThrottle(),
    )
    state = WebState(
        app=app,
        security=security,
        broadcaster=Broadcaster(app.store, app.registry),
        max_upload_bytes=max_upload_bytes,
        embedded_worker=worker,
    )
    health_lock = threading.Lock()
    registry = metrics.make_registry(app.store, state.broadcaster)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Few request threads: under load more of them only fight over the GIL
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        state.broadcaster.start()
        if worker:
            state.worker = app.worker()
            state.worker_thread = threading.Thread(
                target=_run_worker, args=(state,), name="rhizome-embedded-worker", daemon=True
            )
            state.worker_thread.start()
        try:
            yield
        finally:
            await run_in_threadpool(_stop, state)

    fapp = FastAPI(
        title="Rhizome jobs",
        version=rhizome.__version__ if hasattr(rhizome, "__version__") else "0",
        description=(
            "Durable background jobs for a personal knowledge library. Every request is "
            "scoped to its user: the holder of the bearer token (a user's token from "
            "`rhizome users token NAME`, or RHIZOME_API_TOKEN for the `local` admin), the "
            "`X-Rhizome-User` header of a trusted reverse proxy (RHIZOME_TRUSTED_PROXY), "
            "or `local` on a loopback install without tokens or users. Queue and admin "
            "actions need the admin role (403 otherwise). Errors are "
            '`{"error": {"type", "message", "hint"}}`.'
        ),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    fapp.state.web = state
    fapp.state.templates = make_templates()
    errors.install(fapp)
    fapp.include_router(api_router)
    fapp.include_router(pages.router)
    fapp.include_router(connection_pages.router)
    fapp.include_router(integration_pages.router)
    fapp.include_router(operator_pages.router)
    fapp.include_router(portability.router)
    fapp.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @fapp.get(
        "/api/events",
        tags=["live"],
        summary="Server-Sent Events: live job changes",
        response_class=Response,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "snapshot, then job / event / deleted",
            }
        },
    )
    async def events(request: Request, state: StateDep, user: UserDep) -> Response:
        """A ``snapshot`` message (the user's unfinished jobs) on every (re)connect, then
        ``job`` (a job changed: status, progress, checkpoint, heartbeat), ``event`` (a
        timeline entry) and ``deleted`` messages, as they are committed."""

        def make() -> str:
            return snapshot(state.store, state.registry, state.broadcaster, user)

        shutdown = anyio.Event()
        stream = event_stream(
            state.broadcaster, user, make, run_in_threadpool, stop=shutdown.is_set
        )
        return EventSourceResponse(
            stream,
            ping=15,
            headers={"X-Accel-Buffering": "no"},
            send_timeout=30,
            shutdown_event=shutdown,
            shutdown_grace_period=2,
        )

    @fapp.get("/healthz", tags=["ops"], summary="Database and storage reachable")
    def healthz(state: StateDep) -> JSONResponse:
        checks: dict[str, Any] = {}
        ok = True
        for name, check in (("database", state.store.check), ("storage", state.storage.check)):
            try:
                with health_lock:
                    check()
                checks[name] = "ok"
            except Exception as exc:
                ok = False
                checks[name] = f"error: {getattr(exc, 'message', exc)}"
        checks["live_updates"] = "ok" if state.broadcaster.feed_ok else "starting"
        checks["embedder"] = embedder_health(state.app.settings)
        if state.embedded_worker:
            alive = state.worker_thread is not None and state.worker_thread.is_alive()
            checks["worker"] = "ok" if alive else "stopped"
        return JSONResponse(
            {
                "status": "ok" if ok else "unavailable",
                "checks": checks,
                "time": datetime.now(UTC).isoformat(),
            },
            status_code=200 if ok else 503,
        )

    @fapp.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    def prometheus() -> Response:
        return Response(metrics.render(registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if fapp.openapi_schema:
            return fapp.openapi_schema
        schema = get_openapi(
            title=fapp.title,
            version=fapp.version,
            description=fapp.description,
            routes=fapp.routes,
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "RHIZOME_API_TOKEN (required when the server has one).",
            }
        }
        schema["security"] = [{}, {"bearerAuth": []}]
        fapp.openapi_schema = schema
        return schema

    fapp.openapi = openapi  # type: ignore[method-assign]
    # cached answers inside the guard: every check first, then no routing for a hit
    fapp.add_middleware(CachedAnswers, cache=state.responses)
    fapp.add_middleware(GuardMiddleware, config=security)
    return fapp


def _run_worker(state: WebState) -> None:
    assert state.worker is not None
    try:
        state.worker.run()
    except Exception:
        log.exception("the embedded worker stopped with an error")


def _stop(state: WebState) -> None:
    if state.worker is not None:
        state.worker.stop()
        if state.worker_thread is not None:
            grace = state.worker.config.shutdown_grace_seconds
            state.worker_thread.join(timeout=grace + 10)
    state.broadcaster.stop()
