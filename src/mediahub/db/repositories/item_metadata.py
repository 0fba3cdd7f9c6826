"""One key of media rows' metadata (a value derived from the pixels): the rows without it, and setting it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from mediahub.db.models import MediaItem
from mediahub.db.repositories.media import lock_item


def _lacks(key: str) -> ColumnElement[bool]:
    # The value as text: NULL when the key is absent on every backend (SQLite's JSON_QUOTE would make it 'null').
    return MediaItem.meta[key].as_string().is_(None)


class MetadataRepository:
    """Rows by one metadata key, in the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def count_lacking(self, key: str) -> int:
        return self.session.scalar(select(func.count(MediaItem.id)).where(_lacks(key))) or 0

    def lacking(self, key: str, after_id: int, limit: int) -> list[MediaItem]:
        """The next `limit` rows after `after_id` in id order (keyset paging) whose metadata has no `key`."""
        return list(self.session.scalars(
            select(MediaItem).where(MediaItem.id > after_id, _lacks(key)).order_by(MediaItem.id).limit(limit)))

    def put(self, media_id: int, key: str, value: Any) -> bool:
        """Set one key under the row's lock (other keys, written meanwhile, are kept); False: the row is gone."""
        lock_item(self.session, media_id)
        item = self.session.get(MediaItem, media_id, populate_existing=True)
        if item is None:
            return False
        item.meta = {**(item.meta or {}), key: value}
        return True
