"""`mediahub storage migrate`: local disk -> S3 (moto's server) -> local disk, and bucket -> bucket, while uploads,
deletes and moderation decisions happen; a missing source object; rows without recorded digests.

The service's side runs in this process (runtimes on the old and the new settings, as processes of both
kinds would be during a roll-out); the migration runs in a thread and stops, at its first copied bytes,
until the test has made its changes, so they happen in the middle of the run.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mediahub.config import Settings
from mediahub.db.models import AuditEvent, MediaItem, MediaVariant
from mediahub.db.repositories import UsageRepository
from mediahub.media import verify as verify_service
from mediahub.media.access import Principal
from mediahub.media.manage import MediaService
from mediahub.media.moderation import ModerationService
from mediahub.media.storage_migration import DELETED_MEANWHILE, MigrationReport, StorageMigrator
from mediahub.runtime import Runtime, source_stores
from mediahub.storage.base import Storage
from mediahub.storage.factory import build_store, build_storage
from mediahub.storage.fallback import FallbackStorage
from tests.media.helpers import reload, upload
from tests.support.corpus import CORPUS_DIR
from tests.support.s3_server import DUMMY_CREDENTIALS, anonymous_get

pytestmark = pytest.mark.s3

IMAGES = [CORPUS_DIR / "images/good" / name for name in ("jpeg_hopper.jpg", "webp_flower.webp", "jpeg_flower.jpg",
                                                          "png_hopper.png")]
VIDEO = CORPUS_DIR / "video/webm_vp8_tiny_8x8.webm"
ADMIN = Principal("ADM-1", frozenset({"user", "admin"}))
MODERATOR = Principal("MOD-1", frozenset({"user", "moderator"}))
WAIT_SECONDS = 120


def settings_for(database, tmp_path: Path, endpoint: str, **overrides) -> Settings:
    """Both sides share MEDIA_ROOT and the S3 endpoint and credentials: a row names only its store's kind and bucket."""
    return Settings(_env_file=None, database_url=str(database.url), media_root=tmp_path / "media",
                    temp_dir=tmp_path / "tmp", s3_endpoint_url=endpoint, aws_access_key_id="testing",
                    aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], dedup_policy="allow",
                    defer_slow_variants=False, image_sizes="thumbnail:150x150:crop,small:400", **overrides)


def on_s3(database, tmp_path: Path, endpoint: str, bucket: str) -> Settings:
    return settings_for(database, tmp_path, endpoint, storage_type="s3", s3_bucket_name=bucket,
                        s3_public_base_url=f"{endpoint}/{bucket}")


def runtime_of(settings: Settings, database) -> Runtime:
    """A process on `settings`, composed as `Runtime.build` composes it (its store, and the stores rows record)."""
    store = build_storage(settings)
    store.check()
    return Runtime.assemble(settings, database, store, source_stores(settings, database, store))


def migrator_for(runtime: Runtime, **options) -> StorageMigrator:
    settings = runtime.settings
    return StorageMigrator(runtime.database, runtime.store, lambda kind, bucket: build_store(settings, kind, bucket),
                           **options)


class Midway:
    """A migration in a thread that waits, once it has read `after_bytes` bytes (default: its first), until
    `resume()`."""

    def __init__(self, migrator: StorageMigrator, after_bytes: int = 1) -> None:
        self.after_bytes, self.read = after_bytes, 0
        self.reached, self.resumed = threading.Event(), threading.Event()
        migrator.on_bytes = self._on_bytes
        self.report: MigrationReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(migrator,))

    def _on_bytes(self, size: int) -> None:
        self.read += size
        if self.read >= self.after_bytes and not self.reached.is_set():
            self.reached.set()
            assert self.resumed.wait(WAIT_SECONDS)

    def _run(self, migrator: StorageMigrator) -> None:
        try:
            self.report = migrator.run()
        except BaseException as exc:  # handed to the test's thread
            self.error = exc
            raise

    def start(self) -> Midway:
        self.thread.start()
        assert self.reached.wait(WAIT_SECONDS), "the migration never read that much"
        return self

    def finish(self) -> MigrationReport:
        self.resumed.set()
        self.thread.join(WAIT_SECONDS)
        assert not self.thread.is_alive() and self.error is None, self.error
        assert self.report is not None
        return self.report


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rows(database) -> list[MediaItem]:
    with database.session() as session:
        return list(session.scalars(select(MediaItem).order_by(MediaItem.id)))


