"""Sweeping uploads that will never finish: expired rows with their staged bytes, and staged bytes no row names.

Every database (SQLite, PostgreSQL, MariaDB) times both staging backends (local disk, S3).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mediahub.db.models import Upload
from mediahub.db.repositories.uploads import UploadRepository
from mediahub.db.session import Database
from mediahub.errors import StorageUnavailable
from mediahub.jobs.sweeper import Sweeper
from mediahub.media.keys import INCOMING_PREFIX, incoming_key
from mediahub.media.upload_sweep import sweep_uploads
from mediahub.runtime import Runtime
from mediahub.storage.local_staging import LocalStaging
from mediahub.storage.s3 import S3Storage
from mediahub.storage.s3_staging import S3Staging
from mediahub.storage.staging import Staged, Staging
from tests.support.faults import Passthrough
from tests.support.s3_server import MB

P = 5 * MB
GRACE = timedelta(hours=1)
LATER = datetime.now(timezone.utc) + timedelta(days=1)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def staging(request: pytest.FixtureRequest, tmp_path: Path) -> Staging:
    if request.param == "local":
        return LocalStaging(tmp_path / "staging")
    storage: S3Storage = request.getfixturevalue("s3_storage")
    return S3Staging(storage, P, tmp_path / "tmp")


class FailingDiscards(Passthrough):
    """A real staging whose discards fail as an unreachable store's do."""

    def discard(self, key: str) -> None:
        raise StorageUnavailable("injected: store unreachable", code="storage_unavailable")


def stage(staging: Staging, key: str, size: int = P + 3) -> Staged:
    """Bytes of an upload in progress: on S3 a multipart upload with a part and a tail."""
    with staging.writer(key, staging.begin(key)) as writer:
        writer.write(b"x" * size)
        return writer.persist()


def add_upload(db: Database, staging: Staging, expires_in: timedelta, *, leased_for: timedelta | None = None,
               stored: bool = True) -> Upload:
    public_id = secrets.token_hex(16)
    key = incoming_key("tus", public_id)
    staged = stage(staging, key) if stored else staging.begin(key)
    now = datetime.now(timezone.utc)
    with db.session() as session:
        upload = UploadRepository(session).add(Upload(
            public_id=public_id, transport="tus", created_by="user-1", principal={}, length=2 * P,
            offset=staged.size, storage_key=key, staging=staged.state, expires_at=now + expires_in,
            lease_token=secrets.token_hex(8) if leased_for else None,
            lease_until=now + leased_for if leased_for else None,
        ))
        session.expunge(upload)
    return upload


def rows(db: Database) -> set[str]:
    with db.session() as session:
        return UploadRepository(session).storage_keys(INCOMING_PREFIX)


def staged_keys(staging: Staging) -> set[str]:
    return set(staging.stored_keys(INCOMING_PREFIX, LATER))


def test_expired_uploads_go_with_their_bytes(db: Database, staging: Staging) -> None:
    live = add_upload(db, staging, timedelta(hours=1))
    expired = add_upload(db, staging, -timedelta(minutes=1))
    held = add_upload(db, staging, -timedelta(minutes=1), leased_for=timedelta(minutes=1))  # being ingested
    never_written = add_upload(db, staging, -timedelta(minutes=1), stored=False)

    swept = sweep_uploads(db, staging, datetime.now(timezone.utc), GRACE)

    assert (swept.expired, swept.strays) == (2, 0)
    assert rows(db) == staged_keys(staging) == {live.storage_key, held.storage_key}
    assert expired.storage_key not in rows(db) and never_written.storage_key not in rows(db)


def test_staged_bytes_without_a_row_go_once_older_than_the_grace(db: Database, staging: Staging) -> None:
    named = add_upload(db, staging, timedelta(days=1))
    stray = incoming_key("tus", secrets.token_hex(16))  # staged, then the process died before the row
    stage(staging, stray)

    young = sweep_uploads(db, staging, datetime.now(timezone.utc), GRACE)
    old = sweep_uploads(db, staging, datetime.now(timezone.utc) + 2 * GRACE, GRACE)

    assert (young.strays, old.strays) == (0, 1)
    assert staged_keys(staging) == {named.storage_key}
    assert rows(db) == {named.storage_key}


def test_an_upload_whose_bytes_cannot_be_discarded_keeps_its_row(db: Database, staging: Staging) -> None:
    expired = add_upload(db, staging, -timedelta(minutes=1))

    swept = sweep_uploads(db, FailingDiscards(staging), datetime.now(timezone.utc), GRACE)
    assert swept.expired == 0 and rows(db) == {expired.storage_key}

    assert sweep_uploads(db, staging, datetime.now(timezone.utc), GRACE).expired == 1
    assert rows(db) == staged_keys(staging) == set()


def wait_until_swept(db: Database, key: str) -> None:
    deadline = time.monotonic() + 10
    while key in rows(db) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_sweeper_sweeps_uploads_each_round(sqlite_db: Database, staging: Staging) -> None:
    expired = add_upload(sqlite_db, staging, -timedelta(minutes=1))
    sweeper = Sweeper(sqlite_db, None, 0.05, staging=staging).start()
    try:
        wait_until_swept(sqlite_db, expired.storage_key)
    finally:
        sweeper.stop()

    assert rows(sqlite_db) == staged_keys(staging) == set()


def test_the_runtimes_sweeper_sweeps_its_staging(make: Callable[..., Runtime], tmp_path: Path) -> None:
    runtime = make(sweep_interval_seconds=0.05)
    assert isinstance(runtime.staging, LocalStaging) and runtime.staging.root == tmp_path / "tmp" / "staging"
    expired = add_upload(runtime.database, runtime.staging, -timedelta(minutes=1))

    runtime.start_sweeper()
    try:
        wait_until_swept(runtime.database, expired.storage_key)
    finally:
        runtime.sweeper.stop()

    assert rows(runtime.database) == staged_keys(runtime.staging) == set()
