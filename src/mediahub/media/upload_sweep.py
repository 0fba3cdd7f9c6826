"""Removing uploads that will never finish: expired rows with their staged bytes, and staged bytes no row names.

An upload row lives until its expiry (its outcome is answered until then); past it, the
sweeper discards its staged bytes (S3: multipart uploads aborted, tails deleted) and then
the row, so a row never outlives its bytes unnoticed. Staged bytes that no row still
receiving names are strays: a crash between staging and the row's insert, a discard that
failed after its row went or finished, or a presigned POST form sent again after its upload
finished (the form stays valid). Those older than a grace period (a row may be about to name
them) are discarded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from mediahub.db.repositories.uploads import UploadRepository
from mediahub.db.session import Database
from mediahub.errors import MediaHubError
from mediahub.media.keys import INCOMING_PREFIX
from mediahub.storage.staging import Staging

log = logging.getLogger(__name__)

BATCH = 100  # expired rows taken (and locked) per transaction
STRAY_GRACE = timedelta(hours=1)  # the sweeper's: longer than any request between staging and its row


@dataclass(frozen=True)
class UploadSweep:
    expired: int = 0  # rows removed with their staged bytes
    strays: int = 0  # staged uploads without a row discarded


def sweep_uploads(database: Database, staging: Staging, now: datetime, grace: timedelta) -> UploadSweep:
    """One pass; an upload whose bytes cannot be discarded now (the store is down) stays for the next."""
    return UploadSweep(expired=_remove_expired(database, staging, now),
                       strays=_discard_all(staging, stray_keys(database, staging, now - grace)))


def stray_keys(database: Database, staging: Staging, older_than: datetime) -> list[str]:
    """Staged keys last written before `older_than` that no upload row names."""
    # Listed before the rows are read, so a row committed meanwhile still counts.
    stored = list(staging.stored_keys(INCOMING_PREFIX, older_than))
    if not stored:
        return []
    with database.session() as session:
        named = UploadRepository(session).storage_keys(INCOMING_PREFIX)
    return [key for key in stored if key not in named]


def _remove_expired(database: Database, staging: Staging, now: datetime) -> int:
    removed = 0
    while True:
        with database.session() as session:
            uploads = UploadRepository(session)
            expired = uploads.expired(now, BATCH)
            gone = [row.id for row in expired if _discarded(staging, row.storage_key)]
            uploads.remove(gone)
        removed += len(gone)
        if len(expired) < BATCH or len(gone) < len(expired):
            return removed


def _discard_all(staging: Staging, keys: list[str]) -> int:
    return sum(_discarded(staging, key) for key in keys)


def _discarded(staging: Staging, key: str) -> bool:
    try:
        staging.discard(key)
    except MediaHubError as exc:
        log.warning("could not discard staged upload %s: %s", key, exc.message)
        return False
    return True
