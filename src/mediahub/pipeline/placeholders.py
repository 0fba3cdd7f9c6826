"""Placeholders: a BlurHash and a ThumbHash of a picture, for a page to show while the image loads.

Both are encoded from one copy of at most 100 px a side (ThumbHash takes no more),
resized from a whole-picture render the pipeline has made already (the one the
fingerprints come from), so a placeholder never costs a decode of its own. The
encoders are native (Rust) packages, fast enough to run inside the upload.
BlurHash has no alpha: the picture is flattened on white for it, as for the
fingerprints; ThumbHash keeps alpha.
"""

from __future__ import annotations

import base64
import io

import fast_blurhash
import thumbhash
from PIL import Image

from mediahub.pipeline.fingerprint import flatten
from mediahub.pipeline.normalise import to_display
from mediahub.pipeline.variants import fit_size

PLACEHOLDERS = "placeholders"  # the metadata key: {"blurhash": str, "thumbhash": str (standard base64)}
MAX_SIDE = 100  # ThumbHash's largest input
BLURHASH_COMPONENTS = 4  # along the longer side; the shorter side gets its share of them


def blurhash_components(width: int, height: int) -> tuple[int, int]:
    """(x, y) components in proportion to the picture: 4x3 for a 4:3 landscape, 3x4 portrait, 4x4 square."""
    shorter = max(1, round(BLURHASH_COMPONENTS * min(width, height) / max(width, height)))
    return (BLURHASH_COMPONENTS, shorter) if width >= height else (shorter, BLURHASH_COMPONENTS)


BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


def blurhash_average(blurhash: str) -> str | None:
    """The picture's average colour (`#rrggbb`), read from a BlurHash's DC term (its characters 2-5, an
    sRGB triple in base 83) without decoding it: a tile's colour while its image loads. None if malformed."""
    if len(blurhash) < 6 or any(char not in BASE83 for char in blurhash[2:6]):
        return None
    value = 0
    for char in blurhash[2:6]:
        value = value * 83 + BASE83.index(char)
    return f"#{value:06x}" if value < 1 << 24 else None


def placeholders(image: Image.Image) -> dict[str, str]:
    """The placeholders of a whole-picture render (8-bit L, RGB or RGBA, upright, sRGB)."""
    rgba = image.convert("RGBA")
    if max(rgba.size) > MAX_SIDE:
        rgba = rgba.resize(fit_size(rgba.width, rgba.height, MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    rgb = flatten(rgba)
    x_components, y_components = blurhash_components(rgb.width, rgb.height)
    return {
        "blurhash": fast_blurhash.encode(rgb.tobytes(), x_components, y_components, rgb.width, rgb.height),
        "thumbhash": base64.b64encode(thumbhash.rgba_to_thumb_hash(rgba.width, rgba.height, rgba.tobytes())).decode(),
    }


def placeholders_of_file(data: bytes) -> dict[str, str]:
    """The placeholders of a stored rendition (a variant's bytes), decoded no larger than needed."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # a JPEG decodes DCT-scaled, at least MAX_SIDE a side
        return placeholders(to_display(image))


def thumbhash_png(value: str) -> bytes | None:
    """The small picture a ThumbHash (standard base64) stands for, as PNG bytes; None for a value that is not one."""
    try:
        width, height, rgba = thumbhash.thumb_hash_to_rgba(base64.b64decode(value, validate=True))
    except ValueError:  # binascii.Error is one too
        return None
    out = io.BytesIO()
    Image.frombytes("RGBA", (width, height), bytes(rgba)).save(out, "PNG")
    return out.getvalue()
