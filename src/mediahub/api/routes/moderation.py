"""Moderation: the queue, decisions and dismissals (moderators, admins) and reports (any signed-in viewer)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from mediahub.api.deps import ModerationServiceDep, PrincipalDep, UrlsDep
from mediahub.api.errors import problem_responses
from mediahub.api.presenters import media_out, queue_item_out, report_history_out
from mediahub.api.schemas import (
    MAX_ID,
    FlagOut,
    FlagRequest,
    MediaOut,
    ModerationQueuePage,
    ModerationRequest,
    ReportHistoryOut,
)
from mediahub.media.manage import MediaView

router = APIRouter(prefix="/v1/media", tags=["moderation"])

MediaIdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


ERRORS = problem_responses(401, 403, 404, 422)


@router.get("/moderation/queue", response_model=ModerationQueuePage, responses=ERRORS,
            summary="Items awaiting moderation",
            description="Pending and flagged items and items with open reports (with their count and the oldest "
                        "reasons, and their automated checks' results), oldest first, or with `order=risk` the "
                        "highest risk of the checks first. Moderators and admins only.")
def moderation_queue(moderation: ModerationServiceDep, urls: UrlsDep, principal: PrincipalDep,
                     offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                     limit: Annotated[int, Query(ge=1, le=100)] = 50,
                     order: Literal["oldest", "risk"] = "oldest") -> ModerationQueuePage:
    entries, total = moderation.queue(principal, offset, limit, by_risk=order == "risk")
    return ModerationQueuePage(items=[queue_item_out(entry, urls) for entry in entries], total=total, offset=offset,
                               limit=limit)


@router.post("/{media_id}/moderation", response_model=MediaOut, responses=ERRORS, summary="Decide an item's status",
             description="Moderators and admins only. Approved items become public, and take the place they were "
                         "uploaded for (a single slot, a claimed primary). Closes the item's open reports.")
def moderate_media(media_id: MediaIdPath, body: ModerationRequest, moderation: ModerationServiceDep,
                   urls: UrlsDep, principal: PrincipalDep) -> MediaOut:
    item = moderation.decide(media_id, principal, body.status, body.reason)
    return media_out(MediaView(item, private=True), urls)


@router.get("/{media_id}/reports", response_model=ReportHistoryOut, responses=ERRORS,
            summary="An item's reports",
            description="Open and closed, newest first: who reported it, why, when, and how each report was closed. "
                        "Moderators and admins only.")
def item_reports(media_id: MediaIdPath, moderation: ModerationServiceDep, principal: PrincipalDep) -> ReportHistoryOut:
    return report_history_out(moderation.reports(media_id, principal))


@router.post("/{media_id}/flag", response_model=FlagOut, responses=problem_responses(401, 404, 422, 429),
             summary="Report an item to the moderators",
             description="Any signed-in caller who can see the item, once while their report is open (a repeat "
                         "changes nothing). The item stays as it is until a moderator decides, unless "
                         "FLAG_HIDE_THRESHOLD users have open reports on it. Rate-limited per caller (429 "
                         "`rate_limited`).")
def flag_media(media_id: MediaIdPath, body: FlagRequest, moderation: ModerationServiceDep,
               principal: PrincipalDep) -> FlagOut:
    item = moderation.report(media_id, principal, body.reason)
    return FlagOut(id=item.id, moderation_status=item.moderation_status)


@router.post("/{media_id}/reports/dismiss", response_model=MediaOut, responses=ERRORS,
             summary="Dismiss an item's reports",
             description="Moderators and admins only. Closes the open reports as unfounded; an item they hid "
                         "(flagged) is approved again; one flagged by a moderator or the automated checks stays "
                         "flagged. Only reports made afterwards count towards hiding it.")
def dismiss_reports(media_id: MediaIdPath, moderation: ModerationServiceDep, urls: UrlsDep,
                    principal: PrincipalDep) -> MediaOut:
    return media_out(MediaView(moderation.dismiss(media_id, principal), private=True), urls)
