"""Storage and upload analytics (moderators and admins): charts drawn on the server, each with its numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from jinja2.filters import do_filesizeformat
from starlette.responses import Response

from mediahub.api.deps import AnalyticsDep, MediaServiceDep
from mediahub.api.library.charts import Chart, bar_chart, column_chart
from mediahub.api.library.web import SignedInViewerDep, render
from mediahub.media.analytics import MAX_DAYS, Interval, UploadsOverTime

router = APIRouter(prefix="/library", include_in_schema=False)

PERIODS = ((30, "30 days"), (90, "90 days"), (365, "12 months"), (1095, "3 years"))
BREAKDOWNS = (("entity_type", "Storage by entity type", "Entity type"),
              ("media_type", "Storage by media kind", "Media kind"),
              ("moderation_status", "Storage by moderation status", "Status"))


@dataclass(frozen=True)
class Row:
    name: str
    count: int
    bytes: int  # of the originals
    object_bytes: int  # of the originals and their variants


@dataclass(frozen=True)
class Breakdown:
    chart: Chart
    heading: str  # of the table's first column
    rows: list[Row]


def number(count: int) -> str:
    return f"{count:,}"


def period_label(start: date, interval: Interval, *, short: bool) -> str:
    """How a period is named: under a column (`short`) or in the table."""
    if interval == "month":
        return start.strftime("%b %Y" if short else "%B %Y")
    text = f"{start:%b} {start.day}" if short else start.isoformat()
    return text if short or interval == "day" else f"week of {text}"


def _uploads_chart(uploads: UploadsOverTime) -> Chart:
    points = [(period_label(b.start, uploads.interval, short=True), b.count) for b in uploads.buckets]
    busiest = max(uploads.buckets, key=lambda bucket: bucket.count)
    summary = (f"{number(uploads.count)} items uploaded from {uploads.since} to {uploads.until}, per "
               f"{uploads.interval}; the most in one {uploads.interval}: {number(busiest.count)} "
               f"({period_label(busiest.start, uploads.interval, short=False)}).")
    return column_chart("uploads", f"Uploads per {uploads.interval}", points, number, summary)


@router.get("/analytics", summary="Storage and upload analytics")
def analytics_page(request: Request, viewer: SignedInViewerDep, media: MediaServiceDep, analytics: AnalyticsDep,
                   days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = PERIODS[0][0]) -> Response:
    assert viewer.principal is not None
    storage = media.storage_analytics(viewer.principal)  # moderators and admins, as the API
    uploads = analytics.uploads(viewer.principal, days)
    breakdowns = []
    for column, title, heading in BREAKDOWNS:
        rows = sorted((Row(value, usage["count"], usage["bytes"], usage["object_bytes"])
                       for value, usage in storage.by_group.get(column, {}).items()),
                      key=lambda row: (-row.bytes, row.name))
        chart = bar_chart(f"storage-{column.replace('_', '-')}", f"{title} (originals)",
                          [(row.name, row.bytes) for row in rows], do_filesizeformat)
        breakdowns.append(Breakdown(chart, heading, rows))
    kinds = breakdowns[1].rows
    overhead = bar_chart("variant-overhead", "Originals and variants by media kind",
                         [(f"{row.name} {part}", size) for row in kinds
                          for part, size in (("originals", row.bytes), ("variants", row.object_bytes - row.bytes))],
                         do_filesizeformat)
    originals = sum(row.bytes for row in kinds)  # each item has one media kind: the whole library
    return render(request, viewer, "analytics.html", {
        "breakdowns": breakdowns, "kinds": kinds, "overhead": overhead,
        "items": sum(row.count for row in kinds), "originals": originals,
        "stored": storage.storage.bytes, "objects": storage.storage.objects,
        "uploads": uploads, "uploads_chart": _uploads_chart(uploads), "period_label": period_label,
        "periods": PERIODS, "days": days,
    })
