"""An item's page: the picture or video, its renditions and URLs, its text and focal point, its metadata,
moderation and history, for whoever the API shows the item to (`GET /v1/media/{id}`: the same service call,
the same 404).

Reads are rendered here; every change (text, focal point, decision, report, delete) is the page script calling
the public API with the session, so the page can do nothing the API would refuse the same person. The review of
machine tags is plain forms (CSRF-checked) posting here, which call the service the API's routes call.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Request
from markupsafe import escape
from starlette.responses import Response

from mediahub.api.deps import ApiStateDep, MediaServiceDep, ModerationServiceDep, SettingsDep, TagServiceDep, UrlsDep
from mediahub.api.library.pages.home import entity_page_url
from mediahub.api.library.pages.moderation import REJECT_REASONS
from mediahub.api.library.session import CSRF_FIELD, session_token
from mediahub.api.library.web import (
    SignedInViewerDep,
    ViewerDep,
    api_path,
    library_url,
    redirect,
    render,
    require_csrf,
)
from mediahub.api.presenters import LOCATION_METADATA, PUBLIC_METADATA, media_out, report_history_out
from mediahub.api.schemas import MAX_ID, MediaOut, Name
from mediahub.db.models import AuditEvent, MediaItem, MediaVariant
from mediahub.entities import FieldSpec, get_kind
from mediahub.errors import InvalidInput
from mediahub.media.access import EntityRef
from mediahub.media.tagging import room_labels
from mediahub.media.delivery import ORIGINAL
from mediahub.media.exposure import is_public
from mediahub.media.job_kinds import WEB
from mediahub.media.responsive import AUTO, is_whole_picture, whole_presets
from mediahub.media.transform_urls import FORMAT_EXTENSIONS
from mediahub.media.urls import MediaUrls
from mediahub.pipeline.placeholders import thumbhash_png

router = APIRouter(prefix="/library", include_in_schema=False)

MediaIdPath = Annotated[int, Path(ge=1, le=MAX_ID)]

DISPLAY_WIDTH = 1600  # the widest rendition the page itself loads: never a large original
DISPLAY_SIZES = "(max-width: 960px) 100vw, 60vw"  # the picture's column
SNIPPET_SIZES = "(max-width: 800px) 100vw, 800px"  # a starting point for the page the snippet goes into
HISTORY_VALUE_CHARS = 80  # of a field's value in the history list: the API has the whole of it
BASE_FORMATS = ("jpeg", "png")  # every picture has its presets in one of these; WebP and AVIF come later, if ever


@dataclass(frozen=True)
class Picture:
    """What the page shows: a whole-picture rendition, with the item's srcset in its format."""

    src: str
    width: int
    height: int
    srcset: str | None
    preset: str | None  # the preset it is; None for the original


@dataclass(frozen=True)
class Rendition:
    name: str
    format: str
    url: str
    width: int
    height: int
    size: int
    crop: bool  # a crop shows part of the picture, centred on the focal point
    is_original: bool  # names the original's object (no smaller rendition was worth storing)


def _base_format(item: MediaItem) -> str | None:
    formats = {variant.format for variant in item.presets}
    return next((fmt for fmt in BASE_FORMATS if fmt in formats), None)


def _url(out: MediaOut, variant: MediaVariant) -> str:
    return out.variants[variant.name][variant.format].url


def _picture(item: MediaItem, out: MediaOut) -> Picture | None:
    """The widest whole-picture preset up to DISPLAY_WIDTH (the narrowest when all are wider), else the original;
    None while neither can be shown (a raw upload waiting for its re-encode)."""
    fmt = _base_format(item)
    whole = [variant for variant in whole_presets(item) if variant.format == fmt]
    if whole:
        width = max((v.width for v in whole if v.width <= DISPLAY_WIDTH), default=whole[0].width)
        shown = next(v for v in whole if v.width == width)  # the preset the srcset names for this width
        return Picture(_url(out, shown), shown.width, shown.height, (out.srcset or {}).get(fmt or ""), shown.name)
    if out.url and out.width and out.height and item.media_type == "image":
        return Picture(out.url, out.width, out.height, None, None)
    return None


def _renditions(item: MediaItem, out: MediaOut) -> list[Rendition]:
    return [Rendition(variant.name, variant.format, _url(out, variant), variant.width, variant.height,
                      variant.byte_size, not is_whole_picture(item, variant),
                      variant.storage_key == item.original_key)
            for variant in item.presets]


def _video_source(out: MediaOut) -> str | None:
    """The web MP4 every browser plays, else the original as uploaded."""
    web = out.variants.get(WEB, {}).get("mp4")
    return web.url if web else out.url


