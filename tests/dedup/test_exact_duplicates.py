"""The exact duplicate signals (same bytes, same pixels) on their own.

Flat pictures (a blank page, a grey card, a black first frame) are left out of
perceptual matching on purpose: their pHash is noise. Only the exact signals
catch their copies, so these tests upload flat pictures, on every database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mediahub.errors import Conflict
from mediahub.pipeline.fingerprint import Fingerprint
from tests.media.conftest import make  # noqa: F401 - the fixture: every database, not tests/dedup's SQLite one
from tests.media.helpers import row_count, stored_keys, upload
from tests.support.videos import make_clip


def near_blank() -> Image.Image:
    """A grey card with a faint mark: flat to the fingerprint, so never matched perceptually."""
    image = Image.new("RGB", (96, 64), (128, 128, 128))
    image.paste((131, 129, 128), (40, 20, 44, 24))
    return image


def save(image: Image.Image, path: Path, fmt: str) -> Path:
    image.save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


@pytest.fixture
def grey_jpeg(tmp_path) -> Path:
    path = save(near_blank(), tmp_path / "grey.jpg", "JPEG")
    assert Fingerprint.of(Image.open(path)).flat, "the premise: no perceptual match is possible"
    return path


@pytest.fixture
def same_pixels_png(grey_jpeg, tmp_path) -> Path:
    """The JPEG's decoded pixels as a PNG: other bytes, the same picture exactly."""
    with Image.open(grey_jpeg) as decoded:
        path = save(decoded.convert("RGB"), tmp_path / "grey.png", "PNG")
    assert path.read_bytes() != grey_jpeg.read_bytes()
    return path


def assert_refused(runtime, path: Path, first) -> None:
    rows, keys = row_count(runtime), stored_keys(runtime)
    with pytest.raises(Conflict) as caught:
        upload(runtime, path)
    assert caught.value.code == "duplicate"
    assert caught.value.details == {"duplicate_of": first.public_id, "duplicate_id": first.id, "distance": 0}
    assert row_count(runtime) == rows and stored_keys(runtime) == keys


def test_the_same_bytes_of_a_flat_picture_are_refused(make, grey_jpeg):
    runtime = make()
    first = upload(runtime, grey_jpeg)
    assert_refused(runtime, grey_jpeg, first)


def test_the_same_pixels_of_a_flat_picture_in_other_bytes_are_refused(make, grey_jpeg, same_pixels_png):
    runtime = make()
    first = upload(runtime, grey_jpeg)
    assert_refused(runtime, same_pixels_png, first)


def test_each_exact_signal_is_named_as_the_reason(make, grey_jpeg, same_pixels_png):
    """Under DEDUP_POLICY=flag the reason is recorded: each signal must find its copy by itself."""
    runtime = make(dedup_policy="flag")
    first = upload(runtime, grey_jpeg)
    copy = upload(runtime, grey_jpeg)
    recoded = upload(runtime, same_pixels_png)
    assert (copy.meta["duplicate_of"], copy.meta["duplicate_reason"]) == (first.public_id, "sha256")
    assert (recoded.meta["duplicate_of"], recoded.meta["duplicate_reason"]) == (first.public_id, "pixels")


def test_the_same_bytes_of_a_video_with_a_black_poster_are_refused(make, tmp_path):
    """A video has no pixel digest and a black poster is flat: only the byte digest catches its copy."""
    runtime = make(video_transcode=False)
    clip = tmp_path / "dark.mp4"
    make_clip(clip, colour=(0, 0, 0))
    first = upload(runtime, clip, "post:P-1:media")
    with pytest.raises(Conflict) as caught:
        upload(runtime, clip, "post:P-1:media")
    assert caught.value.details == {"duplicate_of": first.public_id, "duplicate_id": first.id, "distance": 0}
    assert row_count(runtime) == 1


def test_a_different_flat_picture_is_stored(make, grey_jpeg, tmp_path):
    """The other side of the rule: two different flat pictures are not duplicates."""
    runtime = make()
    upload(runtime, grey_jpeg)
    other = near_blank()
    other.paste((127, 128, 128), (0, 0, 8, 8))
    upload(runtime, save(other, tmp_path / "other.png", "PNG"))
    assert row_count(runtime) == 2
