"""Duplicate detection never reuses an item whose original the store has lost (penpot #11344: one lost file
spread to every re-upload, each refused as, or pointed at, the broken record)."""

from __future__ import annotations

import pytest

from mediahub.errors import Conflict
from tests.media.helpers import reload, upload
from tests.support.corpus import CORPUS_DIR

PHOTO = CORPUS_DIR / "images/good/jpeg_hopper.jpg"


def test_an_upload_matching_an_item_whose_original_is_lost_is_stored_anew(make):
    runtime = make(dedup_policy="reject")
    first = upload(runtime, PHOTO)
    runtime.storage.delete(first.original_key)

    again = upload(runtime, PHOTO)

    assert again.id != first.id and runtime.storage.get(again.original_key)
    broken = reload(runtime, first)
    assert broken.processing_status == "failed" and broken.meta["missing_keys"] == [first.original_key]
    with pytest.raises(Conflict) as refused:  # the copy that is stored is a duplicate like any other
        upload(runtime, PHOTO)
    assert refused.value.details["duplicate_id"] == again.id


def test_a_flagged_upload_never_points_at_an_item_whose_original_is_lost(make):
    runtime = make(dedup_policy="flag", dedup_scope="global")
    first = upload(runtime, PHOTO, target="property:P-1:gallery")
    runtime.storage.delete(first.original_key)

    second = upload(runtime, PHOTO, target="property:P-2:gallery")
    third = upload(runtime, PHOTO, target="property:P-3:gallery")

    assert "duplicate_of" not in second.meta
    assert third.meta["duplicate_of"] == second.public_id
