"""The Integrations page: the Obsidian vault (settings, export, sync with its last result
and the conflicts to resolve) and Readwise (upload an export or import through the API,
the results table, the review queue of suggested passages). The page's script,
``static/integrations.js``, reads and acts through ``/api/integrations``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from rhizome.library.integrations import obsidian_overview
from rhizome.library.readwise import ReadwiseRepo
from rhizome.library.review import Review
from rhizome.web.rendering import render
from rhizome.web.state import StateDep, UserDep

router = APIRouter(include_in_schema=False)


@router.get("/integrations", response_class=HTMLResponse)
def integrations_page(request: Request, state: StateDep, user: UserDep) -> HTMLResponse:
    overview = obsidian_overview(state.store, user)
    ctx = {
        "page": "integrations",
        "vault": overview["settings"],
        "vault_visible": overview["vault_visible_here"],
        "account": ReadwiseRepo(state.store).account_view(user),
        "review_total": Review(state.store, state.storage).count(user),
    }
    return render(request, "integrations.html", ctx)
