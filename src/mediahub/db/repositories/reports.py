"""Users' reports on items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from mediahub.db.models import MediaReport, utcnow


class ReportRepository:
    """Users' reports on items: open until a moderator decides or dismisses them."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def find_open(self, media_id: int, reporter: str) -> MediaReport | None:
        query = select(MediaReport).where(MediaReport.media_id == media_id, MediaReport.reporter == reporter,
                                          MediaReport.open_marker.is_not(None))
        return self.session.scalars(query).one_or_none()

    def open(self, media_id: int, reporter: str, reason: str | None) -> MediaReport:
        """A new open report, or the reporter's open one on this item (a concurrent twin included)."""
        report = MediaReport(media_id=media_id, reporter=reporter, reason=reason, open_marker=True)
        try:
            with self.session.begin_nested():
                self.session.add(report)
        except IntegrityError:
            existing = self.find_open(media_id, reporter)
            if existing is None:
                raise
            return existing
        return report

    def fresh_count(self, media_id: int) -> int:
        """Open reports by reporters with no earlier, closed report on the item: a user whose report a
        moderator has ruled on counts towards hiding the item no more."""
        earlier = aliased(MediaReport)
        ruled = select(earlier.id).where(earlier.media_id == MediaReport.media_id,
                                         earlier.reporter == MediaReport.reporter, earlier.open_marker.is_(None))
        query = select(func.count(MediaReport.id)).where(MediaReport.media_id == media_id,
                                                         MediaReport.open_marker.is_not(None), ~ruled.exists())
        return self.session.scalar(query) or 0

    def made_since(self, reporter: str, since: datetime) -> tuple[int, datetime | None]:
        """How many reports `reporter` made after `since`, and when the oldest of them was."""
        query = select(func.count(MediaReport.id), func.min(MediaReport.created_at)).where(
            MediaReport.reporter == reporter, MediaReport.created_at > since)
        count, oldest = self.session.execute(query).one()
        return int(count or 0), oldest

    def close_all(self, media_id: int, resolution: str) -> int:
        """Close the item's open reports with `resolution`; how many were open."""
        result: Any = self.session.execute(
            update(MediaReport)
            .where(MediaReport.media_id == media_id, MediaReport.open_marker.is_not(None))
            .values(open_marker=None, resolution=resolution, closed_at=utcnow())
        )
        return int(result.rowcount or 0)

    def open_by_item(self, media_ids: list[int], per_item: int
                     ) -> dict[int, tuple[int, list[MediaReport]]]:
        """Per item: its open report count and its `per_item` oldest open reports."""
        if not media_ids:
            return {}
        is_open = (MediaReport.media_id.in_(media_ids), MediaReport.open_marker.is_not(None))
        counts = self.session.execute(
            select(MediaReport.media_id, func.count(MediaReport.id)).where(*is_open).group_by(MediaReport.media_id))
        rank = func.row_number().over(partition_by=MediaReport.media_id,
                                      order_by=(MediaReport.created_at, MediaReport.id)).label("rank")
        ranked = select(MediaReport.id, rank).where(*is_open).subquery()
        first = (select(MediaReport).join(ranked, ranked.c.id == MediaReport.id).where(ranked.c.rank <= per_item)
                 .order_by(MediaReport.created_at, MediaReport.id))
        shown: dict[int, list[MediaReport]] = {}
        for report in self.session.scalars(first):
            shown.setdefault(report.media_id, []).append(report)
        return {media_id: (int(count), shown.get(media_id, [])) for media_id, count in counts}

    def for_item(self, media_id: int, limit: int) -> tuple[list[MediaReport], int]:
        """An item's reports, open and closed, newest first (at most `limit`), and how many it has."""
        total = self.session.scalar(select(func.count(MediaReport.id)).where(MediaReport.media_id == media_id))
        newest = (select(MediaReport).where(MediaReport.media_id == media_id)
                  .order_by(MediaReport.created_at.desc(), MediaReport.id.desc()).limit(limit))
        return list(self.session.scalars(newest)), int(total or 0)
