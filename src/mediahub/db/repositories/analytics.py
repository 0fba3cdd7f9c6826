"""Uploads over time: media rows counted per UTC day, on every database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, cast, func, literal_column, select
from sqlalchemy.orm import Session

from mediahub.db.models import MediaItem


@dataclass(frozen=True)
class DayCount:
    day: date  # UTC
    items: int
    bytes: int  # of the originals


def _utc_day(column: Any, dialect: str) -> Any:
    """The UTC calendar day of a timestamp column. SQLite and MariaDB store UTC without an offset;
    PostgreSQL's timestamptz is turned to UTC first (its own date() would use the session's time zone)."""
    if dialect == "postgresql":
        return cast(func.timezone(literal_column("'UTC'"), column), Date)
    return func.date(column)


def _as_date(value: date | str) -> date:
    """SQLite's date() answers text (YYYY-MM-DD); the others a date."""
    return date.fromisoformat(value) if isinstance(value, str) else value


class AnalyticsRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def uploads_per_day(self, since: datetime) -> list[DayCount]:
        """Items created at or after `since`, per UTC day, oldest day first; days without any are left out.

        Read from `ix_media_created_at` (created_at, byte_size). The day is computed in a subquery and
        grouped outside it, so that every database groups by the very expression it selects."""
        dialect = self.session.get_bind().dialect.name
        days = (select(_utc_day(MediaItem.created_at, dialect).label("day"), MediaItem.byte_size)
                .where(MediaItem.created_at >= since).subquery())
        query = (select(days.c.day, func.count(), func.sum(days.c.byte_size))
                 .group_by(days.c.day).order_by(days.c.day))
        return [DayCount(_as_date(day), int(items), int(size or 0)) for day, items, size in self.session.execute(query)]
