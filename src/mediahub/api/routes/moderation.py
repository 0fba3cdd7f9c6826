"""Moderation: the queue and decisions (moderators, admins) and flags (any signed-in viewer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from mediahub.api.deps import ModerationServiceDep, PrincipalDep, UrlsDep
from mediahub.api.presenters import media_out
from mediahub.api.schemas import MAX_ID, FlagOut, FlagRequest, MediaList, MediaOut, ModerationRequest, Problem
from mediahub.services.media import MediaView

router = APIRouter(prefix="/v1/media", tags=["moderation"])

MediaIdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
ERRORS = {status: {"model": Problem, "content": {"application/problem+json": {}}} for status in (401, 403, 404, 422)}


@router.get("/moderation/queue", response_model=MediaList, responses=ERRORS, summary="Items awaiting moderation",
            description="Pending and flagged items, oldest first. Moderators and admins only.")
def moderation_queue(moderation: ModerationServiceDep, urls: UrlsDep, principal: PrincipalDep,
                     offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                     limit: Annotated[int, Query(ge=1, le=100)] = 50) -> MediaList:
    items = moderation.queue(principal, offset, limit)
    # The caller is a moderator: they see who uploaded what (MediaView.private), never where (location).
    return MediaList(items=[media_out(MediaView(item, private=True), urls) for item in items])


@router.post("/{media_id}/moderation", response_model=MediaOut, responses=ERRORS, summary="Decide an item's status",
             description="Moderators and admins only. Approved items become public.")
def moderate_media(media_id: MediaIdPath, body: ModerationRequest, moderation: ModerationServiceDep,
                   urls: UrlsDep, principal: PrincipalDep) -> MediaOut:
    item = moderation.decide(media_id, principal, body.status, body.reason)
    return media_out(MediaView(item, private=True), urls)


@router.post("/{media_id}/flag", response_model=FlagOut, responses=ERRORS, summary="Flag an item for moderation",
             description="Any signed-in caller who can see the item; it leaves public view until a moderator decides.")
def flag_media(media_id: MediaIdPath, body: FlagRequest, moderation: ModerationServiceDep,
               principal: PrincipalDep) -> FlagOut:
    item = moderation.flag(media_id, principal, body.reason)
    return FlagOut(id=item.id, moderation_status=item.moderation_status)
