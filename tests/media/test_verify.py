"""`mediahub verify` as a merge of two key-ordered listings: exact findings, checked again, resumable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mediahub.config import Settings
from mediahub.db import migrate
from mediahub.db.models import MediaItem, MediaVariant, PendingDelete
from mediahub.db.repositories import MediaRepository
from mediahub.db.repositories.object_keys import KnownKey, ObjectKeyRepository
from mediahub.db.session import Database
from mediahub.errors import StorageUnavailable
from mediahub.media import verify as verify_service
from mediahub.media.keys import INCOMING_PREFIX, incoming_key
from mediahub.storage.base import Storage
from mediahub.storage.factory import build_staging
from mediahub.storage.local_staging import LocalStaging
from tests.db.test_repositories import make_item
from tests.support.databases import SERVERS, _database_name
from tests.media.test_upload_sweep import add_upload, stage
from tests.support.faults import Passthrough
from tests.support.s3_server import MB
from tests.support.services import require_service

NOW = timedelta(0)

# Keys whose names hold `-` and `.`, which sort below `/`: `a/b-c/...` and `a/b.c/...` come before `a/b/...`,
# `a-b...` before `a/...`; a store or database that listed folder by folder, or compared linguistically,
# would interleave them differently and the merge would report false findings.
TRICKY = ["A/x.jpg", "a-b/x.jpg", "a.b/x.jpg", "a/b-c/x.jpg", "a/b.c/x.jpg", "a/b.jpg", "a/b/x.jpg", "a/b/x_s.jpg",
          "a/b0.jpg", "a0/x.jpg", "a_b/x.jpg"]
assert TRICKY == sorted(TRICKY, key=str.encode)


def add_item(db: Database, original: str, *variants: str) -> MediaItem:
    item = make_item(original_key=original, variants=[
        MediaVariant(name=f"v{n}", format="jpeg", storage_key=key, width=1, height=1, byte_size=1,
                     content_type="image/jpeg") for n, key in enumerate(variants)])
    with db.session() as session:
        return MediaRepository(session).add(item)


def put(storage: Storage, *keys: str) -> None:
    for key in keys:
        storage.put(key, b"x", "image/jpeg")


def findings(report: verify_service.VerifyReport) -> tuple[list[str], dict[int, list[str]]]:
    return report.stray, report.missing


def test_keys_with_names_below_slash_merge_in_byte_order(db: Database, local_storage: Storage) -> None:
    items = [add_item(db, key) for key in TRICKY[::2]]  # every other key is an item's original
    put(local_storage, *TRICKY[1::2])  # and the rest are stored without a row
    put(local_storage, *TRICKY[2:8:2])  # three originals are stored, the others are lost
    lost = {item.id: [item.original_key] for item in items if item.original_key not in TRICKY[2:8:2]}
    seen: list[verify_service.Finding] = []

    report = verify_service.verify(db, local_storage, grace=NOW, on_finding=seen.append)

    assert findings(report) == (TRICKY[1::2], lost)
    assert (report.objects, report.keys_in_db, report.stray_count, report.missing_count) == (
        len(TRICKY[1::2]) + 3, len(items), len(TRICKY[1::2]), len(lost))
    assert [f.key for f in seen if f.kind == "stray"] == TRICKY[1::2]


def test_shared_objects_and_queued_deletes_are_known(db: Database, any_storage: Storage) -> None:
    item = add_item(db, "p/1/o.jpg", "p/1/o.jpg", "p/1/o_m.jpg", "p/1/o_m.jpg")
    with db.session() as session:
        session.add_all([PendingDelete(storage_key="p/0/gone.jpg"), PendingDelete(storage_key="p/0/gone.jpg")])
    put(any_storage, "p/1/o.jpg", "p/1/o_m.jpg", "p/0/gone.jpg")

    report = verify_service.verify(db, any_storage, grace=NOW)

    assert report.clean and (report.objects, report.keys_in_db) == (3, 2)
    with db.session() as session:
        assert ObjectKeyRepository(session).page(None, 1) == [KnownKey("p/0/gone.jpg", ())]
        assert ObjectKeyRepository(session).page("p/0/gone.jpg", 1) == [KnownKey("p/1/o.jpg", (item.id,))]


def test_the_database_pages_keys_in_byte_order_whatever_the_page_size(db: Database) -> None:
    expected = []
    for n, key in enumerate(TRICKY):
        item = add_item(db, key, key, f"{key}.v", f"{key}.v")  # a variant naming the original, two one object
        expected += [KnownKey(key, (item.id,)), KnownKey(f"{key}.v", (item.id,))]
        if n % 3 == 0:
            with db.session() as session:
                session.add(PendingDelete(storage_key=f"{key}.v"))
    expected.sort(key=lambda known: known.key.encode())

    for limit in (1, 2, 3, 1000):
        listed: list[KnownKey] = []
        after = None
        with db.session() as session:
            while page := ObjectKeyRepository(session).page(after, limit):
                listed += page
                after = page[-1].key
        assert listed == expected, limit


def test_only_the_sample_is_kept_but_every_finding_is_counted_and_streamed(db: Database, local_storage: Storage,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_service, "SAMPLE", 2)
    monkeypatch.setattr(verify_service, "BATCH", 3)
    strays = [f"s/{n:02}.jpg" for n in range(7)]
    put(local_storage, *strays)
    seen: list[str] = []

    report = verify_service.verify(db, local_storage, grace=NOW, on_finding=lambda f: seen.append(f.key))

    assert (report.stray, report.stray_count, seen) == (strays[:2], 7, strays)


class ChangesWhileListing(Passthrough):
    """A store whose listing, right after it yields `when`, lets `change` happen: what other processes
    do after verify read the database's page of keys, or after the listing passed a key."""

    def __init__(self, inner: Storage, when: str, change: Callable[[], None]) -> None:
        super().__init__(inner)
        self.when, self.change = when, change

    def list(self, prefix: str = "", after: str | None = None) -> Any:
        for info in self.inner.list(prefix, after):
            yield info
            if info.key == self.when:
                self.change()


