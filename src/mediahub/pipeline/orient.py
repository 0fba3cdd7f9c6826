"""Step 5: make pixels upright for every EXIF orientation (1-8)."""

from __future__ import annotations

from PIL import Image

_TRANSPOSE = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


def swaps_axes(orientation: int) -> bool:
    return orientation in (5, 6, 7, 8)


def display_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if swaps_axes(orientation) else (width, height)


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """Return the image as it should be displayed (the input is not kept)."""
    for method in _TRANSPOSE.get(orientation, ()):
        image = image.transpose(method)
    return image
