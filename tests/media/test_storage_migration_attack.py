"""`mediahub storage migrate` attacked: users racing the migrator on the same item, processes left on the old
settings, a target or a source whose bytes are not what the rows say. Real engines: the database of each
test, moto's S3 server, local disk.

The migration runs in a thread and stops where a test needs it (`Midway`, through its public `on_bytes`
hook), so each race happens at one chosen step.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from mediahub.db.models import MigratedObject
from mediahub.errors import Conflict
from mediahub.media.manage import MediaService
from mediahub.media.storage_migration import StorageMigrator
from mediahub.media.urls import MediaUrls
from mediahub.storage.factory import build_store
from mediahub.storage.fallback import FallbackStorage
from tests.media.helpers import reload, upload
from tests.media.test_storage_migration import (
    ADMIN,
    IMAGES,
    WAIT_SECONDS,
    Midway,
    assert_all_on,
    migrator_for,
    moderate,
    on_s3,
    readable,
    rows,
    runtime_of,
    settings_for,
)
from tests.support.s3_server import anonymous_get

pytestmark = pytest.mark.s3


def journal_states(database) -> dict[str, int]:
    with database.session() as session:
        states = list(session.scalars(select(MigratedObject.state)))
    return {state: states.count(state) for state in set(states)}


def test_an_item_re_rendered_between_its_copy_and_its_switch_leaves_no_stray_and_the_migration_ends(
        db, s3_server, tmp_path):
    local = settings_for(db, tmp_path, s3_server)
    old = runtime_of(local, db)
    item = upload(old, IMAGES[0])
    new = runtime_of(on_s3(db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), db)
    migrator = migrator_for(new, concurrency=1, delete_source_after=timedelta(0))

    # Stopped as it reads the last bytes of the item's last object: every other object is copied and verified.
    run = Midway(migrator, migrator.plan().bytes).start()
    MediaService(new.database, new.storage, new.cdn, dispatch=new.jobs.dispatch).update(
        item.id, ADMIN, {"focal_point": {"x": 0.2, "y": 0.3}})  # the crops are made again, under new keys
    assert new.wait_for_jobs([item.id], timeout=WAIT_SECONDS)
    report = run.finish()

    assert report.ok and report.finished, (report, journal_states(db))
    moved = reload(new, item)
    assert moved.storage_type == "s3" and set(moved.keys()) != set(item.keys())
    named = {key for row in rows(db) for key in row.keys()}
    assert {info.key for info in new.store.list()} == named, "no copy of a replaced variant is left on the target"
    assert list(old.store.list()) == []
    assert_all_on(db, new.store)
    for runtime in (old, new):
        runtime.close()


def test_a_process_left_on_the_old_settings_never_marks_a_moved_item_lost(sqlite_db, s3_server, tmp_path):
    local = settings_for(sqlite_db, tmp_path, s3_server).model_copy(update={"dedup_policy": "reject"})
    old = runtime_of(local, sqlite_db)  # started before the migration, never restarted
    item = upload(old, IMAGES[0])
    new = runtime_of(on_s3(sqlite_db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), sqlite_db)
    report = migrator_for(new, delete_source_after=timedelta(0)).run()
    assert report.ok and report.finished and not old.store.exists(item.original_key)

    # Its store no longer holds the item's original, but it is not lost: it is on the store its row records,
    # which this process does not read. It cannot tell, so the upload is the duplicate it is.
    with pytest.raises(Conflict) as refused:
        upload(old, IMAGES[0])
    assert refused.value.details["duplicate_id"] == item.id
    kept = reload(new, item)
    assert kept.processing_status != "failed" and "missing_keys" not in (kept.meta or {})
    for runtime in (old, new):
        runtime.close()


class FlippingStore(FallbackStorage):
    """A target whose PUTs store one byte flipped, as a faulty link or disk would."""

    def put(self, key, source, content_type):
        data = bytearray(source.read() if hasattr(source, "read") else source)
        data[len(data) // 2] ^= 0xFF
        return self.target.put(key, bytes(data), content_type)


def test_a_copy_corrupted_on_its_way_to_the_target_is_caught_and_the_item_stays(sqlite_db, s3_server, tmp_path):
    local = settings_for(sqlite_db, tmp_path, s3_server)
    old = runtime_of(local, sqlite_db)
    item = upload(old, IMAGES[0])
    new = runtime_of(on_s3(sqlite_db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), sqlite_db)
    migrator = StorageMigrator(sqlite_db, FlippingStore(new.store, []),
                               lambda kind, bucket: build_store(local, kind, bucket),
                               delete_source_after=timedelta(0))
    report = migrator.run()

    assert not report.ok and report.items_switched == 0 and not report.finished
    assert {p.key for p in report.failed} == set(item.keys())
    assert all("differs from the source" in p.reason for p in report.failed)
    assert reload(new, item).storage_type == "local" and all(old.store.exists(key) for key in item.keys())
    assert list(new.store.list()) == [], "every corrupted copy removed"
    report = migrator_for(new, delete_source_after=timedelta(0)).run()  # a healthy link: it moves
    assert report.ok and report.finished and report.recovered == 0
    assert_all_on(sqlite_db, new.store)
    for runtime in (old, new):
        runtime.close()


def test_a_source_object_that_rotted_is_reported_and_its_item_never_switches(sqlite_db, s3_server, tmp_path):
    local = settings_for(sqlite_db, tmp_path, s3_server)
    old = runtime_of(local, sqlite_db)
    rotten, sound = upload(old, IMAGES[0]), upload(old, IMAGES[1])
    key = rotten.variants[-1].storage_key
    path = local.media_root / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    path.write_bytes(bytes(data))
    new = runtime_of(on_s3(sqlite_db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), sqlite_db)

    for _ in range(2):  # and again: still refused, never switched, the source kept
        report = migrator_for(new, delete_source_after=timedelta(0)).run()
        assert [(p.media_id, p.key) for p in report.failed] == [(rotten.id, key)], report.failed
        assert "not the row's" in report.failed[0].reason and not report.finished
        assert reload(new, rotten).storage_type == "local" and old.store.exists(key)
        assert not new.store.exists(key), "no copy of the rotten bytes on the target"
        assert reload(new, sound).storage_type == "s3"
    for runtime in (old, new):
        runtime.close()


def test_moderation_after_a_bucket_to_bucket_move_reaches_both_buckets(sqlite_db, s3_server, tmp_path):
    first = f"mig-{uuid.uuid4().hex[:12]}"
    old = runtime_of(on_s3(sqlite_db, tmp_path, s3_server, first), sqlite_db)
    shown, hidden = upload(old, IMAGES[0]), upload(old, IMAGES[1])
    moderate(old, shown, "approved")
    moderate(old, hidden, "rejected")
    assert all(readable(old.store, key) for key in shown.keys())
    new = runtime_of(on_s3(sqlite_db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), sqlite_db)
    report = migrator_for(new).run()  # the old copies wait for their grace period
    assert report.ok and report.sources_waiting == report.objects

    assert all(readable(new.store, key) for key in shown.keys())
    assert not any(readable(store, key) for store in (old.store, new.store) for key in hidden.keys())
    later = runtime_of(new.settings, sqlite_db)  # a process started after the switch, before the old copies go
    moderate(later, reload(later, shown), "rejected")
    assert not any(readable(store, key) for store in (old.store, new.store) for key in shown.keys())
    for runtime in (old, new, later):
        runtime.close()


def test_a_re_rendered_variant_of_an_item_not_moved_yet_is_served_at_its_url(sqlite_db, s3_server, tmp_path):
    old = runtime_of(on_s3(sqlite_db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), sqlite_db)
    item = upload(old, IMAGES[0])
    new = runtime_of(on_s3(sqlite_db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), sqlite_db)
    MediaService(new.database, new.storage, new.cdn, dispatch=new.jobs.dispatch).update(
        item.id, ADMIN, {"focal_point": {"x": 0.2, "y": 0.3}})
    assert new.wait_for_jobs([item.id], timeout=WAIT_SECONDS)
    item = reload(new, item)
    urls = MediaUrls(new.settings, new.storage)
    for key in item.keys():
        status, _, _ = anonymous_get(urls.url(item, key))
        assert status == 200, (key, status)
    for runtime in (old, new):
        runtime.close()


def test_a_second_migration_started_while_one_runs_is_refused(db, s3_server, tmp_path):
    local = settings_for(db, tmp_path, s3_server)
    old = runtime_of(local, db)
    for path in IMAGES[:3]:
        upload(old, path)
    new = runtime_of(on_s3(db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), db)
    first = Midway(migrator_for(new, concurrency=2, delete_source_after=timedelta(0)), 1).start()

    with pytest.raises(Conflict) as refused:  # two would share one journal, each racing the other's rows
        migrator_for(new, concurrency=2, delete_source_after=timedelta(0)).run()
    assert refused.value.code == "migration_running"
    report = first.finish()

    assert report.ok and report.finished, report
    again = migrator_for(new).run()  # the lock went with the run that held it
    assert again.ok and again.finished and again.items_switched == 0
    assert list(old.store.list()) == []
    assert_all_on(db, new.store)
    for runtime in (old, new):
        runtime.close()