def _preset_urls(item: MediaItem, urls: MediaUrls, presets: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Delivery URLs by preset, each with what it answers: the format the client accepts best, then one per format.
    An approved picture's only: before that they answer only those who may see the item, so none is handed out."""
    if item.media_type != "image" or not is_public(item):
        return {}
    answers = ["best format", *FORMAT_EXTENSIONS.values()]  # in the order preset_urls gives them
    return {preset: list(zip(answers, urls.preset_urls(item, preset), strict=True))
            for preset in [*presets, ORIGINAL]}


def _snippet(item: MediaItem, out: MediaOut, urls: MediaUrls, picture: Picture | None) -> str | None:
    """A ready `<img>` with the item's srcset: the negotiated preset URLs when it has them, else its base format's."""
    if picture is None or not out.srcset or item.media_type != "image":
        return None
    auto = out.srcset.get(AUTO)
    src = urls.preset_url(item, picture.preset) if auto and picture.preset else picture.src
    attributes = {"src": src, "srcset": auto or picture.srcset, "sizes": SNIPPET_SIZES, "width": out.width,
                  "height": out.height, "alt": out.alt_text or "", "loading": "lazy", "decoding": "async"}
    return "<img " + " ".join(f'{name}="{escape(value)}"' for name, value in attributes.items()
                              if value is not None) + ">"


def _placeholder(out: MediaOut) -> str | None:
    png = thumbhash_png(out.placeholders.thumbhash) if out.placeholders else None
    return f"data:image/png;base64,{base64.b64encode(png).decode()}" if png else None


@dataclass(frozen=True)
class HistoryLine:
    """One audit event as the page lists it: who did what, when, why, and each field before and after."""

    event: AuditEvent
    changes: list[tuple[str, str, str]]  # field, before, after: short JSON texts (the template escapes them)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= HISTORY_VALUE_CHARS else text[:HISTORY_VALUE_CHARS - 1] + "…"


def _history(events: list[AuditEvent] | None) -> list[HistoryLine] | None:
    if events is None:
        return None
    return [HistoryLine(event, [(name, _short((event.before or {}).get(name)), _short((event.after or {}).get(name)))
                                for name in dict.fromkeys([*(event.before or {}), *(event.after or {})])])
            for event in events]


def _metadata_groups(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The metadata the presenter let through for this viewer, by who may see it."""
    groups: dict[str, dict[str, Any]] = {"stored": {}, "private": {}, "location": {}}
    for name, value in sorted(metadata.items()):
        group = "stored" if name in PUBLIC_METADATA else "location" if name in LOCATION_METADATA else "private"
        groups[group][name] = value
    return groups


@router.get("/media/{media_id}", summary="An item's page")
def item_page(request: Request, media_id: MediaIdPath, viewer: ViewerDep, media: MediaServiceDep,
              moderation: ModerationServiceDep, urls: UrlsDep, settings: SettingsDep) -> Response:
    detail = media.detail(media_id, viewer.principal)
    item = detail.view.item
    out = media_out(detail.view, urls)
    picture = _picture(item, out)
    renditions = _renditions(item, out)
    history = report_history_out(moderation.reports(media_id, viewer.principal)) if viewer.is_moderator else None
    return render(request, viewer, "item.html", {
        "item": out,
        "picture": picture,
        "video": _video_source(out) if item.media_type == "video" else None,
        "display_sizes": DISPLAY_SIZES,
        "renditions": renditions,
        "crops": [r for r in renditions if r.crop and r.format == _base_format(item)],
        "preset_urls": _preset_urls(item, urls, [spec.name for spec in settings.image_sizes]),
        "snippet": _snippet(item, out, urls, picture),
        "placeholder": _placeholder(out),
        "metadata": _metadata_groups(out.metadata),
        "sees_private": detail.view.private,
        "sees_location": detail.view.location,
        "may_edit": detail.may_edit,
        "may_moderate": viewer.is_moderator,
        "may_report": viewer.signed_in and not viewer.is_moderator,  # a moderator decides instead
        "reports": history,
        "history": _history(detail.history),
        "entity_url": entity_page_url(request, EntityRef.of_item(item)),
        "reject_reasons": REJECT_REASONS,
        "api_url": api_path(request, f"/v1/media/{item.id}"),
        "signed_url_ttl": settings.signed_url_ttl,
        "room_field": item.media_type == "image" and _field(item).room_tags,
        "room_labels": room_labels(),
        "tags_form_url": library_url(request, f"/media/{item.id}/tags"),
    })


def _field(item: MediaItem) -> FieldSpec:
    return get_kind(item.entity_type).field(item.entity_field)


@router.post("/media/{media_id}/tags", summary="Review an item's machine tags")
def review_tags(request: Request, media_id: MediaIdPath, viewer: SignedInViewerDep, api: ApiStateDep,
                tags: TagServiceDep, action: Annotated[Literal["accept", "reject", "correct"], Form()],
                tag_id: Annotated[int | None, Form(ge=1, le=MAX_ID)] = None,
                label: Annotated[Name | None, Form(max_length=64)] = None,
                csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "") -> Response:
    """The item page's review forms (moderators): the same service calls as the API's routes, back to the page."""
    require_csrf(request, api.csrf_secret, session_token(request), csrf)
    principal = viewer.principal
    assert principal is not None
    if action == "correct":
        tags.correct_room(media_id, label or "", principal)
    elif tag_id is None:
        raise InvalidInput("name the tag to review", code="tag_required")
    elif action == "accept":
        tags.accept(media_id, tag_id, principal)
    else:
        tags.reject(media_id, tag_id, principal)
    return redirect(library_url(request, f"/media/{media_id}#machine-tags"))
