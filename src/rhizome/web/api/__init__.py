"""The JSON HTTP API (``/api/...``), one module per resource: jobs, queue (with job types
and workers), admin actions, documents, connections. Every call is scoped to the
requesting user; errors are ``{"error": {"type", "message", "hint"}}`` with a 4xx status (see
``rhizome.web.errors``)."""

from __future__ import annotations

from fastapi import APIRouter

from rhizome.web.api import (
    admin,
    connections,
    dashboard,
    documents,
    exports,
    highlights,
    integrations,
    jobs,
    queue,
)

router = APIRouter(prefix="/api")
router.include_router(jobs.router)
router.include_router(admin.router)
router.include_router(queue.router)
router.include_router(documents.router)
router.include_router(connections.router)
router.include_router(exports.router)
router.include_router(highlights.router)
router.include_router(integrations.router)
router.include_router(dashboard.router)

__all__ = ["router"]
