"""A small picture's equal renditions share one object: stored once, served, counted and deleted once."""

from __future__ import annotations

from datetime import timedelta

from mediahub.config import parse_image_sizes
from mediahub.db.repositories import MediaRepository, PendingDeleteRepository
from mediahub.db.repositories.job_queue import enqueue
from mediahub.jobs import tasks
from mediahub.media import reprocessing
from mediahub.media import verify as verify_service
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.files import FileAccess
from mediahub.media.job_kinds import REPROCESS
from mediahub.media.renditions import StoredOriginal, plan_variants
from mediahub.pipeline.variants import Encoded
from mediahub.storage.signing import sign
from tests.media.conftest import make_runtime
from tests.media.helpers import reload, stored_keys, upload
from tests.support.corpus import CORPUS_DIR

# 480x360, 25 KB once its EXIF is stripped: medium (800) and large (1600) are both 480x360, and
# its 400x300 JPEG re-encode is no smaller than the original.
FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"


def _keys(item, fmt: str) -> dict[str, str]:
    return {v.name: v.storage_key for v in item.variants if v.format == fmt}


def test_equal_renditions_are_stored_once_and_served_by_every_row(make):
    runtime = make()
    item = upload(runtime, FLOWER)
    jpeg, webp = _keys(item, "jpeg"), _keys(item, "webp")
    assert set(jpeg) == set(webp) == {"thumbnail", "small", "medium", "large"}
    # The original is a JPEG of large's size, smaller than a re-encode would be: large and medium are it,
    # and small too (a 400x300 re-encode is not smaller either).
    assert jpeg["large"] == jpeg["medium"] == jpeg["small"] == item.original_key
    assert runtime.storage.stat(item.original_key).size <= 26 * 1024
    assert webp["medium"] == webp["large"] != item.original_key, "medium WebP is large's object"
    assert len({jpeg["thumbnail"], webp["small"], webp["thumbnail"], webp["large"], item.original_key}) == 5, (
        "the crop thumbnail is its own object, and WebP shares only with WebP")
    assert item.keys() == list(dict.fromkeys(item.keys())) and len(item.keys()) == 5
    assert stored_keys(runtime) == set(item.keys())
    for v in item.variants:  # a row tells the size and bytes of the object it names
        assert v.byte_size == runtime.storage.stat(v.storage_key).size, (v.name, v.format)
    sizes = {(v.name, v.format): (v.width, v.height) for v in item.variants}
    assert sizes[("small", "jpeg")] == sizes[("large", "webp")] == (item.width, item.height) == (480, 360)
    assert sizes[("small", "webp")] == (400, 300) and sizes[("thumbnail", "jpeg")] == (150, 150)

    files = FileAccess(runtime.database, b"s" * 32)
    for v in item.variants:  # a pending item: read with a signature
        expires = 4102444800
        served = files.resolve(v.storage_key, expires, sign(v.storage_key, expires, b"s" * 32))
        assert served.content_type == v.content_type

    report = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0))
    assert report.clean and report.keys_in_db == 5, "a shared object is counted once"


def test_replacing_shared_renditions_keeps_the_original_and_deleting_removes_each_object_once(
        sqlite_db, local_storage, tmp_path):
    runtime = make_runtime(sqlite_db, local_storage, tmp_path)
    item = upload(runtime, FLOWER)
    old_webp = set(_keys(item, "webp").values())
    with runtime.database.session() as session:
        job = enqueue(session, REPROCESS, media_id=item.id)
    tasks.reprocess(runtime.tasks, job)  # every rendition again, under new keys
    redone = reload(runtime, item)
    assert not reprocessing.is_stale(redone, runtime.settings)
    jpeg = _keys(redone, "jpeg")
    assert jpeg["large"] == jpeg["medium"] == jpeg["small"] == item.original_key, (
        "the reprocessed sizes share the original again")
    purge_pending_deletes(runtime.database, runtime.storage)
    assert item.original_key in stored_keys(runtime), "the replaced rows' shared object is the original: kept"
    assert stored_keys(runtime) == set(redone.keys())
    assert not old_webp & stored_keys(runtime), "objects no row names any more are deleted"

    with runtime.database.session() as session:
        repo = MediaRepository(session)
        queued = repo.delete(repo.get(item.id))
    assert sorted(queued) == sorted(set(redone.keys()))
    assert purge_pending_deletes(runtime.database, runtime.storage) == len(queued)
    assert stored_keys(runtime) == set()
    with runtime.database.session() as session:
        assert PendingDeleteRepository(session).due(10) == []
    runtime.jobs.close()


