"""Consistency between rows and stored objects, and its repair.

A crash between writing bytes and committing the row leaves stray objects; a
lost object leaves a row that points at nothing. `verify` lists both;
`repair` deletes strays (older than a grace period, so uploads in flight are
never touched) and marks broken rows `failed` with the keys they miss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from mediahub.db.repositories import MediaRepository, PendingDeleteRepository
from mediahub.db.session import Database
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.storage.base import Storage

Progress = Callable[[int], None]


@dataclass
class VerifyReport:
    objects: int = 0
    keys_in_db: int = 0
    stray: list[str] = field(default_factory=list)
    missing: dict[int, list[str]] = field(default_factory=dict)  # media id -> keys
    removed: int = 0
    marked: int = 0

    @property
    def clean(self) -> bool:
        return not self.stray and not self.missing


def verify(database: Database, storage: Storage, *, grace: timedelta = timedelta(minutes=15),
           progress: Progress | None = None) -> VerifyReport:
    report = VerifyReport()
    cutoff = datetime.now(timezone.utc) - grace
    stored: dict[str, datetime | None] = {}
    for info in storage.list():
        stored[info.key] = info.last_modified
        report.objects += 1
        if progress:
            progress(1)
    with database.session() as session:
        known = PendingDeleteRepository(session).keys()
        for media_id, key in MediaRepository(session).all_keys():
            report.keys_in_db += 1
            known.add(key)
            if key not in stored:
                report.missing.setdefault(media_id, []).append(key)
    for key, modified in stored.items():
        if key not in known and (modified is None or modified < cutoff):
            report.stray.append(key)
    report.stray.sort()
    return report


def repair(database: Database, storage: Storage, report: VerifyReport) -> VerifyReport:
    """Delete the stray objects and mark rows with missing objects as failed."""
    if report.stray:
        failed = storage.delete_many(report.stray)
        report.removed = len(report.stray) - len(failed)
    with database.session() as session:
        repo = MediaRepository(session)
        for media_id, keys in report.missing.items():
            item = repo.get(media_id)
            if item is None:
                continue
            item.processing_status = "failed"
            item.meta = {**(item.meta or {}), "missing_keys": keys}
            report.marked += 1
    purge_pending_deletes(database, storage)
    return report

