"""The stores media rows record, storage migration runs and their journal (media/storage_migration.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, not_, or_, select
from sqlalchemy.orm import Session

from mediahub.db.models import MIGRATION_DONE, MIGRATION_RUNNING, MediaItem, MigratedObject, StorageMigration, utcnow

Store = tuple[str, str | None]  # (storage_type, bucket_name) as rows record them


def _on(store: Store) -> Any:
    kind, bucket = store
    return and_(MediaItem.storage_type == kind,
                MediaItem.bucket_name.is_(None) if bucket is None else MediaItem.bucket_name == bucket)


class StorageMigrationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # The stores rows record

    def stores_in_use(self) -> list[Store]:
        """Every (storage_type, bucket_name) some row records: a seek of ix_media_store for each, whatever the
        number of rows (a loose index scan, spelt out: no database does it by itself for DISTINCT)."""
        found: list[Store] = []
        kind: str | None = None
        while True:
            after_kind = [] if kind is None else [MediaItem.storage_type > kind]
            kind = self.session.scalar(select(MediaItem.storage_type).where(*after_kind)
                                       .order_by(MediaItem.storage_type).limit(1))
            if kind is None:
                return found
            if self.session.scalar(select(MediaItem.id).where(_on((kind, None))).limit(1)) is not None:
                found.append((kind, None))
            bucket: str | None = None
            while True:
                after_bucket = [MediaItem.bucket_name.is_not(None)] if bucket is None else \
                    [MediaItem.bucket_name > bucket]
                bucket = self.session.scalar(select(MediaItem.bucket_name)
                                             .where(MediaItem.storage_type == kind, *after_bucket)
                                             .order_by(MediaItem.bucket_name).limit(1))
                if bucket is None:
                    break
                found.append((kind, bucket))

    def sources_of_running(self) -> list[Store]:
        """The source stores of the migrations still running: their copies are not all deleted yet."""
        runs = self.session.scalars(select(StorageMigration).where(StorageMigration.state == MIGRATION_RUNNING))
        return list(dict.fromkeys((kind, bucket) for run in runs for kind, bucket in run.sources))

    def ids_off(self, target: Store, after_id: int, limit: int) -> list[int]:
        """The next `limit` ids after `after_id` of the items whose rows record another store than `target`."""
        return list(self.session.scalars(select(MediaItem.id).where(MediaItem.id > after_id, not_(_on(target)))
                                         .order_by(MediaItem.id).limit(limit)))

    def items_off(self, target: Store, after_id: int, limit: int) -> list[MediaItem]:
        """As `ids_off`, the rows with their variants."""
        return list(self.session.scalars(select(MediaItem).where(MediaItem.id > after_id, not_(_on(target)))
                                         .order_by(MediaItem.id).limit(limit)))

    # Runs

    def open_run(self, target: Store, sources: Iterable[Store]) -> StorageMigration:
        """The running migration towards `target` (a rerun continues it), else a new one; `sources` join its own.

        A migration running towards another store is finished as far as this one is concerned: its
        switched items are the ones this one moves on, its sources stay listed until it ends.
        """
        kind, bucket = target
        run = self.session.scalars(
            select(StorageMigration).where(StorageMigration.state == MIGRATION_RUNNING,
                                           StorageMigration.target_type == kind,
                                           StorageMigration.target_bucket.is_(None) if bucket is None
                                           else StorageMigration.target_bucket == bucket)
            .order_by(StorageMigration.id).limit(1).with_for_update()).first()
        if run is None:
            run = StorageMigration(target_type=kind, target_bucket=bucket, sources=[], state=MIGRATION_RUNNING)
            self.session.add(run)
        known = [tuple(pair) for pair in run.sources]
        added = [list(store) for store in sources if store not in known and store != target]
        if added:
            run.sources = [*run.sources, *added]
        self.session.flush()
        return run

    def finish(self, run_id: int) -> None:
        run = self.session.get(StorageMigration, run_id)
        if run is not None:
            run.state, run.finished_at = MIGRATION_DONE, utcnow()

    # The journal

    def journal(self, run_id: int, media_id: int) -> dict[str, MigratedObject]:
        """The item's journal rows in this run, by key."""
        rows = self.session.scalars(select(MigratedObject).where(MigratedObject.run_id == run_id,
                                                                 MigratedObject.media_id == media_id))
        return {row.storage_key: row for row in rows}

    def record(self, run_id: int, media_id: int, key: str, source: Store, **values: Any) -> None:
        """Set the journal row of (run, item, key) to `values`, inserting it the first time."""
        row = self.session.scalars(select(MigratedObject).where(
            MigratedObject.run_id == run_id, MigratedObject.media_id == media_id,
            MigratedObject.storage_key == key)).one_or_none()
        if row is None:
            values.setdefault("copied", False)
            row = MigratedObject(run_id=run_id, media_id=media_id, storage_key=key, source_type=source[0],
                                 source_bucket=source[1], **values)
            self.session.add(row)
        else:
            for name, value in values.items():
                setattr(row, name, value)
        self.session.flush()

    def set_state(self, run_id: int, media_id: int, keys: Iterable[str], state: str, **values: Any) -> None:
        for row in self.journal(run_id, media_id).values():
            if row.storage_key in keys:
                row.state = state
                for name, value in values.items():
                    setattr(row, name, value)
        self.session.flush()

    def in_state(self, run_id: int, state: str, after_id: int, limit: int,
                 switched_before: datetime | None = None) -> list[MigratedObject]:
        """The run's journal rows in `state` after `after_id`, in id order (those switched before a time)."""
        conditions = [MigratedObject.run_id == run_id, MigratedObject.state == state, MigratedObject.id > after_id]
        if switched_before is not None:
            conditions.append(or_(MigratedObject.switched_at.is_(None), MigratedObject.switched_at <= switched_before))
        return list(self.session.scalars(select(MigratedObject).where(*conditions)
                                         .order_by(MigratedObject.id).limit(limit)))

    def count_in_states(self, run_id: int, states: Iterable[str]) -> int:
        return self.session.scalar(select(func.count()).select_from(MigratedObject).where(
            MigratedObject.run_id == run_id, MigratedObject.state.in_(list(states)))) or 0

    def any_off(self, target: Store) -> bool:
        return self.session.scalar(select(MediaItem.id).where(not_(_on(target))).limit(1)) is not None
