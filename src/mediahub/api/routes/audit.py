"""The audit trail: the whole of it for admins, an item's history for those who may read it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from mediahub.api.deps import AuditServiceDep, PrincipalDep
from mediahub.api.errors import problem_responses
from mediahub.api.presenters import audit_event_out
from mediahub.api.schemas import MAX_ID, AuditPage, Name
from mediahub.db.repositories import ACTIONS
from mediahub.media.audit import PAGE_MAX, Trail, audit_filter

router = APIRouter(prefix="/v1/media", tags=["audit"])

MediaIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="the item's numeric id")]
After = Annotated[str | None, Query(max_length=200, description="the `next` cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX)]


def _page(trail: Trail) -> AuditPage:
    return AuditPage(items=[audit_event_out(event) for event in trail.events], next=trail.next)


@router.get("/audit", response_model=AuditPage, responses=problem_responses(401, 403, 422),
            summary="The audit trail",
            description="Admins only. Every recorded change, newest first: who (`actor`), what (`action`: "
                        + ", ".join(f"`{name}`" for name in ACTIONS) + "), when, why, and the fields it changed. "
                        "Filters combine; `action` may be given several times. Page with `after` (the previous "
                        "page's `next`); a cursor no listing gave is 422 `invalid_cursor`.")
def audit_trail(
    audit: AuditServiceDep,
    principal: PrincipalDep,
    actor: Annotated[Name | None, Query(min_length=1, max_length=128)] = None,
    action: Annotated[list[Name] | None, Query(max_length=len(ACTIONS), description="one action or several")] = None,
    media: Annotated[Name | None, Query(min_length=1, max_length=32, description="an item's public id")] = None,
    entity_type: Annotated[Name | None, Query(max_length=32)] = None,
    entity_id: Annotated[Name | None, Query(max_length=200)] = None,
    parent_id: Annotated[Name | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="at or after this time (with its UTC offset)")] = None,
    until: Annotated[datetime | None, Query(description="before this time (with its UTC offset)")] = None,
    after: After = None,
    limit: Limit = 50,
) -> AuditPage:
    where = audit_filter(actor=actor, actions=action, media=media, entity_type=entity_type, entity_id=entity_id,
                         parent_id=parent_id, since=since, until=until)
    return _page(audit.trail(principal, where, after, limit))


@router.get("/{media_id}/history", response_model=AuditPage, responses=problem_responses(401, 403, 404, 422),
            summary="An item's history",
            description="The item's recorded changes, newest first: for its uploader, its entity's owners and "
                        "moderators (who reported it: moderators only); 403 for others who may see the item, 404 "
                        "for those who may not.")
def item_history(media_id: MediaIdPath, audit: AuditServiceDep, principal: PrincipalDep, after: After = None,
                 limit: Limit = 50) -> AuditPage:
    return _page(audit.history(media_id, principal, after, limit))
