"""Step 7: the perceptual hash of the upright picture (the byte digests come from intake)."""

from __future__ import annotations

import imagehash
from PIL import Image


def perceptual_hash(image: Image.Image) -> str:
    """64-bit pHash as 16 hex digits; alpha is flattened so transparency does not count."""
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    return str(imagehash.phash(image))
