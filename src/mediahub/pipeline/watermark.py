"""Watermarks: an entity field's mark (WATERMARKS, `config.Watermark`) composed over a render.

A mark goes on the copy of a render that is encoded, never on the render itself
(smaller sizes are made from larger renders, `variants.render_all`), and never
on the original. Which renders carry it is `applies`: the presets the mark
lists, and transforms, at least `min_width` wide.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mediahub.config import Settings, Watermark, WatermarkPosition
from mediahub.entities import KINDS
from mediahub.pipeline import vips as vips_step

if TYPE_CHECKING:
    import pyvips

__all__ = ["METADATA_KEY", "UnknownWatermarkField", "Watermark", "applies", "apply", "check_fields", "fingerprint",
           "for_field", "metadata"]

# The item's metadata key: the fingerprint of the mark its variants were made with (absent: none).
METADATA_KEY = "watermark"

# Where an anchor puts the mark: its share of the free room (the output less the mark and both margins), x and y.
ANCHORS: dict[WatermarkPosition, tuple[float, float]] = {
    "top-left": (0.0, 0.0), "top": (0.5, 0.0), "top-right": (1.0, 0.0),
    "left": (0.0, 0.5), "center": (0.5, 0.5), "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0), "bottom": (0.5, 1.0), "bottom-right": (1.0, 1.0),
}


class UnknownWatermarkField(ValueError):
    """A WATERMARKS key that names no entity field; the message names the setting."""


def check_fields(marks: Mapping[str, Watermark]) -> None:
    """At start-up: every key of WATERMARKS names an entity field of the kind table (`entity_type.field`)."""
    valid = [f"{kind.name}.{spec.name}" for kind in KINDS for spec in kind.fields]
    unknown = sorted(set(marks) - set(valid))
    if unknown:
        raise UnknownWatermarkField(f"invalid setting WATERMARKS: no such entity field {', '.join(map(repr, unknown))}"
                                    f"; valid keys: {', '.join(valid)}")


def for_field(marks: Settings | Mapping[str, Watermark], entity_type: str, field: str) -> Watermark | None:
    """The mark of one entity field (`entity_type` and `field` as stored: `builder`, `portfolio`), if any."""
    table = marks.watermarks if isinstance(marks, Settings) else marks
    return table.get(f"{entity_type}.{field}")


def applies(mark: Watermark | None, width: int, preset: str | None = None) -> bool:
    """Whether a render `width` px wide gets `mark`: of a preset it lists (`preset`), or a transform (None)."""
    return mark is not None and width >= mark.min_width and (preset is None or preset in mark.presets)


def fingerprint(mark: Watermark | None) -> str | None:
    """What changes with the mark's pixels or settings; None for no mark. Recorded with the variants
    (`metadata`), so that items made with another mark, or none, can be found and made again."""
    return None if mark is None else _fingerprint(mark)


def metadata(mark: Watermark | None) -> dict[str, str]:
    """The metadata of variants made with `mark`."""
    return {} if mark is None else {METADATA_KEY: _fingerprint(mark)}


@functools.lru_cache(maxsize=32)
def _fingerprint(mark: Watermark) -> str:
    digest = hashlib.sha256(mark.image.read_bytes())
    digest.update(mark.model_dump_json(exclude={"image"}).encode())
    return digest.hexdigest()[:16]


def apply(image: pyvips.Image, mark: Watermark) -> pyvips.Image:
    """`image` (8-bit grey or sRGB, with or without alpha) with `mark` composed over it, with the same bands.

    The mark is scaled to `scale` of the output's width (kept inside the margins), its
    alpha multiplied by `opacity`, and placed at its anchor. A mark that would be
    under a pixel leaves the image as it is.
    """
    overlay = _loaded(mark.image)
    margin = round(mark.margin * image.width)
    room_w, room_h = image.width - 2 * margin, image.height - 2 * margin
    factor = min(mark.scale * image.width / overlay.width, room_w / overlay.width, room_h / overlay.height)
    size = round(overlay.width * factor), round(overlay.height * factor)
    if min(size) < 1:
        return image
    overlay = vips_step.resize(overlay, size)
    colour, alpha = overlay.extract_band(0, n=overlay.bands - 1), overlay.extract_band(overlay.bands - 1)
    if image.bands < 3:
        colour = colour.colourspace("b-w")
    overlay = colour.bandjoin((alpha * mark.opacity).cast("uchar"))
    fx, fy = ANCHORS[mark.position]
    x = margin + round(fx * (room_w - size[0]))
    y = margin + round(fy * (room_h - size[1]))
    # Composed over the mark's box only, then put back: compositing works in float, over every pixel it is given.
    box = image.crop(x, y, *size)
    marked = box.composite2(overlay, "over").extract_band(0, n=image.bands).cast("uchar")
    return image.insert(marked.copy(interpretation=image.interpretation), x, y)


@functools.lru_cache(maxsize=32)
def _loaded(path: Path) -> pyvips.Image:
    """The mark's pixels as 8-bit sRGB with alpha, decoded once per process (they are read by every render)."""
    vips = vips_step.module()
    # The settings let only marks with alpha through; libvips gives a palette's transparency as a band.
    return vips.Image.new_from_file(str(path), access="sequential").colourspace("srgb").cast("uchar").copy_memory()