def assert_all_on(database, store: Storage) -> None:
    """Every row points at `store`, which holds each object with the digest recorded for it; nothing is stray
    or missing there."""
    for item in rows(database):
        assert (item.storage_type, item.bucket_name) == (store.kind, store.bucket)
        assert item.stored_sha256 == sha256(store.get(item.original_key)), item.original_key
        for variant in item.variants:
            assert variant.content_hash == sha256(store.get(variant.storage_key)), variant.storage_key
    report = verify_service.verify(database, store, grace=timedelta(0))
    assert report.clean and report.keys_in_db > 0, report
    with database.session() as session:
        kept, counted = UsageRepository(session).recount()
    assert kept == counted, "the storage analytics followed every switch"


def moderate(runtime: Runtime, item: MediaItem, status: str) -> None:
    ModerationService(runtime.database, runtime.storage, runtime.cdn, hide_threshold=3,
                      report_rate_limit=0).decide(item.id, MODERATOR, status, None)


def delete(runtime: Runtime, item: MediaItem) -> None:
    MediaService(runtime.database, runtime.storage, runtime.cdn).delete(item.id, ADMIN)


def readable(store: Storage, key: str) -> bool:
    url = store.public_url(key)
    assert url is not None
    return anonymous_get(url)[0] == 200


def test_local_to_s3_and_back_while_the_service_serves(db, s3_server, tmp_path, audit_guard):
    """Under the audit guard: every switch, delete and decision during the move commits with its event."""
    local = settings_for(db, tmp_path, s3_server)
    old = runtime_of(local, db)
    items = [upload(old, path) for path in [*IMAGES, VIDEO]]
    assert all(item.stored_sha256 for item in items)

    bucket = f"mig-{uuid.uuid4().hex[:12]}"
    new = runtime_of(on_s3(db, tmp_path, s3_server, bucket), db)
    assert isinstance(new.storage, FallbackStorage) and new.store.bucket == bucket
    assert new.storage.get(items[0].original_key) == old.storage.get(items[0].original_key), "read from the source"
    plan = migrator_for(new).plan()
    assert plan.stores[("local", None)].items == len(items)

    run = Midway(migrator_for(new, concurrency=1, delete_source_after=timedelta(0))).start()
    delete(new, items[0])  # the item being copied
    delete(new, items[3])  # an item not reached yet
    moderate(new, items[1], "approved")
    moderate(new, items[2], "rejected")
    fresh = upload(new, IMAGES[2], uploaded_by="NEW")  # a process on the new settings writes to the bucket
    late = upload(old, IMAGES[1], uploaded_by="OLD")  # one still on the old settings, to local disk
    report = run.finish()

    assert report.ok and report.finished, report
    assert report.skipped == {DELETED_MEANWHILE: 1}
    assert report.items_switched == len(items) - 2 + 1  # the late upload moves too
    assert report.digests_recorded == 0 and report.objects == report.copied + report.already_there
    assert list(old.store.list()) == [], "every source copy deleted"
    assert_all_on(db, new.store)
    assert reload(new, items[0]) is None and reload(new, items[3]) is None
    approved, rejected = reload(new, items[1]), reload(new, items[2])
    assert all(readable(new.store, key) for key in approved.keys())
    assert not any(readable(new.store, key) for key in rejected.keys())
    assert {(row.id, row.storage_type) for row in rows(db)} >= {(fresh.id, "s3"), (late.id, "s3")}
    moves = moves_recorded(db)
    assert len(moves) == report.items_switched and {m.media_id for m in moves} == {
        item.id for item in [*items, late] if item.id not in (items[0].id, items[3].id)}
    assert {(m.actor, str(m.before), str(m.after)) for m in moves} == {
        ("mediahub-cli", "{'storage_type': 'local', 'bucket_name': None}",
         f"{{'storage_type': 's3', 'bucket_name': '{bucket}'}}")}

    back = runtime_of(local, db)
    assert isinstance(back.storage, FallbackStorage)
    run = Midway(migrator_for(back, concurrency=2, delete_source_after=timedelta(0))).start()
    moderate(back, approved, "rejected")  # readability changes in the bucket while it is still read there
    assert not any(readable(new.store, key) for key in approved.keys())
    delete(back, late)
    newest = upload(back, IMAGES[3], uploaded_by="BACK")
    report = run.finish()

    assert report.ok and report.finished, report
    assert list(new.store.list()) == [], "the bucket's copies deleted"
    assert_all_on(db, back.store)
    assert reload(back, newest).storage_type == "local"
    for runtime in (old, new, back):
        runtime.close()


