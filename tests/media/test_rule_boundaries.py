"""Limits at their exact boundary, through IngestService: the byte cap, the pixel limit, the dedup threshold.

Each rule is also tested over HTTP (tests/api/test_rule_boundaries.py): one careless
edit to a comparison (`>` for `>=`, a limit read from the wrong setting) fails both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from mediahub.entities import Target
from mediahub.errors import Conflict, LimitExceeded, TooLarge
from mediahub.media.ingest import UploadRequest
from mediahub.pipeline.image import process_image
from mediahub.pipeline.sniff import sniff
from tests.media.helpers import row_count, stored_keys, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.videos import make_clip

PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"  # 480x360


def assert_nothing_kept(runtime, tmp_path: Path) -> None:
    assert row_count(runtime) == 0 and stored_keys(runtime) == set()
    assert not list((tmp_path / "tmp").glob("upload-*")), "the spooled file is removed"


# ---------------------------------------------------------------------------- the byte cap


def test_a_file_of_exactly_the_cap_is_stored_and_one_byte_more_is_not(make, tmp_path):
    size = PHOTO.stat().st_size
    with pytest.raises(TooLarge) as caught:
        upload(make(max_image_size=size - 1), PHOTO, "user:U-1:avatar")
    assert caught.value.code == "too_large" and caught.value.details["limit"] == size - 1
    assert_nothing_kept(make(), tmp_path)
    item = upload(make(max_image_size=size), PHOTO, "user:U-1:avatar")
    assert item.sha256 == hashlib.sha256(PHOTO.read_bytes()).hexdigest()


def test_the_stream_is_read_to_one_byte_past_the_cap_and_no_further(make, tmp_path):
    cap = 2_000
    runtime = make(max_image_size=cap)
    consumed = []

    def one_byte_at_a_time():
        for _ in range(10 * cap):
            consumed.append(1)
            yield b"\xff"

    with pytest.raises(TooLarge):
        runtime.ingest.ingest(one_byte_at_a_time(), UploadRequest(Target.parse("user", "U-1", "avatar")))  # images
    assert len(consumed) == cap + 1, "the byte that passes the cap ends the stream"
    assert_nothing_kept(runtime, tmp_path)


def test_an_image_over_the_image_cap_is_refused_where_videos_may_be_larger(make, tmp_path):
    """A field taking both kinds streams up to the larger (video) cap; the image's own cap still holds."""
    size = PHOTO.stat().st_size
    runtime = make(max_image_size=size - 1, max_video_size=10 * size)
    with pytest.raises(TooLarge) as caught:
        upload(runtime, PHOTO, "post:P-1:media")
    assert caught.value.details["limit"] == size - 1
    assert_nothing_kept(runtime, tmp_path)


# ---------------------------------------------------------------------------- the pixel limit


@pytest.fixture
def picture(tmp_path) -> Path:
    path = tmp_path / "picture.png"
    Image.effect_noise((120, 50), 60).convert("RGB").save(path)
    return path


def test_an_image_of_exactly_max_image_pixels_is_stored_and_one_pixel_less_refuses_it(make, picture, tmp_path):
    with pytest.raises(LimitExceeded) as caught:
        upload(make(max_image_pixels=120 * 50 - 1), picture)
    assert caught.value.code == "too_many_pixels"
    assert_nothing_kept(make(), tmp_path)
    item = upload(make(max_image_pixels=120 * 50), picture)
    assert (item.width, item.height) == (120, 50)


def test_a_video_frame_of_exactly_max_image_pixels_is_stored_and_one_pixel_less_refuses_it(make, tmp_path):
    clip = tmp_path / "clip.mp4"
    make_clip(clip)  # 64x32
    with pytest.raises(LimitExceeded) as caught:
        upload(make(max_image_pixels=64 * 32 - 1, video_transcode=False), clip, "post:P-1:media")
    assert caught.value.code == "too_many_pixels"
    assert_nothing_kept(make(), tmp_path)
    item = upload(make(max_image_pixels=64 * 32, video_transcode=False), clip, "post:P-1:media")
    assert (item.width, item.height) == (64, 32)


# ---------------------------------------------------------------------------- the duplicate threshold


def marked_copy(tmp_path: Path) -> Path:
    """PHOTO with a white square over part of it: a near duplicate some bits away."""
    image = Image.open(PHOTO).convert("RGB")
    image.paste((255, 255, 255), (50, 50, 150, 150))
    path = tmp_path / "marked.png"
    image.save(path)
    return path


def distance(runtime, first: Path, second: Path) -> int:
    """The confirmed perceptual distance of two files as the upload pipeline measures it."""
    fingerprints = [process_image(p, sniff(p.read_bytes()[:4096]), runtime.ingest.image_options).fingerprint
                    for p in (first, second)]
    found = fingerprints[0].compare(fingerprints[1], 32)
    assert found is not None and 1 <= found <= 32, "the pair is a near duplicate, not an exact one"
    return found


@pytest.mark.parametrize("scope", ["entity", "global"])  # every row compared / the in-memory index
def test_a_near_duplicate_at_exactly_the_threshold_is_refused_and_one_bit_further_is_stored(make, tmp_path, scope):
    marked = marked_copy(tmp_path)
    d = distance(make(), PHOTO, marked)
    first = upload(make(dedup_scope=scope), PHOTO)
    with pytest.raises(Conflict) as caught:
        upload(make(dedup_scope=scope, dedup_threshold=d), marked)
    assert caught.value.details == {"duplicate_of": first.public_id, "duplicate_id": first.id, "distance": d}
    second = upload(make(dedup_scope=scope, dedup_threshold=d - 1), marked)
    assert "duplicate_of" not in second.meta
