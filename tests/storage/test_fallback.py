"""The store a process reads through during a storage migration: the target, then the stores objects move from."""

from __future__ import annotations

import pytest

from mediahub.errors import NotFound
from mediahub.storage.fallback import FallbackStorage
from mediahub.storage.local import LocalStorage

KEY = "a/b/photo.jpg"


@pytest.fixture(params=["local", "s3"])
def target(request, tmp_path):
    if request.param == "s3":
        return request.getfixturevalue("s3_storage")
    return LocalStorage(tmp_path / "target")


@pytest.fixture
def source(tmp_path):
    return LocalStorage(tmp_path / "source")


def test_reads_find_an_object_on_the_source_until_it_is_on_the_target(target, source):
    storage = FallbackStorage(target, [source])
    source.put(KEY, b"old copy", "image/jpeg")
    assert storage.get(KEY) == b"old copy" and storage.stat(KEY).size == 8
    assert b"".join(storage.open_range(KEY, 4)) == b"copy"
    target.put(KEY, b"new copy!", "image/jpeg")
    assert storage.get(KEY) == b"new copy!", "the target answers first"
    with pytest.raises(NotFound):
        storage.stat("a/b/none.jpg")


def test_writes_go_to_the_target_and_deletes_reach_every_store(target, source):
    storage = FallbackStorage(target, [source])
    storage.put(KEY, b"bytes", "image/jpeg")
    assert target.exists(KEY) and not source.exists(KEY)
    source.put("a/b/both.jpg", b"one", "image/jpeg")
    target.put("a/b/both.jpg", b"one", "image/jpeg")
    assert storage.delete_many([KEY, "a/b/both.jpg"]) == []
    assert not any(store.exists(key) for store in (target, source) for key in (KEY, "a/b/both.jpg"))


def test_urls_name_the_store_a_row_records(target, source):
    storage = FallbackStorage(target, [source])
    assert storage.store_of("local", None) is (target if target.kind == "local" else source)
    assert storage.store_of(target.kind, target.bucket) is target
    assert storage.store_of("s3", "another-bucket") is target, "an unknown store: the target"
    assert (storage.kind, storage.bucket, storage.location, storage.can_presign) == \
        (target.kind, target.bucket, target.location, target.can_presign)
