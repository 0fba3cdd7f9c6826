"""The naive reference: what a straightforward Pillow upload handler does.

Full decode, `ImageOps.exif_transpose`, SHA-256 of the bytes, imagehash pHash
of the full image, then a 150 px square thumbnail (`ImageOps.fit`) and fits to
400, 800 and 1600 px, each resized from the FULL image with LANCZOS, and each
saved as JPEG q85. Nothing of MediaHub is used here.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import imagehash
from PIL import Image, ImageOps

LANCZOS = Image.Resampling.LANCZOS
FITS = (("small", 400), ("medium", 800), ("large", 1600))
THUMBNAIL = 150
QUALITY = 85

_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _registered = True


def fit(width: int, height: int, box: int) -> tuple[int, int]:
    scale = min(1.0, box / width, box / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def renders(path: Path) -> tuple[str, str, dict[str, Image.Image]]:
    """(sha256, phash, {name: rendered image}) the naive way."""
    _register()
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    if image.mode != "RGB":  # JPEG output: alpha and palettes flattened the plain way
        image = image.convert("RGB")
    phash = str(imagehash.phash(image))
    made = {"thumbnail": ImageOps.fit(image, (THUMBNAIL, THUMBNAIL), LANCZOS)}
    for name, box in FITS:
        made[name] = image.resize(fit(*image.size, box), LANCZOS)
    return digest, phash, made


def process_one(image: Image.Image) -> bytes:
    """One rendition as the naive handler stores it (JPEG q85)."""
    return _jpeg(image)


def process(path: Path) -> dict[str, bytes]:
    """The whole naive upload: every rendition as JPEG bytes."""
    _digest, _phash, made = renders(path)
    return {name: _jpeg(img) for name, img in made.items()}