def moves_recorded(db) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "storage.move")
                                    .order_by(AuditEvent.id)))


def test_bucket_to_bucket_reports_a_missing_source_object_and_records_missing_digests(db, s3_server, tmp_path):
    first = f"mig-{uuid.uuid4().hex[:12]}"
    old = runtime_of(on_s3(db, tmp_path, s3_server, first), db)
    items = [upload(old, path) for path in IMAGES[:3]]
    lost, legacy = items[0], items[1]
    old.store.delete(lost.variants[0].storage_key)
    with db.session() as session:  # as stored before digests were recorded
        session.execute(update(MediaItem).where(MediaItem.id == legacy.id).values(stored_sha256=None))
        session.execute(update(MediaVariant).where(MediaVariant.media_id == legacy.id).values(content_hash=None))

    second = f"mig-{uuid.uuid4().hex[:12]}"
    new = runtime_of(on_s3(db, tmp_path, s3_server, second), db)
    report = migrator_for(new, delete_source_after=timedelta(0)).run()

    assert not report.ok and not report.finished
    assert [(p.media_id, p.key, p.store) for p in report.missing] == [(lost.id, lost.variants[0].storage_key,
                                                                       f"s3:{first}")]
    assert report.digests_recorded == len(reload(new, legacy).keys())
    assert reload(new, lost).bucket_name == first, "an item with a missing object stays where it is"
    assert {old.store.exists(key) for key in lost.keys() if key != lost.variants[0].storage_key} == {True}
    moved = [item for item in rows(db) if item.id != lost.id]
    assert {item.bucket_name for item in moved} == {second}
    for item in moved:
        assert item.stored_sha256 == sha256(new.store.get(item.original_key))
        assert all(v.content_hash == sha256(new.store.get(v.storage_key)) for v in item.variants)
        assert not any(old.store.exists(key) for key in item.keys())

    report = migrator_for(new).run()  # again: the missing object is reported again, nothing is copied twice
    assert [p.media_id for p in report.missing] == [lost.id]
    assert (report.copied, report.items_switched, report.already_there) == (0, 0, len(lost.keys()) - 1)
    for runtime in (old, new):
        runtime.close()


def test_a_rerun_keeps_the_verified_copies_and_deletes_sources_only_after_the_grace_period(sqlite_db, s3_server,
                                                                                          tmp_path):
    local = settings_for(sqlite_db, tmp_path, s3_server)
    old = runtime_of(local, sqlite_db)
    items = [upload(old, path) for path in IMAGES[:2]]
    new = runtime_of(on_s3(sqlite_db, tmp_path, s3_server, f"mig-{uuid.uuid4().hex[:12]}"), sqlite_db)

    first = migrator_for(new).run()  # the default grace period: the sources stay
    assert first.ok and not first.finished and first.sources_waiting == first.objects
    assert all(old.store.exists(key) for item in items for key in item.keys())
    # A copy vanishes from the target before the grace period ends: its source is kept.
    broken = items[0].variants[-1].storage_key
    new.store.delete(broken)
    second = migrator_for(new, delete_source_after=timedelta(0)).run()
    assert [p.key for p in second.failed] == [broken] and old.store.exists(broken)
    assert second.sources_deleted == first.objects - 1 and not second.finished
    new.store.put(broken, old.store.get(broken), "image/jpeg")  # the operator restores it
    third = migrator_for(new, delete_source_after=timedelta(0)).run()
    assert third.ok and third.finished and third.sources_deleted == 1
    assert list(old.store.list()) == []
    assert_all_on(sqlite_db, new.store)
    for runtime in (old, new):
        runtime.close()
