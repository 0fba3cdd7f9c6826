"""Synthetic pictures whose subject is known, for focal points and crops checked at pixel level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tests.support.corpus import CORPUS_DIR

HOPPER = CORPUS_DIR / "images/good/jpeg_hopper.jpg"  # Grace Hopper's portrait: a frontal face
RED = (230, 20, 20)
DISC = 0.08  # the disc's radius, of the picture's height
DISC_IN_SQUARE = np.pi * DISC ** 2  # its share of a square as high as the picture
THIRDS = ((255, 0, 0), (0, 160, 0), (0, 0, 255))  # left, middle and right thirds of `thirds`


def grey_noise(size: tuple[int, int], seed: int = 3) -> Image.Image:
    """A dull background: grey with faint grain, nothing in it that draws attention."""
    values = np.random.default_rng(seed).normal(110, 6, (size[1], size[0])).clip(0, 255).astype(np.uint8)
    return Image.fromarray(values, "L").convert("RGB")


def red_disc(size: tuple[int, int], centre: tuple[float, float]) -> Image.Image:
    """A red disc (radius `DISC`) at `centre` (fractions of the picture) on `grey_noise`."""
    image = grey_noise(size)
    radius = size[1] * DISC
    cx, cy = centre[0] * size[0], centre[1] * size[1]
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=RED)
    return image


def thirds(height: int = 400) -> Image.Image:
    """Three squares side by side in the colours of `THIRDS`: a square crop shows one of them."""
    picture = Image.new("RGB", (3 * height, height))
    for n, colour in enumerate(THIRDS):
        picture.paste(colour, (n * height, 0, (n + 1) * height, height))
    return picture


PORTRAIT = 0.8  # the portrait's side in `portrait_at_right`, of the picture's height


def portrait_at_right(height: int = 300) -> Image.Image:
    """`HOPPER` in the bottom-right corner of a 3:1 grey picture, `PORTRAIT` of its height: a square crop
    centred on the face is stopped by the right edge, so it is exactly the picture's rightmost square."""
    canvas = grey_noise((3 * height, height))
    side = round(height * PORTRAIT)
    portrait = Image.open(HOPPER).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    canvas.paste(portrait, (3 * height - side, height - side))
    return canvas


def right_square(image: Image.Image, side: int) -> np.ndarray:
    """The picture's rightmost square, at `side` pixels."""
    square = image.crop((image.width - image.height, 0, image.width, image.height))
    return np.asarray(square.resize((side, side), Image.Resampling.LANCZOS)).astype(int)


def save_jpeg(image: Image.Image, path: Path, orientation: int = 1) -> Path:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=92, exif=exif)
    return path


def red_share(image: Image.Image) -> float:
    pixels = np.asarray(image.convert("RGB")).astype(int)
    red = (pixels[..., 0] > 170) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)
    return float(red.mean())


def colour_distance(image: Image.Image, colour: tuple[int, int, int]) -> float:
    """Mean over the pixels of the largest channel difference from `colour`."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return float(np.abs(pixels - np.array(colour)).max(axis=2).mean())
