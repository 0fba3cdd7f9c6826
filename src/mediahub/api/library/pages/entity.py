"""An entity's media: one grid of thumbnails per media field, a page at a time, with upload, bulk actions
and ordering for those the services let do them.

Reads go through MediaService exactly as the list API's do (a stranger sees what the API shows a
stranger); every change is the page's script calling the API (/v1/media/...) with the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from mediahub.api.deps import MediaServiceDep, UrlsDep
from mediahub.api.library.pages.home import entity_page_url
from mediahub.api.library.web import Viewer, ViewerDep, api_path, library_url, render
from mediahub.api.presenters import media_out
from mediahub.api.schemas import MAX_ID, MediaOut, Name
from mediahub.entities import FieldSpec
from mediahub.errors import NotFound
from mediahub.media.access import EntityRef
from mediahub.media.tagging import TAG_FILTERS_MAX, room_labels
from mediahub.media.manage import EntityPage, EntityRights, MediaService, MediaView
from mediahub.pipeline.placeholders import blurhash_average

router = APIRouter(prefix="/library", include_in_schema=False)

PAGE_SIZE = 48  # tiles per field per page, unless asked: a few screens, and one query's worth of rows
THUMBNAIL = "thumbnail"  # the 150 px preset (a video's: of its poster)
PROCESSING = frozenset({"queued", "processing"})

Word = Annotated[str | None, Query(max_length=200)]
PerPage = Annotated[int, Query(ge=1, le=100, description="tiles per field per page")]
# Tags to filter by: the list API's words (a form's one field may hold several, comma-separated).
TagWords = Annotated[list[Name] | None, Query(max_length=TAG_FILTERS_MAX)]


@dataclass(frozen=True)
class Tile:
    """What a grid shows of one item."""

    id: int
    field: str
    media_type: str
    status: str  # moderation status
    processing: str | None  # "processing" while its work is queued or running, "failed", or None when ready
    primary: bool
    alt_text: str | None
    caption: str | None
    thumbnail: str | None  # the thumbnail's URL; None while it is still being made
    width: int
    height: int
    colour: str  # shown while the thumbnail loads

    @classmethod
    def of(cls, out: MediaOut) -> Tile:
        renditions = out.variants.get(THUMBNAIL, {})
        rendition = renditions.get("jpeg") or next(iter(renditions.values()), None)
        blurhash = out.placeholders.blurhash if out.placeholders else ""
        processing = ("processing" if out.processing_status in PROCESSING
                      else "failed" if out.processing_status == "failed" else None)
        return cls(
            id=out.id, field=out.entity_field, media_type=out.media_type, status=out.moderation_status,
            processing=processing, primary=out.is_primary, alt_text=out.alt_text, caption=out.caption,
            thumbnail=rendition.url if rendition else None, width=rendition.width if rendition else 150,
            height=rendition.height if rendition else 150, colour=blurhash_average(blurhash) or "#d9dde3",
        )


@dataclass(frozen=True)
class Section:
    """One media field's grid: its first tiles, how many the viewer may see in all, the next page's cursor."""

    field: FieldSpec
    tiles: list[Tile]
    total: int
    next: str | None
    reorderable: bool


def _tiles(views: list[MediaView], urls: UrlsDep) -> list[Tile]:
    return [Tile.of(media_out(view, urls)) for view in views]


def _page(media: MediaService, entity: EntityRef, viewer: Viewer, field: FieldSpec, per_page: int,
          tags: list[str], after: str | None = None) -> EntityPage:
    return media.list_entity(entity, viewer.principal, field=field.name, moderation_status=None, is_primary=None,
                             offset=0, limit=per_page, after=after, tags=tags)


def _tags(words: list[str] | None) -> list[str]:
    """The filter's tags: each `tag` parameter, and each comma-separated word of one (the page's form)."""
    return list(dict.fromkeys(tag.strip() for word in words or [] for tag in word.split(",") if tag.strip()))


def _context(request: Request, entity: EntityRef, rights: EntityRights, tags: list[str]) -> dict[str, object]:
    parent = entity.parent
    return {
        "entity": entity, "rights": rights, "selectable": rights.manage or rights.moderate, "tags": tags,
        "room_labels": room_labels(),
        "api_root": api_path(request, ""),
        "tiles_url": library_url(request, f"/{entity.kind.name}/{quote(entity.entity_id, safe='')}/tiles"),
        "parent_url": entity_page_url(request, parent) if parent else None,
    }


@router.get("/{entity_type}/{entity_id}", summary="An entity's media")
def entity_page(request: Request, viewer: ViewerDep, media: MediaServiceDep, urls: UrlsDep, entity_type: str,
                entity_id: str, parent_id: Word = None, per_page: PerPage = PAGE_SIZE, tag: TagWords = None) -> Response:
    """Open to everyone: a stranger, signed in or not, sees what the list API shows them, without controls.
    `tag`: only the items carrying each of these tags (the list API's filter); the order is then not changed."""
    entity = EntityRef.parse(entity_type, entity_id, parent_id)
    rights = media.rights(entity, viewer.principal)
    tags = _tags(tag)
    sections = []
    for field in entity.kind.fields:
        page = _page(media, entity, viewer, field, per_page, tags)
        sections.append(Section(field, _tiles(page.items, urls), page.total, page.next,
                                reorderable=rights.manage and field.slot == "gallery" and not tags))
    return render(request, viewer, "entity.html", {**_context(request, entity, rights, tags), "sections": sections,
                                                   "per_page": per_page})


@router.get("/{entity_type}/{entity_id}/tiles", summary="More tiles of an entity's field")
def entity_tiles(request: Request, viewer: ViewerDep, media: MediaServiceDep, urls: UrlsDep, entity_type: str,
                 entity_id: str, field: Annotated[str, Query(max_length=32)], parent_id: Word = None,
                 after: Word = None, per_page: PerPage = PAGE_SIZE,
                 media_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None, tag: TagWords = None) -> Response:
    """The tiles of the page after the cursor `after`, or the one tile of `media_id` (an upload just made),
    as HTML for the page's script to add to the field's grid."""
    entity = EntityRef.parse(entity_type, entity_id, parent_id)
    spec = entity.kind.field(field)
    rights = media.rights(entity, viewer.principal)
    tags = _tags(tag)
    if media_id is not None:
        view = media.get(media_id, viewer.principal)
        if EntityRef.of_item(view.item) != entity or view.item.entity_field != spec.name:
            raise NotFound("no such media item", code="media_not_found")
        tiles, cursor = _tiles([view], urls), None
    else:
        page = _page(media, entity, viewer, spec, per_page, tags, after)
        tiles, cursor = _tiles(page.items, urls), page.next
    return render(request, viewer, "entity_tiles.html", {
        **_context(request, entity, rights, tags), "tiles": tiles, "next": cursor,
        "reorderable": rights.manage and spec.slot == "gallery" and not tags})
