"""Pixels to a displayable mode in sRGB, whatever the source stored.

Variants are served without ICC profiles, so colour is converted to sRGB here
once; 16-bit and CMYK sources are brought down to 8-bit RGB/L properly.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms

_SRGB = ImageCms.createProfile("sRGB")
_HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _high_bit_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    scale = 256 if values.max(initial=0) > 255 else 1
    gray = Image.fromarray(np.clip(values // scale if scale > 1 else values, 0, 255).astype(np.uint8), "L")
    transparency = image.info.get("transparency")
    if isinstance(transparency, int):
        alpha = Image.fromarray(np.where(values == transparency, 0, 255).astype(np.uint8), "L")
        gray = Image.merge("RGBA", (gray, gray, gray, alpha))
    return gray


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert with the embedded profile; a broken profile falls back to plain conversion."""
    target = "RGBA" if "A" in image.getbands() else "RGB"
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if image.mode not in ("RGB", "RGBA", "CMYK", "L"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            out_mode = "L" if image.mode == "L" else target
            return ImageCms.profileToProfile(image, source, _SRGB, outputMode=out_mode)
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass
    if image.mode == "L":
        return image
    return image.convert(target)


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def to_display(image: Image.Image) -> Image.Image:
    """An 8-bit L, RGB or RGBA image in sRGB; alpha is kept only where it is used."""
    icc = image.info.get("icc_profile")
    if image.mode in _HIGH_BIT_MODES:
        image = _high_bit_to_l(image)
    elif image.mode in ("1", "P", "PA", "LA", "La", "RGBa", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGBA" if has_alpha(image) else ("L" if image.mode == "1" else "RGB"))
    if image.mode not in ("L", "RGB", "RGBA") or icc:
        image = _to_srgb(image, icc)
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB")
    image.info = {}  # nothing of the source's metadata (XMP, EXIF, ICC) may reach a variant
    return image
