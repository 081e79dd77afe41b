"""The Import/Export page: pick documents and export them with live progress and a
*Download ZIP* button, upload a ZIP to import (with the conflict dialog), and the storage
scan with its one-click fixes. The page's script is ``static/portability.js``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from rhizome.library import Library
from rhizome.library.portability import STRATEGY_HELP
from rhizome.web.rendering import render
from rhizome.web.state import StateDep, UserDep
from rhizome.web.views import document_view, job_summary

router = APIRouter(include_in_schema=False)


@router.get("/portability", response_class=HTMLResponse)
def portability_page(request: Request, state: StateDep, user: UserDep) -> HTMLResponse:
    docs = Library(state.store).list_documents(user, status="ready", limit=2000)
    exports = state.store.list_jobs(user_id=user, job_types=["export_documents"], limit=20)
    imports = state.store.list_jobs(user_id=user, job_types=["import_document"], limit=20)
    ctx = {
        "page": "portability",
        "documents": [document_view(d) for d in docs],
        "exports": [
            {**job_summary(state.registry, j), "output": j.output_data or {}} for j in exports
        ],
        "imports": [
            {**job_summary(state.registry, j), "output": j.output_data or {}} for j in imports
        ],
        "strategies": STRATEGY_HELP,
    }
    return render(request, "portability.html", ctx)
