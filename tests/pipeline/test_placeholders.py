"""Placeholders decode back to the picture they stand for: its colours, where they are, its shape."""

from __future__ import annotations

import base64
import io

import fast_blurhash
import numpy as np
import pytest
import thumbhash
from PIL import Image

from mediahub.pipeline.placeholders import (
    blurhash_average,
    blurhash_components,
    placeholders,
    placeholders_of_file,
    thumbhash_png,
)

RED, BLUE, GREEN = (220, 30, 30), (30, 40, 210), (40, 180, 60)


def halves(size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    """A picture whose left half is one colour and right half another."""
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def blurhash_pixels(value: str, width: int = 32, height: int = 24) -> np.ndarray:
    return np.frombuffer(fast_blurhash.decode(value, width, height), np.uint8).reshape(height, width, 3)


def thumbhash_pixels(value: str) -> np.ndarray:
    width, height, rgba = thumbhash.thumb_hash_to_rgba(base64.b64decode(value, validate=True))
    return np.frombuffer(rgba, np.uint8).reshape(height, width, 4)


def mean(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("colour", [RED, BLUE, GREEN])
def test_a_plain_picture_gives_placeholders_of_its_colour(colour):
    made = placeholders(Image.new("RGB", (400, 300), colour))
    assert np.abs(mean(blurhash_pixels(made["blurhash"])) - colour).max() < 8
    assert np.abs(mean(thumbhash_pixels(made["thumbhash"])) - colour).max() < 8


def test_colours_stay_where_they_are():
    made = placeholders(halves((400, 300), RED, BLUE))
    for pixels in (blurhash_pixels(made["blurhash"]), thumbhash_pixels(made["thumbhash"])):
        width = pixels.shape[1]
        left, right = mean(pixels[:, : width // 4]), mean(pixels[:, -width // 4:])
        assert left[0] > left[2] + 80, "the left of the placeholder is red"
        assert right[2] > right[0] + 80, "the right of the placeholder is blue"


@pytest.mark.parametrize(("size", "components"), [
    ((400, 300), (4, 3)), ((300, 400), (3, 4)), ((256, 256), (4, 4)), ((1600, 400), (4, 1)), ((1, 1), (4, 4)),
])
def test_blurhash_components_follow_the_aspect(size, components):
    assert blurhash_components(*size) == components
    x, y = components
    assert len(placeholders(Image.new("RGB", size, RED))["blurhash"]) == 4 + 2 * x * y  # the hash's own size


@pytest.mark.parametrize("size", [(400, 200), (150, 400), (64, 64), (37, 5)])
def test_thumbhash_keeps_the_shape(size):
    made = placeholders(Image.new("RGB", size, GREEN))
    ratio = thumbhash.thumb_hash_to_approximate_aspect_ratio(base64.b64decode(made["thumbhash"]))
    assert ratio == pytest.approx(size[0] / size[1], rel=0.2)


def test_transparency_is_kept_by_thumbhash_and_white_for_blurhash():
    image = Image.new("RGBA", (200, 150), (*RED, 255))
    image.paste((0, 0, 0, 0), (100, 0, 200, 150))
    made = placeholders(image)
    pixels = thumbhash_pixels(made["thumbhash"])
    width = pixels.shape[1]
    assert pixels[:, : width // 4, 3].mean() > 200 and pixels[:, -width // 4:, 3].mean() < 60
    right = mean(blurhash_pixels(made["blurhash"])[:, -8:])
    assert right.min() > 200, "transparent pixels are white in the BlurHash"


def test_grey_pictures_are_accepted():
    made = placeholders(Image.new("L", (300, 200), 90))
    assert np.abs(mean(thumbhash_pixels(made["thumbhash"])) - 90).max() < 8


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_stored_rendition_gives_the_placeholders_of_its_pixels(fmt):
    picture = halves((800, 600), GREEN, RED)
    out = io.BytesIO()
    picture.save(out, fmt, quality=90)
    from_file = placeholders_of_file(out.getvalue())
    expected = mean(thumbhash_pixels(placeholders(picture)["thumbhash"]))
    assert np.abs(mean(thumbhash_pixels(from_file["thumbhash"])) - expected).max() < 6
    assert np.abs(mean(blurhash_pixels(from_file["blurhash"])) - mean(np.asarray(picture))).max() < 10


def test_bytes_that_are_no_picture_are_an_error():
    with pytest.raises(OSError):
        placeholders_of_file(b"not a picture at all")


def test_a_thumbhash_renders_as_a_png_of_its_picture_and_junk_as_none():
    png = thumbhash_png(placeholders(halves((120, 80), RED, BLUE))["thumbhash"])
    assert png is not None
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    height, width, _ = picture.shape
    assert width > height, "the picture's shape"
    assert np.abs(picture[:, : width // 4].reshape(-1, 3).mean(axis=0) - RED).max() < 50
    assert np.abs(picture[:, -width // 4:].reshape(-1, 3).mean(axis=0) - BLUE).max() < 50
    for junk in ("", "not base64!", base64.b64encode(b"\x00").decode()):
        assert thumbhash_png(junk) is None, junk


@pytest.mark.parametrize("colour", [(200, 30, 40), (10, 120, 250), (0, 0, 0), (255, 255, 255)])
def test_the_average_colour_is_read_from_the_blurhash(colour: tuple[int, int, int]) -> None:
    average = blurhash_average(placeholders(Image.new("RGB", (64, 48), colour))["blurhash"])
    assert average is not None and len(average) == 7
    assert max(abs(int(average[1 + 2 * n:3 + 2 * n], 16) - colour[n]) for n in range(3)) <= 2


@pytest.mark.parametrize("value", ["", "L", "LE HV6nW", "LE\u00e9V6nWB2yk8", "LE~~~~"])
def test_a_malformed_blurhash_has_no_average(value: str) -> None:
    assert blurhash_average(value) is None
