"""Focal points at pixel level: found at upload (faces, else attention), upright, and kept in every crop."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mediahub.pipeline.focal import FocalPoint, faces_centre, locate
from mediahub.pipeline.image import ImageOptions, ProcessedImage, process_image
from mediahub.pipeline.sniff import sniff
from mediahub.pipeline.variants import crop_box
from mediahub.pipeline.video import VideoOptions, process_video
from tests.support.corpus import CORPUS_DIR
from tests.support.scenes import (
    DISC_IN_SQUARE,
    PORTRAIT,
    THIRDS,
    colour_distance,
    portrait_at_right,
    red_disc,
    red_share,
    right_square,
    save_jpeg,
    thirds,
)
from tests.support.videos import make_clip


ON_PORTRAIT = 1 - PORTRAIT / 3  # where the portrait begins, of the width


def _fast(options: ImageOptions) -> ImageOptions:
    return replace(options, encode=replace(options.encode, webp=False, avif=False))


def process(path: Path, options: ImageOptions) -> ProcessedImage:
    return process_image(path, sniff(path.read_bytes()[:4096]), options)


def variant(processed: ProcessedImage, name: str) -> Image.Image:
    data = next(v.data for v in processed.variants if v.name == name and v.format == "jpeg")
    return Image.open(io.BytesIO(data)).convert("RGB")


@given(st.integers(1, 5000), st.integers(1, 5000), st.floats(0.1, 10), st.floats(0, 1), st.floats(0, 1))
def test_crop_box_is_inside_of_the_aspect_and_centred_on_the_focal_point_where_it_can_be(w, h, aspect, fx, fy):
    left, top, right, bottom = crop_box(w, h, aspect, (fx, fy))
    assert -1e-6 <= left <= right <= w + 1e-6 and -1e-6 <= top <= bottom <= h + 1e-6
    assert right - left == pytest.approx(w, rel=1e-9) or bottom - top == pytest.approx(h, rel=1e-9)
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    # Centred on the point, unless an edge stops the window first.
    assert centre_x == pytest.approx(fx * w, abs=1e-6) or left == pytest.approx(0, abs=1e-6) \
        or right == pytest.approx(w, abs=1e-6)
    assert centre_y == pytest.approx(fy * h, abs=1e-6) or top == pytest.approx(0, abs=1e-6) \
        or bottom == pytest.approx(h, abs=1e-6)
    assert left - 1e-6 <= fx * w <= right + 1e-6 and top - 1e-6 <= fy * h <= bottom + 1e-6


def test_a_bright_object_off_centre_is_the_focal_point_and_the_thumbnail_shows_it(tmp_path, options):
    size, centre = (1200, 600), (0.85, 0.3)
    path = save_jpeg(red_disc(size, centre), tmp_path / "disc.jpg")
    left, _, right, _ = crop_box(*size, 1.0)
    assert not left <= centre[0] * size[0] <= right, "a centred square would miss the disc"

    processed = process(path, _fast(options))

    point = processed.metadata["focal_point"]
    assert point["source"] == "attention" and processed.metadata["faces"] == []
    assert point["x"] == pytest.approx(centre[0], abs=0.06) and point["y"] == pytest.approx(centre[1], abs=0.08)
    thumbnail = variant(processed, "thumbnail")
    assert thumbnail.size == (150, 150)
    assert red_share(thumbnail) > 0.9 * DISC_IN_SQUARE, "the whole disc is in the square thumbnail"


def test_the_focal_point_is_that_of_the_upright_picture(tmp_path, options):
    upright = red_disc((900, 600), (0.15, 0.8))
    # Orientation 6: the viewer turns the stored pixels 90 degrees clockwise, so they are stored turned back.
    path = save_jpeg(upright.transpose(Image.Transpose.ROTATE_90), tmp_path / "turned.jpg", orientation=6)

    processed = process(path, _fast(options))

    assert (processed.width, processed.height) == (900, 600)
    point = processed.metadata["focal_point"]
    assert point["x"] == pytest.approx(0.15, abs=0.06) and point["y"] == pytest.approx(0.8, abs=0.08)
    assert red_share(variant(processed, "thumbnail")) > 0.9 * DISC_IN_SQUARE


@pytest.mark.parametrize("focal, colour", [((0.0, 0.5), THIRDS[0]), ((1.0, 0.5), THIRDS[2])])
def test_a_given_focal_point_moves_the_crop_to_its_side(tmp_path, options, focal, colour):
    path = save_jpeg(thirds(), tmp_path / "thirds.jpg")

    processed = process(path, replace(_fast(options), focal=FocalPoint(*focal, "manual")))

    assert "focal_point" not in processed.metadata, "a given point is not searched for, nor recorded again"
    assert colour_distance(variant(processed, "thumbnail"), colour) < 12, "the whole thumbnail is that side's colour"


def test_a_face_is_the_focal_point_and_the_thumbnail_is_cropped_around_it(tmp_path, options):
    scene = portrait_at_right()
    path = save_jpeg(scene, tmp_path / "portrait-right.jpg")

    processed = process(path, _fast(options))

    point, faces = processed.metadata["focal_point"], processed.metadata["faces"]
    assert point["source"] == "faces" and len(faces) == 1
    x, y, w, h = faces[0]
    assert ON_PORTRAIT <= x and x + w <= 1.0 and 1 - PORTRAIT <= y and y + h <= 1.0, "the box lies on the portrait"
    assert point["x"] == pytest.approx(x + w / 2) and point["y"] == pytest.approx(y + h / 2)
    assert np.abs(np.asarray(variant(processed, "thumbnail")).astype(int) - right_square(scene, 150)).mean() < 6


def test_faces_of_the_cascade_alone_that_are_no_faces_are_left_out():
    # A person seen from behind: the bare cascade finds a "face" in the ground at their feet.
    picture = Image.open(CORPUS_DIR / "images/good/orient_portrait_1.jpg").convert("RGB")
    picture.thumbnail((400, 400))
    focus = locate(picture)
    assert focus.faces == () and focus.point.source == "attention"


def test_a_group_keeps_every_face_of_similar_size_and_ignores_much_smaller_ones():
    two_people = [(0.1, 0.2, 0.2, 0.3), (0.6, 0.3, 0.2, 0.3)]
    assert faces_centre(two_people) == pytest.approx((0.45, 0.4))
    background = (0.9, 0.9, 0.05, 0.05)  # under a quarter of the largest face's area
    assert faces_centre([*two_people, background]) == pytest.approx((0.45, 0.4))


def test_a_videos_poster_gives_its_focal_point_and_its_thumbnail_crop(tmp_path, options):
    path = tmp_path / "clip.mp4"
    make_clip(path)  # 64x32, the top-left quarter red: a centred square would show half of the red

    processed = process_video(path, sniff(path.read_bytes()[:4096]), VideoOptions(_fast(options), max_duration=60))

    point = processed.metadata["focal_point"]
    assert point["source"] == "attention" and point["x"] < 0.5 and point["y"] < 0.5
    thumbnail = next(v for v in processed.variants if v.name == "thumbnail" and v.format == "jpeg")
    assert (thumbnail.width, thumbnail.height) == (32, 32)
    # The whole red quarter is half the square (less its blurred edges); a centred square holds a quarter.
    assert red_share(Image.open(io.BytesIO(thumbnail.data))) > 0.33
