"""libvips, where it beats Pillow: shrink-on-load JPEG decoding and resampling (Lanczos-3).

Pillow keeps the encoders where its own are faster (WebP, and JPEG from a Pillow
image) and the colour management, so images cross between the two here, as
packed 8-bit pixels, with no metadata. README's Performance section has the figures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import pyvips

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_BANDS = {mode: bands for bands, mode in _MODES.items()}
_vips = None


def module():
    """pyvips, set up once for a server: no operation cache (it would hold decoded files)."""
    global _vips
    if _vips is None:
        import pyvips

        pyvips.cache_set_max(0)
        # pyvips logs every operation at DEBUG, with images whose repr logs again: with DEBUG
        # on and two threads in libvips, two logging handlers' locks deadlocked (seen in a test).
        logging.getLogger("pyvips").setLevel(logging.INFO)
        _vips = pyvips
    return _vips


def is_vips(image: object) -> bool:
    return _vips is not None and isinstance(image, _vips.Image)


def from_pillow(image: Image.Image) -> pyvips.Image:
    """An 8-bit L, RGB or RGBA Pillow image as a libvips one (sRGB / grey, alpha last)."""
    vips = module()
    bands = _BANDS[image.mode]
    out = vips.Image.new_from_memory(image.tobytes(), image.size[0], image.size[1], bands, "uchar")
    return out.copy(interpretation="b-w" if bands == 1 else "srgb")


def to_pillow(image: pyvips.Image) -> Image.Image:
    """A 1-, 3- or 4-band 8-bit libvips image as Pillow L, RGB or RGBA."""
    return Image.frombytes(_MODES[image.bands], (image.width, image.height), image.write_to_memory())


def resize(image: pyvips.Image, size: tuple[int, int], box: tuple[int, int, int, int] | None = None) -> pyvips.Image:
    """Lanczos-3 to exactly `size` (alpha premultiplied), from the `box` region (left, top, width, height) if given.

    `thumbnail_image` with size=force, because plain `resize` rounds output sizes its
    own way; profiles are never applied here (pixels arrive in sRGB already).
    """
    if box is not None:
        image = image.crop(*box)
    if (image.width, image.height) == size:
        return image
    return image.thumbnail_image(size[0], height=size[1], size="force", no_rotate=True)