def _plan(original: StoredOriginal | None) -> list[tuple[str, str, bool]]:
    encoded = [Encoded("large", "jpeg", 480, 360, b"x" * 100), Encoded("medium", "jpeg", 480, 360, b"x" * 90),
               Encoded("small", "jpeg", 400, 300, b"x" * 50), Encoded("large", "webp", 480, 360, b"x" * 80)]
    planned = plan_variants(encoded, lambda v: f"{v.name}.{v.format}", original)
    return [(p.row.name, p.row.storage_key, p.source is not None) for p in planned]


def test_a_rendition_shares_the_next_larger_object_of_its_format_or_a_not_larger_original():
    assert _plan(StoredOriginal("o.jpg", "jpeg", 480, 360, 100)) == [
        ("large", "o.jpg", False), ("medium", "o.jpg", False), ("small", "small.jpeg", True),
        ("large", "large.webp", True)]
    larger_original = [("large", "large.jpeg", True), ("medium", "large.jpeg", False),
                       ("small", "small.jpeg", True), ("large", "large.webp", True)]
    assert _plan(StoredOriginal("o.jpg", "jpeg", 480, 360, 101)) == larger_original
    assert _plan(StoredOriginal("o.png", "png", 480, 360, 10)) == larger_original, "another format: never shared"
    assert _plan(StoredOriginal("o.jpg", "jpeg", 481, 360, 101)) == larger_original, "another size, more bytes"
    assert _plan(None) == larger_original
    assert _plan(StoredOriginal("o.jpg", "jpeg", 481, 360, 50)) == [
        ("large", "o.jpg", False), ("medium", "o.jpg", False), ("small", "o.jpg", False),
        ("large", "large.webp", True)], "another size, but no more bytes than the re-encodes: shared"


def test_a_rendition_not_smaller_than_the_next_larger_object_names_it_and_its_size():
    encoded = [Encoded("large", "jpeg", 480, 360, b"x" * 100), Encoded("small", "jpeg", 400, 300, b"x" * 120),
               Encoded("thumbnail", "jpeg", 150, 150, b"x" * 200, crop=True),
               Encoded("tiny", "jpeg", 100, 75, b"x" * 30),
               Encoded("large", "webp", 480, 360, b"x" * 40), Encoded("small", "webp", 400, 300, b"x" * 60)]
    planned = plan_variants(encoded, lambda v: f"{v.name}.{v.format}", StoredOriginal("o.jpg", "jpeg", 480, 360, 110))
    rows = [(p.row.name, p.row.format, p.row.storage_key, p.row.width, p.row.height, p.row.byte_size, p.stored)
            for p in planned]
    assert rows == [
        ("large", "jpeg", "large.jpeg", 480, 360, 100, True),  # smaller than the original: stored
        ("small", "jpeg", "large.jpeg", 480, 360, 100, False),  # more bytes than large's object: names it
        ("thumbnail", "jpeg", "thumbnail.jpeg", 150, 150, 200, True),  # a crop never names a whole picture
        ("tiny", "jpeg", "tiny.jpeg", 100, 75, 30, True),  # compared with large's object, not the crop
        ("large", "webp", "large.webp", 480, 360, 40, True),  # WebP is compared with WebP only
        ("small", "webp", "large.webp", 480, 360, 40, False),
    ]


def test_a_crop_names_an_object_only_of_its_own_size():
    encoded = [Encoded("thumbnail", "jpeg", 150, 150, b"x" * 100, crop=True)]
    planned = plan_variants(encoded, lambda v: "thumbnail.jpeg", StoredOriginal("o.jpg", "jpeg", 150, 150, 90))
    assert [(p.row.storage_key, p.stored) for p in planned] == [("o.jpg", False)], "a square original: the same pixels"
    planned = plan_variants(encoded, lambda v: "thumbnail.jpeg", StoredOriginal("o.jpg", "jpeg", 200, 150, 10))
    assert [(p.row.storage_key, p.stored) for p in planned] == [("thumbnail.jpeg", True)]


def test_a_row_naming_a_larger_shared_object_is_not_stale_and_a_changed_size_is(make):
    runtime = make()
    item = upload(runtime, FLOWER)
    assert not reprocessing.is_stale(item, runtime.settings), (
        "small names the original (480x360, not 400x300): a reprocess would decide the same")
    smaller = runtime.settings.model_copy(update={"image_sizes": parse_image_sizes(
        "thumbnail:150x150:crop,small:300,medium:800,large:1600")})
    assert reprocessing.is_stale(item, smaller), "small's own WebP is 400x300, not 300x225"
    thumbnail = runtime.settings.model_copy(update={"image_sizes": parse_image_sizes(
        "thumbnail:100x100:crop,small:400,medium:800,large:1600")})
    assert reprocessing.is_stale(item, thumbnail)
    unshared = runtime.settings.model_copy(update={"image_sizes": parse_image_sizes(
        "thumbnail:150x150:crop,small:400,medium:800,large:1600,tiny:100")})
    assert reprocessing.is_stale(item, unshared), "a new size"
