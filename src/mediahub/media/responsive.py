"""Responsive images: an image item's `srcset` per format, and the widths it offers.

Only renditions of the whole picture belong in a srcset (a browser picks any of
them for the same slot): a crop shows other pixels. Whether a rendition is
whole is read from its size rather than from the size settings, so rows made
under earlier settings are judged right too: its width and height are the
item's scaled by one factor, within a pixel of rounding. A crop to the
picture's own aspect removes nothing and counts as whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mediahub.db.models import MediaItem, MediaVariant
from mediahub.media.exposure import is_public
from mediahub.media.urls import MediaUrls

AUTO = "auto"  # the srcset of negotiated preset URLs: the best format each client accepts
ROUNDING = 1  # pixels a rendition's side may be off its exact scaled size


def is_whole_picture(item: MediaItem, variant: MediaVariant) -> bool:
    """Whether the rendition shows the whole picture: some scale s puts both sides within ROUNDING of the item's."""
    if not item.width or not item.height:
        return False
    lowest = max((variant.width - ROUNDING) / item.width, (variant.height - ROUNDING) / item.height)
    highest = min((variant.width + ROUNDING) / item.width, (variant.height + ROUNDING) / item.height)
    return lowest <= highest


def whole_presets(item: MediaItem) -> list[MediaVariant]:
    """The item's whole-picture preset renditions, narrowest first (in row order among equals)."""
    return sorted((v for v in item.presets if is_whole_picture(item, v)), key=lambda v: v.width)


@dataclass(frozen=True)
class Responsive:
    srcset: dict[str, str]  # format (and `auto`) -> "url 400w, url 800w, ..."
    widths: list[int]  # ascending


def responsive(item: MediaItem, urls: MediaUrls, url_of: Callable[[str], str]) -> Responsive | None:
    """The srcsets of an image (None for a video): per format, one candidate per width, its URL the
    object's (`url_of`: the one the item's `variants` show); `auto` (approved items only: a pending
    item's preset URL needs a bearer token, which an <img> cannot send) the negotiated preset URL per width."""
    if item.media_type != "image":
        return None
    by_format: dict[str, dict[int, str]] = {}
    preset_of_width: dict[int, str] = {}
    for variant in whole_presets(item):
        # Sizes that share one object (a small picture has no distinct `large`) have one width: listed once.
        by_format.setdefault(variant.format, {}).setdefault(variant.width, url_of(variant.storage_key))
        preset_of_width.setdefault(variant.width, variant.name)
    srcset = {fmt: _candidates(candidates) for fmt, candidates in by_format.items()}
    if is_public(item) and preset_of_width:
        srcset[AUTO] = _candidates({width: urls.preset_url(item, name) for width, name in preset_of_width.items()})
    return Responsive(srcset, sorted(preset_of_width))


def _candidates(url_of_width: dict[int, str]) -> str:
    return ", ".join(f"{url} {width}w" for width, url in sorted(url_of_width.items()))
