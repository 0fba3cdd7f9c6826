"""Duplicate review (moderators and admins): groups of duplicates side by side, large enough to judge.

The page lists groups through the same service as `GET /v1/media/duplicates`; its script keeps one,
keeps all, or resolves every exact group through the API's duplicate endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from mediahub.api.deps import DuplicateReviewDep, UrlsDep
from mediahub.api.library.pages.home import entity_page_url
from mediahub.api.library.web import SignedInViewerDep, library_url, render
from mediahub.api.presenters import duplicate_group_out
from mediahub.api.schemas import MediaOut
from mediahub.entities import get_kind
from mediahub.media.access import EntityRef

router = APIRouter(prefix="/library", include_in_schema=False)

GROUPS_PER_PAGE = 10
DISPLAY_WIDTH = 600  # px: the narrowest rendition a member is shown from when it has one this wide
SIZES = "(max-width: 700px) 92vw, 600px"  # the `sizes` of a member's srcset: a column of the group's grid
# What a group's members share, by its kind.
TITLES = {"pixels": ("Exact copies", "the same pixels: one picture, in one file or several"),
          "file": ("Exact copies", "the same file"),
          "near": ("Look alike", "the first item and newer ones within the perceptual distance set for duplicates")}
SRCSET_FORMATS = ("auto", "webp", "jpeg", "png")  # the srcset a member is shown from, first found


@dataclass(frozen=True)
class Picture:
    """What an <img> of a member shows: a rendition wide enough to judge, and its srcset."""

    src: str
    srcset: str | None
    width: int
    height: int


def picture(item: MediaOut) -> Picture | None:
    """The narrowest rendition at least DISPLAY_WIDTH wide (else the widest), never the 150 px thumbnail when
    there is a larger one; None while an item has no rendition yet."""
    renditions = sorted((v for formats in item.variants.values() for v in formats.values()),
                        key=lambda v: (v.width, v.content_type != "image/jpeg"))
    if not renditions:
        return None
    chosen = next((v for v in renditions if v.width >= DISPLAY_WIDTH), renditions[-1])
    srcset = next((item.srcset[name] for name in SRCSET_FORMATS if item.srcset and name in item.srcset), None)
    return Picture(chosen.url, srcset, chosen.width, chosen.height)


@router.get("/duplicates", summary="Duplicate review")
def duplicates_page(request: Request, viewer: SignedInViewerDep, review: DuplicateReviewDep, urls: UrlsDep,
                    kind: Literal["exact", "near"] = "exact",
                    after: Annotated[str | None, Query(max_length=80)] = None) -> Response:
    assert viewer.principal is not None
    page = review.groups(viewer.principal, kind, after, GROUPS_PER_PAGE)  # moderators and admins, as the API
    summary = review.summary(viewer.principal) if kind == "exact" else None

    def entity_url(item: MediaOut) -> str:
        return entity_page_url(request, EntityRef(get_kind(item.entity_type), item.entity_id, item.parent_id))

    return render(request, viewer, "duplicates.html", {
        "kind": kind, "after": after, "next": page.next, "summary": summary,
        "groups": [duplicate_group_out(group, urls) for group in page.groups],
        "api": f"{request.scope.get('root_path', '')}/v1/media/duplicates",
        "page_url": library_url(request, "/duplicates"), "entity_url": entity_url, "picture": picture,
        "titles": TITLES, "sizes": SIZES,
    })
