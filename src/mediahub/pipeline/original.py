"""Step 6: the original as it will be served: upright, without metadata, not degraded.

Where the format allows and no rotation is needed, segments are removed
losslessly (JPEG, PNG, WebP, GIF: pixels byte-identical). Where the pixels must
turn, or the format cannot be edited here (HEIF, AVIF, TIFF, BMP, ICO), the
upright image is re-encoded at high quality: lossless sources to PNG (or
lossless WebP), lossy ones to JPEG (or WebP) at `ORIGINAL_QUALITY`, keeping
the ICC profile so colours do not shift.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, JpegImagePlugin

_LOSSLESS_SOURCES = {"png", "gif", "tiff", "bmp", "ico"}


@dataclass(frozen=True)
class EncodedOriginal:
    format: str  # jpeg png webp gif; when raw, the upload's own format
    data: bytes
    # The upload's own bytes, metadata and all: stored privately until a job stores the re-encode in its place.
    raw: bool = False


def jpeg_subsampling(image: Image.Image) -> int:
    """The source's chroma subsampling (-1 when unknown), kept when re-encoding."""
    try:
        return JpegImagePlugin.get_sampling(image) if image.format in ("JPEG", "MPO") else -1
    except Exception:  # odd sampling factors: let the encoder choose
        return -1


def reencode(image: Image.Image, source_format: str, *, quality: int, icc: bytes | None, subsampling: int,
             lossless_webp: bool) -> EncodedOriginal:
    """Encode the upright full-size image as the served original."""
    out = io.BytesIO()
    image.info = {}  # Pillow writes XMP it finds in info; the served original carries none
    extra = {"icc_profile": icc} if icc else {}
    if source_format == "webp":
        image.save(out, "WEBP", lossless=lossless_webp, quality=100 if lossless_webp else quality, **extra)
        return EncodedOriginal("webp", out.getvalue())
    if source_format in _LOSSLESS_SOURCES or "A" in image.getbands():
        image.save(out, "PNG", compress_level=6, **extra)
        return EncodedOriginal("png", out.getvalue())
    if image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")
    options = {"subsampling": subsampling} if subsampling >= 0 else {}
    image.save(out, "JPEG", quality=quality, optimize=True, **options, **extra)
    return EncodedOriginal("jpeg", out.getvalue())


def reencode_animation(image: Image.Image, *, quality: int) -> EncodedOriginal:
    """Animated sources that cannot be stripped in place become animated WebP."""
    frames, durations = [], []
    for index in range(image.n_frames):
        image.seek(index)
        frames.append(image.convert("RGBA"))
        durations.append(int(image.info.get("duration", 100) or 100))
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   quality=quality)
    return EncodedOriginal("webp", out.getvalue())