def test_changes_made_while_the_listing_runs_are_not_findings(db: Database, local_storage: Storage) -> None:
    add_item(db, "k/1.jpg")
    lost = add_item(db, "k/4.jpg")  # its object is never stored: missing
    gone = add_item(db, "k/5.jpg")  # nor is this one's, but its row is deleted before verify checks again
    put(local_storage, "k/1.jpg", "k/2.jpg")  # k/2: an upload whose row is not committed yet
    late = add_item(db, "k/0.jpg")  # a row whose object the listing has passed before it is stored

    def meanwhile() -> None:
        add_item(db, "k/2.jpg")
        local_storage.put(late.original_key, b"x", "image/jpeg")
        with db.session() as session:
            MediaRepository(session).delete(session.get(MediaItem, gone.id))

    report = verify_service.verify(db, ChangesWhileListing(local_storage, "k/1.jpg", meanwhile), grace=NOW)

    assert findings(report) == ([], {lost.id: ["k/4.jpg"]})
    assert (report.stray_count, report.missing_count) == (0, 1)


class StopsAfter(Passthrough):
    """A store whose listing fails after `count` objects, as a dropped connection would."""

    def __init__(self, inner: Storage, count: int) -> None:
        super().__init__(inner)
        self.count = count

    def list(self, prefix: str = "", after: str | None = None) -> Any:
        for n, info in enumerate(self.inner.list(prefix, after)):
            if n == self.count:
                raise StorageUnavailable("injected: listing cut")
            yield info


def test_an_interrupted_pass_resumes_after_its_checkpoint_with_its_counts(db: Database,
                                                                          local_storage: Storage) -> None:
    keys = [f"r/{n:02}.jpg" for n in range(30)]
    for key in keys[:20]:
        add_item(db, key)
    put(local_storage, *keys[5:])  # 0-4 missing, 20-29 stray
    expected = verify_service.verify(db, local_storage, grace=NOW)

    with pytest.raises(StorageUnavailable):
        verify_service.verify(db, StopsAfter(local_storage, 17), grace=NOW, repair=True, checkpoint_every=10)
    with db.session() as session:
        saved = ObjectKeyRepository(session).checkpoint(local_storage.location)
    assert saved is not None and saved.after_key == keys[14] and saved.objects == 10

    seen: list[str] = []
    resumed = verify_service.verify(db, local_storage, grace=NOW, repair=True, resume=True,
                                    on_finding=lambda f: seen.append(f.key))

    assert resumed.resumed_after == keys[14] and resumed.objects_this_run == 15
    assert resumed.counts() | {"removed": 0, "marked": 0} == expected.counts()
    assert (resumed.removed, resumed.marked) == (10, 5)
    assert seen == keys[20:], "findings before the checkpoint are not reported again"
    with db.session() as session:
        assert ObjectKeyRepository(session).checkpoint(local_storage.location) is None
    assert verify_service.verify(db, local_storage, grace=NOW, resume=True).stray_count == 0


