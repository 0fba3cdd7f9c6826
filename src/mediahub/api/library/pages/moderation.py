"""The moderation queue: oldest first, one item at a time, decided from the keyboard.

The first page of the queue is rendered into the page as the API's own JSON (`GET /v1/media/moderation/queue`,
through the same service and presenter); the page script shows it, asks the API for more as the moderator gets
near the end, and sends each decision to the API, so nothing is decided here that the API would refuse.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from mediahub.api.deps import ModerationServiceDep, UrlsDep
from mediahub.api.library.web import SignedInViewerDep, api_path, render
from mediahub.api.presenters import queue_item_out
from mediahub.api.schemas import ModerationQueuePage

router = APIRouter(prefix="/library", include_in_schema=False)

FIRST_PAGE = 50  # entries rendered with the page; the script fetches the next ones a page at a time
# Quick choices for a rejection's reason (a moderator may type any other).
REJECT_REASONS = ("Not this property", "Blurry or too dark", "Shows personal data", "Inappropriate content",
                  "Duplicate", "Watermark or advertising")


@router.get("/moderation", summary="The moderation queue")
def moderation_page(request: Request, viewer: SignedInViewerDep, moderation: ModerationServiceDep,
                    urls: UrlsDep) -> Response:
    """Moderators and admins; anyone else gets the API's 403 (`moderator_required`) as a page."""
    assert viewer.principal is not None
    entries, total = moderation.queue(viewer.principal, 0, FIRST_PAGE)
    first = ModerationQueuePage(items=[queue_item_out(entry, urls) for entry in entries], total=total, offset=0,
                                limit=FIRST_PAGE)
    return render(request, viewer, "moderation.html", {
        "queue": first.model_dump(mode="json"),
        "total": total,
        "reject_reasons": REJECT_REASONS,
        "queue_url": api_path(request, "/v1/media/moderation/queue"),
        "media_url": api_path(request, "/v1/media"),
    })
