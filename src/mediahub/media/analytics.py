"""Uploads over time, for moderators and admins: items per day, week or month, from the per-day counts.

The database counts the items created per UTC day (db/repositories/analytics.py); longer periods
are added up here, so the query is the same on every database and returns at most one row per day.
Storage by group is `MediaService.storage_analytics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal

from mediahub.db.models import utcnow
from mediahub.db.repositories.analytics import AnalyticsRepository
from mediahub.db.session import Database
from mediahub.media import access
from mediahub.media.access import Principal

Interval = Literal["day", "week", "month"]
MAX_DAYS = 3660  # ten years


def default_interval(days: int) -> Interval:
    """Days for a month or a quarter, weeks up to a year, months beyond."""
    if days <= 92:
        return "day"
    return "week" if days <= 366 else "month"


def period_start(day: date, interval: Interval) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())  # Monday
    if interval == "month":
        return day.replace(day=1)
    return day


def _next_period(start: date, interval: Interval) -> date:
    if interval == "week":
        return start + timedelta(days=7)
    if interval == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


@dataclass(frozen=True)
class Bucket:
    start: date
    count: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class UploadsOverTime:
    interval: Interval
    since: date  # the first day counted
    until: date  # the last (today)
    buckets: list[Bucket]  # every period from since to until, oldest first

    @property
    def count(self) -> int:
        return sum(bucket.count for bucket in self.buckets)

    @property
    def bytes(self) -> int:
        return sum(bucket.bytes for bucket in self.buckets)


class AnalyticsService:
    def __init__(self, database: Database) -> None:
        self.database = database

    def uploads(self, principal: Principal, days: int, interval: Interval | None = None,
                today: date | None = None) -> UploadsOverTime:
        """Items uploaded in the last `days` days up to `today` (UTC; None: now), per `interval` (None: by
        `default_interval`). Items deleted since are not counted: the rows are what is counted."""
        access.require_moderator(principal)
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days must be 1..{MAX_DAYS}")  # the API validates before this
        interval = interval or default_interval(days)
        until = today or utcnow().date()
        since = until - timedelta(days=days - 1)
        with self.database.session() as session:
            per_day = AnalyticsRepository(session).uploads_per_day(datetime.combine(since, time(), timezone.utc))
        totals: dict[date, tuple[int, int]] = {}
        for row in per_day:
            if row.day > until:  # uploaded after `today` (a caller's own `today`)
                continue
            start = period_start(row.day, interval)
            count, size = totals.get(start, (0, 0))
            totals[start] = (count + row.items, size + row.bytes)
        buckets = []
        start = period_start(since, interval)
        while start <= until:
            buckets.append(Bucket(start, *totals.get(start, (0, 0))))
            start = _next_period(start, interval)
        return UploadsOverTime(interval, since, until, buckets)
