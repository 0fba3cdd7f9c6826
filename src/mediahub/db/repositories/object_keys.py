"""Every object key the database knows, in key order, and the checkpoints of `mediahub verify`.

Keys are the originals and variants the media rows name and the objects queued for deletion.
They are read in byte order (the key columns compare bytes on every backend: models.ObjectKey)
through their indexes, a page at a time from where the last one ended (keyset paging), so a
pass over 10^8 keys holds one page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from mediahub.db.models import MediaItem, MediaVariant, PendingDelete, VerifyCheckpoint

ID_BATCH = 500  # keys per IN list


@dataclass(frozen=True)
class KnownKey:
    key: str
    media_ids: tuple[int, ...]  # the items whose original or variant it is; empty: only queued for deletion


@dataclass(frozen=True)
class _Source:
    key: Any
    media_id: Any | None  # None: pending deletes, which belong to no item any more


SOURCES = (
    _Source(MediaItem.original_key, MediaItem.id),
    _Source(MediaVariant.storage_key, MediaVariant.media_id),
    _Source(PendingDelete.storage_key, None),
)


class ObjectKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(self, after: str | None, limit: int) -> list[KnownKey]:
        """The next known keys after `after` (None: from the first), ascending, about `limit` of them.

        Each source gives its next `limit` rows by key; the page ends before the smallest last key
        of the sources that filled theirs (more rows of that key may follow), so every key on it
        comes with all the rows that name it. Empty: no key after `after`.
        """
        rows: list[tuple[str, int | None]] = []
        end: str | None = None
        for source in SOURCES:
            found = self._rows(source, source.key > after if after is not None else None, limit)
            rows += found
            if len(found) == limit:
                end = found[-1][0] if end is None else min(end, found[-1][0])
        if end is not None:
            rows = [row for row in rows if row[0] < end]
            if not rows:  # one key named by `limit` rows or more: that key alone, whole
                rows = [row for source in SOURCES for row in self._rows(source, source.key == end, None)]
        return _grouped(rows)

    def _rows(self, source: _Source, where: ColumnElement[bool] | None, limit: int | None) -> list[tuple[str, int | None]]:
        columns = [source.key] if source.media_id is None else [source.key, source.media_id]
        query = select(*columns).order_by(source.key)
        if where is not None:
            query = query.where(where)
        if limit is not None:
            query = query.limit(limit)
        return [(row[0], row[1] if source.media_id is not None else None) for row in self.session.execute(query)]

    def named(self, keys: Iterable[str]) -> dict[str, tuple[int, ...]]:
        """Which of `keys` rows name now, and the items that do (queued deletes left out)."""
        keys = sorted(set(keys))
        rows = []
        for start in range(0, len(keys), ID_BATCH):
            batch = keys[start:start + ID_BATCH]
            for source in SOURCES:
                if source.media_id is not None:
                    rows += self._rows(source, source.key.in_(batch), None)
        return {known.key: known.media_ids for known in _grouped(rows)}

    def known(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` the database knows now: named by a row or queued for deletion."""
        keys = sorted(set(keys))
        found: set[str] = set()
        for start in range(0, len(keys), ID_BATCH):
            batch = keys[start:start + ID_BATCH]
            for source in SOURCES:
                found.update(self.session.scalars(select(source.key).where(source.key.in_(batch))))
        return found

    def checkpoint(self, store: str) -> VerifyCheckpoint | None:
        return self.session.get(VerifyCheckpoint, store)

    def save_checkpoint(self, store: str, after_key: str, counts: dict[str, int], seconds: float,
                        started_at: datetime) -> None:
        """Record (or move) the store's checkpoint; `counts`: objects, keys_in_db, stray, missing, removed, marked."""
        row = self.checkpoint(store)
        if row is None:
            row = VerifyCheckpoint(store=store, started_at=started_at)
            self.session.add(row)
        row.after_key, row.seconds = after_key, seconds
        for name, value in counts.items():
            setattr(row, name, value)
        self.session.flush()

    def clear_checkpoint(self, store: str) -> None:
        row = self.checkpoint(store)
        if row is not None:
            self.session.delete(row)
            self.session.flush()


def _grouped(rows: list[tuple[str, int | None]]) -> list[KnownKey]:
    by_key: dict[str, set[int]] = {}
    for key, media_id in rows:
        ids = by_key.setdefault(key, set())
        if media_id is not None:
            ids.add(media_id)
    return [KnownKey(key, tuple(sorted(ids))) for key, ids in sorted(by_key.items())]
