"""A small picture's equal renditions share one object: stored once, served, counted and deleted once."""

from __future__ import annotations

from datetime import timedelta

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

# 480x360, 25 KB once its EXIF is stripped: medium (800) and large (1600) are both 480x360.
FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"


def _keys(item, fmt: str) -> dict[str, str]:
    return {v.name: v.storage_key for v in item.variants if v.format == fmt}


def test_equal_renditions_are_stored_once_and_served_by_every_row(runtime):
    item = upload(runtime, FLOWER)
    jpeg, webp = _keys(item, "jpeg"), _keys(item, "webp")
    assert set(jpeg) == set(webp) == {"thumbnail", "small", "medium", "large"}
    # The original is a JPEG of that size, smaller than a re-encode would be: large and medium are it.
    assert jpeg["large"] == jpeg["medium"] == item.original_key
    assert runtime.storage.stat(item.original_key).size <= 26 * 1024
    assert webp["medium"] == webp["large"] != item.original_key, "medium WebP is large's object"
    assert len({jpeg["small"], jpeg["thumbnail"], webp["small"], webp["thumbnail"]}) == 4
    assert item.keys() == list(dict.fromkeys(item.keys())) and len(item.keys()) == 6
    assert stored_keys(runtime) == set(item.keys())
    sizes = {(v.name, v.format): v.byte_size for v in item.variants}
    assert sizes[("medium", "jpeg")] == sizes[("large", "jpeg")] == item.byte_size
    assert sizes[("medium", "webp")] == runtime.storage.stat(webp["large"]).size

    files = FileAccess(runtime.database, b"s" * 32)
    for v in item.variants:  # a pending item: read with a signature
        expires = 4102444800
        served = files.resolve(v.storage_key, expires, sign(v.storage_key, expires, b"s" * 32))
        assert served.content_type == v.content_type

    report = verify_service.verify(runtime.database, runtime.storage, grace=timedelta(0))
    assert report.clean and report.keys_in_db == 6, "a shared object is counted once"


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
    assert jpeg["large"] == jpeg["medium"] == item.original_key, "the reprocessed sizes share the original again"
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
    assert _plan(StoredOriginal("o.jpg", "jpeg", 481, 360, 10)) == larger_original, "another size: never shared"
    assert _plan(None) == larger_original
