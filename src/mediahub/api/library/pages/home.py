"""The library's home page, and the way from an entity's name to its page."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from mediahub.api.library.web import SignedInViewerDep, library_url, redirect, render
from mediahub.media.access import EntityRef

router = APIRouter(prefix="/library", include_in_schema=False)

Word = Annotated[str | None, Query(max_length=200)]


def entity_page_url(request: Request, entity: EntityRef) -> str:
    url = library_url(request, f"/{entity.kind.name}/{quote(entity.entity_id, safe='')}")
    return f"{url}?parent_id={quote(entity.parent_id, safe='')}" if entity.parent_id else url


@router.get("", summary="The library's home page")
async def home(request: Request, viewer: SignedInViewerDep) -> Response:
    assert viewer.principal is not None
    return render(request, viewer, "home.html", {"grants": sorted(viewer.principal.grants)})


@router.get("/open", summary="Go to an entity's page")
async def open_entity(request: Request, viewer: SignedInViewerDep, entity_type: Word = None,
                      entity_id: Word = None, parent_id: Word = None, label: Word = None) -> Response:
    """From the home page's form (kind, id, parent) or a grant's label (`community:C1/amenity:A1`); a bad
    name is a 422 page."""
    if label is not None:
        entity = EntityRef.parse_label(label)
    else:
        entity = EntityRef.parse(entity_type or "", entity_id or "", parent_id or None)
    return redirect(entity_page_url(request, entity))
