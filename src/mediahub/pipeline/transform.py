"""One rendition made on request: a stored picture resized, cropped around its focal point, encoded.

Options (`Transform`) have one canonical text form (`w800-h600-cover-focal-q80-d2`), which is what a
signed URL signs; the stored result is named by what is rendered (`result_name`). Rendering decodes with shrink-on-load
(`thumbnail_buffer`: a 12 MP JPEG is decoded at 1/2, 1/4 or 1/8 of its size when the output
allows), applies the EXIF orientation, converts an embedded profile to sRGB, and never enlarges:
a box larger than the picture is scaled down to it, keeping the box's aspect. A render that runs
past its deadline is stopped inside libvips (`RenderTimeout`).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mediahub.errors import InvalidInput
from mediahub.formats import CONTENT_TYPES
from mediahub.pipeline import vips as vips_step
from mediahub.pipeline.variants import crop_box

if TYPE_CHECKING:
    import pyvips

FITS = ("cover", "contain", "inside", "fill")
GRAVITIES = ("focal", "smart", "center", "face")
DEFAULT_QUALITY = {"jpeg": 85, "webp": 80, "avif": 60, "png": 100}
MAX_DPR = 4.0

_TEXT = re.compile(
    r"^(?:w(?P<w>[1-9]\d{0,4}))?-?(?:h(?P<h>[1-9]\d{0,4}))?-(?P<fit>[a-z]+)-(?P<gravity>[a-z]+)"
    r"-q(?P<q>\d{1,3}|0)-d(?P<dpr>[1-4](?:\.\d{1,2})?)$")


class InvalidTransform(InvalidInput):
    """Options no transform can have (the message says which)."""

    default_code = "invalid_transform"


class RenderTimeout(Exception):
    """The render ran past its deadline and was stopped."""


class RenderFailed(Exception):
    """libvips could not read or write the picture (the message says why)."""


@dataclass(frozen=True)
class Transform:
    """What to make of a picture; `quality` 0 means the format's default."""

    width: int | None
    height: int | None
    fit: str = "cover"
    gravity: str = "focal"
    quality: int = 0
    dpr: float = 1.0

    def __post_init__(self) -> None:
        if self.width is None and self.height is None:
            raise InvalidTransform("give a width, a height or both")
        for side in (self.width, self.height):
            if side is not None and not 1 <= side <= 99_999:
                raise InvalidTransform("width and height are 1..99999")
        if self.fit not in FITS:
            raise InvalidTransform(f"fit is one of {', '.join(FITS)}")
        if self.gravity not in GRAVITIES:
            raise InvalidTransform(f"gravity is one of {', '.join(GRAVITIES)}")
        if not 0 <= self.quality <= 100:
            raise InvalidTransform("quality is 1..100")
        if not 1.0 <= self.dpr <= MAX_DPR or round(self.dpr, 2) != self.dpr:
            raise InvalidTransform(f"dpr is 1..{MAX_DPR:g}, in steps of 0.01")

    @property
    def text(self) -> str:
        """The canonical form: one text per distinct set of options (what a signed URL signs)."""
        sides = "-".join(part for part in (f"w{self.width}" if self.width else "",
                                           f"h{self.height}" if self.height else "") if part)
        return f"{sides}-{self.fit}-{self.gravity}-q{self.quality}-d{self.dpr:g}"

    @classmethod
    def parse(cls, text: str) -> Transform:
        """The transform `text` is the canonical form of; InvalidTransform for anything else."""
        match = _TEXT.match(text)
        if match is None:
            raise InvalidTransform("not a transform")
        parsed = cls(int(match["w"]) if match["w"] else None, int(match["h"]) if match["h"] else None,
                     match["fit"], match["gravity"], int(match["q"]), float(match["dpr"]))
        if parsed.text != text:
            raise InvalidTransform("not in canonical form")
        return parsed

    def result_name(self, width: int, height: int, fmt: str, basis: str = "") -> str:
        """The stored result's name for a source of width x height: a digest of what is rendered, so that
        options rendering the same pixels (a box beyond the picture, dpr 2 at half the width, the default
        quality spelt out, a fit or gravity that changes nothing) share one result. `basis`: what else the
        result depends on (a watermark's fingerprint). It fits the variant table's name column."""
        out_w, out_h = self.output_size(width, height)
        whole = round(width * out_h / height) == out_w or round(height * out_w / width) == out_h
        if whole or self.width is None or self.height is None or self.fit == "inside":
            shape = "whole"  # the picture at that size, with nothing cut, padded or stretched
        else:
            shape = f"{self.fit}-{self.gravity}" if self.fit == "cover" else self.fit
        text = f"{out_w}x{out_h}-{shape}-q{self.quality_for(fmt)}.{fmt}/{basis}"
        return "t-" + hashlib.sha256(text.encode()).hexdigest()[:40]

    def quality_for(self, fmt: str) -> int:
        return self.quality or DEFAULT_QUALITY[fmt]

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The result's size for an upright source of width x height (never larger than the source)."""
        box_w = round(self.width * self.dpr) if self.width else None
        box_h = round(self.height * self.dpr) if self.height else None
        if box_w is None or box_h is None:
            scale = min(1.0, box_w / width) if box_w else min(1.0, box_h / height)  # type: ignore[operator]
            return max(1, round(width * scale)), max(1, round(height * scale))
        if self.fit == "inside":
            scale = min(1.0, box_w / width, box_h / height)
            return max(1, round(width * scale)), max(1, round(height * scale))
        # cover, contain and fill answer the box itself, shrunk (same aspect) where it would enlarge
        shrink = max(1.0, box_w / width, box_h / height) if self.fit != "contain" else max(
            1.0, min(box_w / width, box_h / height))
        return max(1, round(box_w / shrink)), max(1, round(box_h / shrink))