def test_a_pass_without_resume_starts_over(db: Database, local_storage: Storage) -> None:
    put(local_storage, *(f"n/{n}.jpg" for n in range(6)))
    with pytest.raises(StorageUnavailable):
        verify_service.verify(db, StopsAfter(local_storage, 5), grace=NOW, checkpoint_every=2)

    report = verify_service.verify(db, local_storage, grace=NOW)

    assert (report.resumed_after, report.objects, report.stray_count) == (None, 6, 6)


@pytest.mark.postgres
def test_keys_sort_as_bytes_in_a_postgresql_database_with_a_linguistic_collation(tmp_path) -> None:
    """ICU's en-US collation compares letters before case: `a/b.jpg` < `A/x.jpg` there, unlike in bytes. The
    key columns compare bytes anyway (C collation), through their indexes."""
    server = SERVERS["postgresql"]
    require_service(server.name, "127.0.0.1", server.port)
    name = _database_name()
    admin = create_engine(server.url(server.admin_database), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                                    "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"))
        url = server.url(name)
        with migrate.migrated(url) as db:
            with db.session() as session:
                assert session.scalar(text("SELECT 'a/b.jpg' < 'A/x.jpg'")), "the database sorts linguistically"
            for key in TRICKY:
                add_item(db, key)
            with db.session() as session:
                listed = [known.key for known in ObjectKeyRepository(session).page(None, 4)]
            assert listed == sorted(TRICKY, key=str.encode)[:len(listed)] and len(listed) >= 3
    finally:
        with admin.connect() as connection:
            connection.execute(text(server.drop_statement.format(name=name)))
        admin.dispose()


def test_staged_uploads_are_not_stray_media_but_uploads_left_over(db: Database, any_storage: Storage,
                                                                   tmp_path: Path) -> None:
    staging = build_staging(Settings(_env_file=None, temp_dir=tmp_path / "tmp", upload_part_size=5 * MB),
                            any_storage)
    add_item(db, "p/1/o.jpg")
    put(any_storage, "p/1/o.jpg")
    live = add_upload(db, staging, timedelta(hours=1))
    expired = add_upload(db, staging, -timedelta(minutes=1))
    stray = incoming_key("tus", "0" * 32)
    stage(staging, stray)
    seen: list[verify_service.Finding] = []

    report = verify_service.verify(db, any_storage, staging=staging, grace=NOW, on_finding=seen.append)

    assert (report.stray, report.missing, report.objects) == ([], {}, 1)
    assert (report.expired_uploads, report.stray_uploads) == ([expired.storage_key], [stray])
    assert (report.expired_upload_count, report.stray_upload_count, report.clean) == (1, 1, False)
    assert [(f.kind, f.key) for f in seen] == [("expired_upload", expired.storage_key), ("stray_upload", stray)]
    assert verify_service.verify(db, any_storage, grace=NOW).clean, "without the staging: media only"

    repaired = verify_service.verify(db, any_storage, staging=staging, grace=NOW, repair=True)

    assert repaired.uploads_removed == 2
    assert verify_service.verify(db, any_storage, staging=staging, grace=NOW).clean
    assert set(staging.stored_keys(INCOMING_PREFIX, datetime.now(timezone.utc) + timedelta(days=1))) == {
        live.storage_key}


def test_young_uploads_left_over_wait_for_the_grace_period(db: Database, local_storage: Storage,
                                                           tmp_path: Path) -> None:
    staging = LocalStaging(tmp_path / "staging")
    add_upload(db, staging, -timedelta(minutes=1))
    stage(staging, incoming_key("tus", "0" * 32))

    assert verify_service.verify(db, local_storage, staging=staging, grace=timedelta(minutes=15)).clean
