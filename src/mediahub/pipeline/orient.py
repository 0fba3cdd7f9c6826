"""Step 6 (orient): make pixels upright for every EXIF orientation (1-8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from mediahub.pipeline import vips as vips_step

if TYPE_CHECKING:
    import pyvips

_TRANSPOSE = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
# The same in libvips: its rot angles turn clockwise, Pillow's ROTATE_n counter-clockwise.
_VIPS_STEPS = {
    2: ("fliphor",),
    3: ("d180",),
    4: ("flipver",),
    5: ("d90", "fliphor"),
    6: ("d90",),
    7: ("d270", "fliphor"),
    8: ("d270",),
}


def swaps_axes(orientation: int) -> bool:
    return orientation in (5, 6, 7, 8)


def display_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if swaps_axes(orientation) else (width, height)


def upright(image: Image.Image | pyvips.Image, orientation: int) -> Image.Image | pyvips.Image:
    """Return the image (Pillow or libvips) as it should be displayed (the input is not kept)."""
    if vips_step.is_vips(image):
        for step in _VIPS_STEPS.get(orientation, ()):
            image = image.fliphor() if step == "fliphor" else image.flipver() if step == "flipver" else image.rot(step)
        return image
    for method in _TRANSPOSE.get(orientation, ()):
        image = image.transpose(method)
    return image
