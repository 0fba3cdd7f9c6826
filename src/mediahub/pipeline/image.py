"""Steps 3-8 for an image: structure -> probe -> exif -> decode + orient -> original -> variants (crops around the
focal point) -> fingerprints."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from mediahub.config import VariantSpec, Watermark
from mediahub.pipeline import background
from mediahub.pipeline import exif as exif_step
from mediahub.pipeline import vips as vips_step
from mediahub.pipeline import watermark as watermark_step
from mediahub.pipeline.fingerprint import Fingerprint, perceptual_hash, pixel_sha256
from mediahub.pipeline.focal import FocalPoint, Focus, locate
from mediahub.pipeline.normalise import to_display
from mediahub.pipeline.orient import display_size, swaps_axes, upright
from mediahub.pipeline.original import EncodedOriginal, jpeg_subsampling, reencode, reencode_animation
from mediahub.pipeline.placeholders import PLACEHOLDERS, placeholders
from mediahub.pipeline.probe import (
    ImageLimits,
    check_jpeg_data,
    check_limits,
    decode,
    load_png,
    open_image,
    reduce_jpeg,
)
from mediahub.pipeline.sniff import Sniffed
from mediahub.pipeline.strip import STRIPPERS, judge_trailing, with_orientation
from mediahub.pipeline.structure import check_structure
from mediahub.pipeline.variants import Encoded, EncodeOptions, encode_all, output_size, render_all, source_box

if TYPE_CHECKING:
    import pyvips


ORIENTED = "oriented"  # metadata "original": the bytes as uploaded, stripped, with their orientation tag
RAW = "raw"  # metadata "original": the upload as sent, never served; the variants job re-encodes it


@dataclass(frozen=True)
class ImageOptions:
    limits: ImageLimits
    sizes: tuple[VariantSpec, ...]
    encode: EncodeOptions
    original_quality: int
    strip_gps: bool
    # Variants of a source that must be decoded in full (not a JPEG shrunk on load) are left to a job:
    # the caller waits only for the decode and the fingerprints.
    defer_variants: bool = False
    watermark: Watermark | None = None  # the entity field's mark, over the renders it applies to
    # Where crops are centred (a job re-rendering a stored item); None: found in the picture (`focal.locate`).
    focal: FocalPoint | None = None


@dataclass
class ProcessedImage:
    original: EncodedOriginal
    width: int  # as displayed
    height: int
    variants: list[Encoded]  # empty when deferred
    phash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # Duplicate detection: digest of the upright display pixels, and the perceptual fingerprint.
    pixel_sha256: str | None = None
    fingerprint: Fingerprint | None = None
    variants_deferred: bool = False


def _metadata(sniffed: Sniffed, header: Any, summary: exif_step.ExifSummary, strip_gps: bool,
              original_mode: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source_format": sniffed.format,
        "source_mode": header.mode,
        "frames": header.frames,
        "animated": header.animated,
        "stored_width": header.width,
        "stored_height": header.height,
        "orientation": summary.orientation,
        "original": original_mode,
    }
    if summary.camera:
        meta["exif"] = summary.camera
    if summary.gps and not strip_gps:
        meta["gps"] = summary.gps
    meta["gps_stripped"] = summary.has_gps_tags and strip_gps
    return meta


def process_image(path: Path, sniffed: Sniffed, options: ImageOptions) -> ProcessedImage:
    """Every output of one image."""
    *_, processed = image_outputs(path, sniffed, options)
    return processed


def image_outputs(path: Path, sniffed: Sniffed, options: ImageOptions) -> Iterator[EncodedOriginal | ProcessedImage]:
    """The outputs of one image as they are known: first the stripped original, when it
    is kept as it is (long before the pixels are done, so a caller can store it
    meanwhile), then the `ProcessedImage` (which holds the original too)."""
    check_structure(path, sniffed.format, options.limits)  # before any parser reads more than the header
    image = open_image(path, sniffed.format)
    try:
        header = check_limits(image, options.limits)
        summary = exif_step.read_exif(image)
        # Structure and trailing-data checks run for every such file, rotated or not; beside the decode.
        # A turned JPEG keeps its bytes too, with the orientation tag as its only metadata: viewers apply
        # it, and the pixels are neither decoded in full nor re-encoded (no generation loss either).
        tagged = sniffed.format == "jpeg" and summary.orientation != 1 and not header.animated
        upright_already = summary.orientation == 1 or header.animated or tagged  # so stripped bytes can be kept
        stripped = None
        if sniffed.format in STRIPPERS:
            stripped = background.submit(_strip, path, sniffed.format)
        icc = image.info.get("icc_profile")
        subsampling = jpeg_subsampling(image)
        lossless_webp = sniffed.format == "webp" and "lossless" in str(image.info.get("compression", ""))
        width, height = display_size(header.width, header.height, summary.orientation)
        # The smallest decode every variant can come from (upright, then as stored).
        box = source_box(width, height, options.sizes)
        stored_box = (box[1], box[0]) if swaps_axes(summary.orientation) else box
        reduced = None
        if sniffed.format == "jpeg" and not header.animated and header.mode in ("RGB", "L"):
            # libvips shrink-on-load; None -> Pillow below. Also when the original is re-encoded
            # from a full decode: a second, shrunk decode is cheaper than resizing from full size.
            reduced = reduce_jpeg(path, stored_box)
        if sniffed.format == "jpeg" and reduced is None:  # Pillow's decode does not notice data cut short
            check_jpeg_data(path)
        # The strip's verdict (and its errors, the ones users see for a broken file) before any Pillow decode.
        lossless = stripped.result() if stripped is not None else None
        keep_bytes = lossless is not None and upright_already
        # A full decode's variants, and its re-encoded original, are left to a job: the upload is stored as sent.
        deferred = options.defer_variants and reduced is None and not header.animated
        raw = deferred and not keep_bytes
        if keep_bytes and tagged:
            lossless = with_orientation(lossless, summary.orientation)
        if keep_bytes:
            original = EncodedOriginal(sniffed.format, lossless)
            yield original
        elif raw:
            original = EncodedOriginal(sniffed.format, path.read_bytes(), raw=True)
            yield original
        decoded = None
        if reduced is None or not keep_bytes:
            # A re-encoded original needs every pixel; otherwise decode (JPEG: DCT-scaled) to the box.
            pixels = load_png(path, image) if sniffed.format == "png" else None
            decoded = upright(pixels or decode(image, stored_box if keep_bytes else None), summary.orientation)
        encoding = None
        if keep_bytes:
            mode = ORIENTED if tagged else "stripped"
        elif raw:
            mode = RAW
        elif header.animated:
            original = reencode_animation(image, quality=options.original_quality)
            mode = "reencoded"
        else:
            mode = "reencoded"
        if reduced is None:
            display = to_display(decoded)  # first: the re-encode clears the image's info (its ICC profile)
        elif icc:  # Pillow's colour management converts to sRGB, on the small image
            display = vips_step.to_pillow(upright(reduced, summary.orientation))
            display.info["icc_profile"] = icc
            display = to_display(display)
        else:  # already 8-bit grey/RGB: stays in libvips, in memory (every render reads it)
            display = upright(reduced, summary.orientation).copy_memory()
        if mode == "reencoded" and not header.animated:
            # Beside the fingerprints and renders, which only read the same pixels (Pillow's encoder drops the GIL).
            encoding = background.submit(functools.partial(
                reencode, decoded, sniffed.format, quality=options.original_quality, icc=icc,
                subsampling=subsampling, lossless_webp=lossless_webp))
        pixel_digest = background.submit(pixel_sha256, display)  # beside the renders and encodes
        if deferred:
            renders = {}
            hash_source_image = hash_render(display, options.sizes)
            focus = None if options.focal else locate(hash_source_image)
        else:
            renders, hash_source_image, focus = render_focused(display, options.sizes, options.focal,
                                                               full_size=(width, height))
        metadata = {**_metadata(sniffed, header, summary, options.strip_gps, mode),
                    PLACEHOLDERS: placeholders(hash_source_image), **watermark_step.metadata(options.watermark)}
        if focus is not None:
            metadata.update(focus.metadata())
        yield ProcessedImage(
            original=encoding.result() if encoding is not None else original,
            width=width,
            height=height,
            variants=encode_all(renders, options.sizes, options.encode, options.watermark),
            phash=perceptual_hash(hash_source_image),
            metadata=metadata,
            pixel_sha256=pixel_digest.result(),
            fingerprint=Fingerprint.of(hash_source_image),
            variants_deferred=deferred,
        )
    finally:
        image.close()


def _strip(path: Path, fmt: str) -> bytes | None:
    """The file without metadata, or None when it must be re-encoded (see `judge_trailing`)."""
    return judge_trailing(STRIPPERS[fmt](path.read_bytes()), fmt)


def render_focused(display: Image.Image | pyvips.Image, sizes: tuple[VariantSpec, ...], focal: FocalPoint | None,
                   full_size: tuple[int, int] | None = None
                   ) -> tuple[dict[str, pyvips.Image], Image.Image, Focus | None]:
    """Every size rendered, the crops around `focal` or, without one, around the focal point found in the
    whole-picture render `hash_source` picks; that render; and what was found (None: `focal` was given)."""
    source = display if vips_step.is_vips(display) else vips_step.from_pillow(display)  # once, for both calls
    whole = render_all(source, tuple(s for s in sizes if not s.crop), full_size)
    hash_image = hash_source(whole, sizes, display)
    focus = None if focal else locate(hash_image)
    point = focal or focus.point
    crops = render_all(source, tuple(s for s in sizes if s.crop), full_size, point.xy, earlier=whole.values())
    return {**whole, **crops}, hash_image, focus


def hash_source(renders: dict[str, pyvips.Image], sizes: tuple[VariantSpec, ...],
                display: Image.Image | pyvips.Image) -> Image.Image:
    """A whole-picture render of about 400 px, as Pillow: large enough for its pHash to match the full image's closely.

    The largest whole render when none reaches 256 px (a small picture); the display
    pixels themselves only when every size is a crop.
    """
    whole = [renders[s.name] for s in sizes if not s.crop]
    if not whole:
        return vips_step.to_pillow(display) if vips_step.is_vips(display) else display
    return vips_step.to_pillow(_hash_sized(whole, lambda img: (img.width, img.height)))


def hash_render(display: Image.Image, sizes: tuple[VariantSpec, ...]) -> Image.Image:
    """What `hash_source` picks, rendered alone from a full Pillow decode (when the variants are deferred).

    Pillow reduces by whole factors first (`reducing_gap`): a few times cheaper than a
    libvips copy of the full decode, and the pHash it gives differs by a bit or two at most.
    """
    whole = [output_size(display.width, display.height, s) for s in sizes if not s.crop]
    if not whole:
        return display
    size = _hash_sized(whole, lambda wh: wh)
    return display.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _hash_sized(candidates: list, size_of: Callable[[Any], tuple[int, int]]):
    """The smallest candidate reaching 256 px, else the largest."""
    def area(candidate) -> int:
        width, height = size_of(candidate)
        return width * height

    suitable = [c for c in candidates if max(size_of(c)) >= 256]
    return min(suitable, key=area) if suitable else max(candidates, key=area)
