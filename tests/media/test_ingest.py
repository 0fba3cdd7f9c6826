"""The ingest service end to end: bytes stored, row committed, nothing left on failure."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps

from mediahub.errors import MediaHubError
from mediahub.media.access import Principal
from mediahub.media.moderation import ModerationService
from tests.media.helpers import row_count, stored_keys, upload
from tests.support.corpus import CORPUS_DIR, corpus_files

ALL_FILES = [f for f in corpus_files()]


@pytest.mark.parametrize("entry", ALL_FILES, ids=lambda e: e.name)
def test_every_corpus_file_is_stored_or_refused_cleanly(runtime, entry):
    target = "post:P-1:media"  # posts take images and videos
    before_keys = stored_keys(runtime)
    if not entry.accepted:
        with pytest.raises(MediaHubError) as caught:
            upload(runtime, entry.path, target)
        assert caught.value.code and caught.value.message
        assert stored_keys(runtime) == before_keys and row_count(runtime) == 0
        return
    item = upload(runtime, entry.path, target)
    if entry.is_video:
        assert (item.width, item.height) == (entry.entry["width"], entry.entry["height"])
        assert item.media_type == "video" and (item.duration is None or item.duration > 0)
    else:
        assert (item.width, item.height) == (entry.entry["expected_display_width"],
                                             entry.entry["expected_display_height"])
    assert set(item.keys()) == stored_keys(runtime) - before_keys
    assert item.sha256 == entry.entry["sha256"]
    assert len(item.image_hash) == 16 and len(item.md5) == 32
    assert item.moderation_status == "pending" and item.processing_status == "ready"
    if entry.entry["has_gps"] and not entry.is_video:
        original = runtime.storage.get(item.original_key)
        assert b"GPSLatitude" not in original and b"Exif\x00\x00" not in original
        assert "gps" not in item.meta


def test_on_every_backend_pair_upload_slot_replace_and_refuse(backend_runtime):
    runtime = backend_runtime
    first = upload(runtime, CORPUS_DIR / "images/good/orient_portrait_6.jpg", "user:USR-1:avatar", verified=True)
    assert first.is_primary and first.moderation_status == "approved"
    assert (first.width, first.height) == (1200, 1800)
    stored = Image.open(io.BytesIO(runtime.storage.get(first.original_key)))
    assert ImageOps.exif_transpose(stored).size == (1200, 1800), "kept with its orientation tag, shown upright"
    second = upload(runtime, CORPUS_DIR / "images/good/heic_iphone13_3024x4032.heic", "user:USR-1:avatar")
    # Unapproved, the second waits beside the approved first; approved, it replaces it and all its objects.
    assert row_count(runtime) == 2 and set(first.keys()) <= stored_keys(runtime)
    ModerationService(runtime.database, runtime.storage, runtime.cdn, hide_threshold=0, report_rate_limit=0).decide(
        second.id, Principal("MOD-1", frozenset({"moderator"})), "approved", None)
    assert row_count(runtime) == 1
    assert stored_keys(runtime) == set(second.keys())
    video = upload(runtime, CORPUS_DIR / "video/webm_vp8_vorbis_720p_1s.webm", "post:9:media")
    assert video.media_type == "video" and video.content_type == "video/webm"
    assert runtime.storage.stat(video.original_key).size == video.byte_size
    with pytest.raises(MediaHubError) as caught:
        upload(runtime, CORPUS_DIR / "images/bad/polyglot_jpeg_zip.jpg", "post:9:media")
    assert caught.value.code == "trailing_data"
    assert row_count(runtime) == 2 and stored_keys(runtime) == set(second.keys()) | set(video.keys())


def test_gallery_appends_in_order_and_one_primary(runtime):
    photos = ["jpeg_hopper.jpg", "png_hopper.png", "webp_flower.webp", "jpeg_hopper.jpg"]
    # jpeg_hopper and png_hopper are the same picture: allowed past the (default) duplicate check.
    items = [upload(runtime, CORPUS_DIR / "images/good" / name, is_primary=primary, allow_duplicate=True)
             for name, primary in zip(photos, (False, True, False, True))]
    assert [i.position for i in items] == [0, 0, 2, 0]  # appended; a new primary goes first
    from mediahub.db.repositories import MediaRepository

    with runtime.database.session() as session:
        rows, total = MediaRepository(session).list_for_entity("property", "P-1")
        assert total == 4 and [r.is_primary for r in rows] == [True, False, False, False]
        assert [r.id for r in rows] == [items[3].id, items[1].id, items[0].id, items[2].id]
        assert [r.position for r in rows] == [0, 1, 2, 3]


def test_video_is_refused_where_the_field_takes_images_only(runtime):
    with pytest.raises(MediaHubError) as caught:
        upload(runtime, CORPUS_DIR / "video/mp4_h264_example_640x480.mp4", "user:U1:avatar")
    assert caught.value.code == "unsupported_type"


def test_size_cap_stops_the_stream(runtime, tmp_path):
    from tests.media.conftest import make_runtime

    small = make_runtime(runtime.database, runtime.storage, tmp_path, max_image_size=50_000, max_video_size=60_000)
    consumed = []

    def chunks():
        for _ in range(1000):
            consumed.append(1)
            yield b"\xff" * 10_000

    from mediahub.entities import Target
    from mediahub.media.ingest import UploadRequest

    with pytest.raises(MediaHubError) as caught:
        small.ingest.ingest(chunks(), UploadRequest(Target.parse("post", "1", "media")))
    assert caught.value.code == "too_large"
    assert len(consumed) <= 7, "the stream must stop at the cap, not be read to the end"
    assert not list((tmp_path / "tmp").iterdir()), "the spooled file is removed"


def test_the_recorded_filename_is_a_label_whatever_the_caller_sends(runtime):
    # In-process callers (the CLI) reach ingest without the multipart reader: the same cleaning applies.
    from mediahub.entities import Target
    from mediahub.media.ingest import UploadRequest
    from mediahub.pipeline.intake import iter_file

    sent = "C:\\photos\\..\\bad\x07name" + "a" * 300 + ".jpg"
    request = UploadRequest(Target.parse("property", "P-1", "gallery"), filename=sent)
    with (CORPUS_DIR / "images/good/jpeg_hopper.jpg").open("rb") as fh:
        item = runtime.ingest.ingest(iter_file(fh), request)
    assert item.meta["filename"] == ("badname" + "a" * 300)[:251] + ".jpg"
