"""``/api/highlights`` and ``/api/documents/{id}/highlights``: passages of a document's
markdown the user marked, with a note, a colour and tags. Offsets are into
``content.md`` (like chunk offsets); a highlight given only its text is found there."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from rhizome.library import Library
from rhizome.library.highlights import MAX_TEXT, Highlights
from rhizome.web.api.common import Model, Text
from rhizome.web.services.documents import document_markdown
from rhizome.web.state import StateDep, UserDep

router = APIRouter(tags=["highlights"])

Tag = Annotated[Text, Field(min_length=1, max_length=100)]


class HighlightRequest(Model):
    text: Annotated[Text, Field(min_length=1, max_length=MAX_TEXT)]
    start: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = None
    """Offset into content.md where the passage starts (give ``end`` too)."""
    end: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    note: Annotated[Text, Field(max_length=10_000)] | None = None
    color: Annotated[str, Field(pattern=r"^([a-z]{1,20}|#[0-9a-fA-F]{6})$")] | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] = []


@router.get("/documents/{document_id}/highlights", summary="A document's highlights")
def document_highlights(state: StateDep, user: UserDep, document_id: str) -> dict[str, Any]:
    items = Highlights(state.store).find(user, document_id, limit=100_000)
    return {"highlights": [h.to_dict() for h in items]}


@router.post("/documents/{document_id}/highlights", status_code=201, summary="Highlight a passage")
def create_highlight(
    state: StateDep, user: UserDep, document_id: str, body: HighlightRequest
) -> dict[str, Any]:
    doc = Library(state.store).get_document(document_id, user)
    content = document_markdown(state.storage, doc)
    h = Highlights(state.store).create(
        doc.id,
        user,
        text=body.text,
        start=body.start,
        end=body.end,
        content=content,
        note=body.note,
        color=body.color,
        tags=body.tags,
    )
    return {"highlight": h.to_dict()}


@router.get("/highlights", summary="Highlights of the library (or of one document)")
def list_highlights(
    state: StateDep,
    user: UserDep,
    document_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["matched", "needs_review", "unmatched"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    items = Highlights(state.store).find(
        user, document_id, status=status, limit=limit, offset=offset
    )
    return {"highlights": [h.to_dict() for h in items], "limit": limit, "offset": offset}


@router.get("/highlights/{highlight_id}", summary="A highlight")
def get_highlight(state: StateDep, user: UserDep, highlight_id: str) -> dict[str, Any]:
    return {"highlight": Highlights(state.store).get(highlight_id, user).to_dict()}


@router.delete("/highlights/{highlight_id}", summary="Delete a highlight")
def delete_highlight(state: StateDep, user: UserDep, highlight_id: str) -> dict[str, Any]:
    return {"deleted": Highlights(state.store).delete(highlight_id, user).to_dict()}
