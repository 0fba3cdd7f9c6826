"""DEDUP_POLICY, allow_duplicate and DEDUP_SCOPE through IngestService, with a real DB and store."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mediahub.db.models import MediaItem
from mediahub.dedup import policy as dedup
from mediahub.errors import Conflict
from tests.media.helpers import row_count, stored_keys, upload
from tests.support.corpus import CORPUS_DIR

GOOD = CORPUS_DIR / "images/good"
HOPPER_JPEG, HOPPER_PNG, FLOWER = GOOD / "jpeg_hopper.jpg", GOOD / "png_hopper.png", GOOD / "jpeg_flower.jpg"


def test_reject_refuses_a_near_duplicate_and_writes_nothing(make):
    runtime = make()
    first = upload(runtime, HOPPER_JPEG)
    rows, keys = row_count(runtime), stored_keys(runtime)
    with pytest.raises(Conflict) as caught:
        upload(runtime, HOPPER_PNG)  # the same picture as PNG: other bytes, same pixels
    assert caught.value.code == "duplicate"
    assert caught.value.details["duplicate_of"] == first.public_id
    assert isinstance(caught.value.details["distance"], int)
    assert row_count(runtime) == rows and stored_keys(runtime) == keys


def test_reject_refuses_the_same_file_at_distance_zero_in_another_field_of_the_entity(make):
    runtime = make()
    first = upload(runtime, HOPPER_JPEG, "builder:B1:portfolio")
    with pytest.raises(Conflict) as caught:
        upload(runtime, HOPPER_JPEG, "builder:B1:logo")
    assert caught.value.details == {"duplicate_of": first.public_id, "duplicate_id": first.id, "distance": 0}
    assert row_count(runtime) == 1


def test_a_different_picture_is_stored(make):
    runtime = make()
    upload(runtime, HOPPER_JPEG)
    item = upload(runtime, FLOWER)
    assert "duplicate_of" not in item.meta
    assert row_count(runtime) == 2


def test_flag_stores_with_duplicate_of_and_distance(make):
    runtime = make(dedup_policy="flag")
    first = upload(runtime, HOPPER_JPEG)
    second = upload(runtime, HOPPER_PNG)
    assert second.meta["duplicate_of"] == first.public_id
    assert isinstance(second.meta["duplicate_distance"], int)
    with runtime.database.session() as session:
        stored = session.scalars(select(MediaItem).where(MediaItem.id == second.id)).one()
        assert stored.meta["duplicate_of"] == first.public_id


def test_allow_policy_stores_without_a_flag(make):
    runtime = make(dedup_policy="allow")
    upload(runtime, HOPPER_JPEG)
    second = upload(runtime, HOPPER_JPEG)
    assert "duplicate_of" not in second.meta and row_count(runtime) == 2


def test_allow_duplicate_is_honoured_unless_overrides_are_off(make):
    runtime = make()
    upload(runtime, HOPPER_JPEG)
    second = upload(runtime, HOPPER_PNG, allow_duplicate=True)
    assert "duplicate_of" not in second.meta
    strict = make(dedup_allow_override=False)
    with pytest.raises(Conflict):
        upload(strict, HOPPER_PNG, allow_duplicate=True)
    assert row_count(runtime) == 2


def test_entity_scope_ignores_other_entities(make):
    runtime = make()
    upload(runtime, HOPPER_JPEG, "property:P-1:gallery", uploaded_by="alice")
    other = upload(runtime, HOPPER_JPEG, "property:P-2:gallery", uploaded_by="alice")
    assert "duplicate_of" not in other.meta


def test_uploader_scope_flags_the_same_uploaders_copy_in_another_entity(make):
    runtime = make(dedup_scope="uploader")
    first = upload(runtime, HOPPER_JPEG, "property:P-1:gallery", uploaded_by="alice")
    mine = upload(runtime, HOPPER_PNG, "property:P-2:gallery", uploaded_by="alice")
    assert mine.meta["duplicate_of"] == first.public_id  # across entities: reported, not refused
    theirs = upload(runtime, HOPPER_PNG, "property:P-3:gallery", uploaded_by="bob")
    assert "duplicate_of" not in theirs.meta
    with pytest.raises(Conflict):  # the same entity is still refused
        upload(runtime, HOPPER_PNG, "property:P-1:gallery", uploaded_by="alice")


def test_global_scope_flags_anyones_copy(make):
    runtime = make(dedup_scope="global")
    first = upload(runtime, HOPPER_JPEG, "property:P-1:gallery", uploaded_by="alice")
    theirs = upload(runtime, HOPPER_PNG, "community:C-9:photos", uploaded_by="bob")
    assert theirs.meta["duplicate_of"] == first.public_id


def test_rows_carry_the_pixel_digest_and_the_hash_bands(make):
    runtime = make()
    item = upload(runtime, HOPPER_JPEG)
    assert len(item.pixel_sha256) == 64 and len(item.dedup_thumb) == 64 * 64
    assert all(0 <= getattr(item, f"hash_{k}{b}") < 1 << 16 for k in "wc" for b in range(4))


def test_similar_items_lists_copies_in_any_entity_closest_first(make):
    runtime = make(dedup_policy="allow")
    first = upload(runtime, HOPPER_JPEG, "property:P-1:gallery")
    copy = upload(runtime, HOPPER_PNG, "community:C-1:photos")
    upload(runtime, FLOWER, "property:P-1:gallery")
    with runtime.database.session() as session:
        for index in (runtime.dedup_index, None):  # the process's index, or a scan of every row
            found = dedup.similar_items(session, first.public_id, threshold=14, index=index)
            assert [(item.id, distance) for item, distance in found] == [(copy.id, 0)]
        assert dedup.similar_items(session, first.id, threshold=14, limit=0) == []


def test_a_video_matches_its_re_encoded_copy_by_the_poster(make, tmp_path):
    runtime = make()
    first = upload(runtime, CORPUS_DIR / "video/mp4_h264_example_640x480.mp4", "post:P-1:media")
    assert first.hash_w0 is not None and first.dedup_thumb and first.pixel_sha256 is None
    (web,) = [v for v in first.variants if v.name == "web"]
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(runtime.storage.get(web.storage_key))  # other bytes, the same pictures
    with pytest.raises(Conflict) as caught:
        upload(runtime, copy, "post:P-1:media")
    assert caught.value.details["duplicate_of"] == first.public_id