@dataclass(frozen=True)
class Rendered:
    data: bytes
    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Encoding:
    """How results are encoded: progressive JPEG with optimised tables (and trellis quantisation: smaller at
    the same SSIM, for more CPU once, as a result is stored and then served many times); WebP and AVIF at a
    set effort."""

    jpeg_trellis: bool = True
    webp_effort: int = 5
    avif_effort: int = 0  # libvips' AVIF effort 0..9: 0 is the fastest, and 9 barely smaller for 700 times the time


class _Deadline:
    """Stops libvips' evaluation of an image once `seconds` have passed, and remembers that it did."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds
        self.expired = False

    def watch(self, image: pyvips.Image) -> pyvips.Image:
        image.set_progress(True)
        image.signal_connect("eval", self._check)
        return image

    def _check(self, target: pyvips.Image, _progress: object) -> None:
        if time.monotonic() > self.ends:
            self.expired = True
            target.set_kill(True)


def _flatten(image: pyvips.Image, fmt: str) -> pyvips.Image:
    if fmt == "jpeg" and image.hasalpha():
        return image.flatten(background=[255] * (image.bands - 1))
    return image


def _thumbnailer(source: bytes, source_size: tuple[int, int]) -> Callable[..., pyvips.Image]:
    """`thumbnail(width, height=..., **options)` over `source`: libvips' shrink-on-load thumbnail, in sRGB.

    Only a picture with a profile of its own is converted with it: libvips would otherwise convert sRGB to
    sRGB through a colour transform that costs as much as the shrinking decode. A CMYK picture without one
    is converted as the upload pipeline converts it (Pillow's formula), so that transforms show the colours
    its presets show, from a JPEG decoded at the largest 1/2^n scale that still covers the output.
    """
    vips = vips_step.module()
    header = vips.Image.new_from_buffer(source, "")
    if header.get_typeof("icc-profile-data"):
        return lambda width, **options: vips.Image.thumbnail_buffer(source, width, output_profile="srgb", **options)
    if header.interpretation != "cmyk":
        return lambda width, **options: vips.Image.thumbnail_buffer(source, width, **options)

    def cmyk(width: int, height: int, **options: object) -> pyvips.Image:
        shrink = 1
        while shrink < 8 and min(source_size[0] / (2 * shrink) / width, source_size[1] / (2 * shrink) / height) >= 1:
            shrink *= 2
        loaded = vips.Image.new_from_buffer(source, "", **({"shrink": shrink} if header.get("vips-loader").startswith(
            "jpegload") else {})).autorot()
        ink = loaded.extract_band(0, n=3).cast("float")
        key = 255 - loaded.extract_band(3).cast("float")
        rgb = ((255 - ink) * key / 255).cast("uchar").copy(interpretation="srgb")
        return rgb.thumbnail_image(width, height=height, **options)

    return cmyk


def _resize(source: bytes, size: tuple[int, int], options: Transform, source_size: tuple[int, int],
            focal: tuple[float, float] | None) -> pyvips.Image:
    out_w, out_h = size
    src_w, src_h = source_size
    thumbnail = _thumbnailer(source, source_size)
    if options.fit in ("fill", "inside") or options.width is None or options.height is None:
        image = thumbnail(out_w, height=out_h, size="force")
    elif options.fit == "contain":
        scale = min(out_w / src_w, out_h / src_h)
        inner = (max(1, min(out_w, round(src_w * scale))), max(1, min(out_h, round(src_h * scale))))
        image = thumbnail(inner[0], height=inner[1], size="force")
        background = [255] * image.bands if not image.hasalpha() else [255] * (image.bands - 1) + [0]
        image = image.gravity("centre", out_w, out_h, extend="background", background=background)
    elif options.gravity == "smart" or (options.gravity == "face" and focal is None):
        image = thumbnail(out_w, height=out_h, crop="attention")
    else:
        scale = max(out_w / src_w, out_h / src_h)
        resized = (max(out_w, math.ceil(src_w * scale - 1e-9)), max(out_h, math.ceil(src_h * scale - 1e-9)))
        image = thumbnail(resized[0], height=resized[1], size="force")
        point = (0.5, 0.5) if options.gravity == "center" or focal is None else focal
        left, top, _, _ = crop_box(image.width, image.height, out_w / out_h, point)
        image = image.crop(min(round(left), image.width - out_w), min(round(top), image.height - out_h), out_w, out_h)
    if image.interpretation not in ("srgb", "b-w"):
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def encode(image: pyvips.Image, fmt: str, quality: int, encoding: Encoding) -> bytes:
    image = _flatten(image, fmt)
    if fmt == "jpeg":
        return image.jpegsave_buffer(Q=quality, keep="none", optimize_coding=True, interlace=True,
                                     trellis_quant=encoding.jpeg_trellis)
    if fmt == "webp":
        return image.webpsave_buffer(Q=quality, effort=encoding.webp_effort, keep="none")
    if fmt == "avif":
        return image.heifsave_buffer(Q=quality, compression="av1", effort=encoding.avif_effort, keep="none")
    if fmt == "png":
        return image.pngsave_buffer(compression=6, keep="none")
    raise InvalidTransform(f"cannot encode {fmt}")


def render(source: bytes, source_size: tuple[int, int], options: Transform, fmt: str, *,
           focal: tuple[float, float] | None, seconds: float, encoding: Encoding = Encoding(),
           finish: Callable[[pyvips.Image], pyvips.Image] | None = None) -> Rendered:
    """`options` applied to `source` (an upright picture of `source_size`) and encoded as `fmt`.

    `finish` takes and returns the resized picture before it is encoded (a watermark). A libvips
    error (a damaged source) is raised as RenderFailed; a render past `seconds` as RenderTimeout.
    """
    size = options.output_size(*source_size)
    vips = vips_step.module()
    deadline = _Deadline(seconds)
    try:
        image = _resize(source, size, options, source_size, focal)
        if finish is not None:
            image = finish(image)
        data = encode(deadline.watch(image), fmt, options.quality_for(fmt), encoding)
    except vips.Error as exc:
        if deadline.expired:
            raise RenderTimeout(f"the render took longer than {seconds:g} s") from None
        raise RenderFailed(str(exc).strip().splitlines()[0] if str(exc).strip() else "libvips failed") from None
    return Rendered(data, fmt, image.width, image.height)
