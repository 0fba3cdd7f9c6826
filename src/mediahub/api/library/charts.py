"""Charts drawn on the server: the shapes of a bar chart (categories) and a column chart (time), which
templates/charts.html turns into an SVG with a title and a description for screen readers.

Only geometry is worked out here, in the SVG's own units (its viewBox): the SVG scales to the width of
its container, and the numbers are also in a table beside each chart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Format = Callable[[int], str]

BAR_WIDTH = 480  # viewBox width of a bar chart: at a phone's 390 px its text is still legible
LABEL_WIDTH = 130  # the category names, left of the bars
VALUE_WIDTH = 100  # the value, right of the longest bar (room for it in the larger text of phones)
ROW = 26
BAR = 18
LABEL_CHARS = 18  # longer category names are cut (the whole name is the bar's tooltip and in the table)

COLUMN_WIDTH = 640
COLUMN_HEIGHT = 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 8, 14, 34
X_LABELS = 6  # time labels under the columns at most


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    tooltip: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"  # SVG text-anchor
    role: str = "value"  # a CSS class: value, category, axis


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Chart:
    id: str  # unique in the page: the SVG's title and description are named by it
    title: str
    description: str
    width: int
    height: int
    bars: list[Rect]  # one per data point, in the data's order (zero values too)
    labels: list[Label] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


def _round(value: float) -> float:
    return round(value, 1)


def _cut(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else f"{text[:LABEL_CHARS - 1]}…"


def bar_chart(chart_id: str, title: str, rows: Sequence[tuple[str, int]], fmt: Format = str) -> Chart:
    """Horizontal bars, one per (category, value), longest for the largest value."""
    largest = max((value for _, value in rows), default=0)
    span = BAR_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    bars, labels = [], []
    for index, (name, value) in enumerate(rows):
        top = 4 + index * ROW
        width = _round(span * value / largest) if largest else 0.0
        bars.append(Rect(LABEL_WIDTH, top, width, BAR, f"{name}: {fmt(value)}"))
        middle = top + BAR / 2 + 4.5  # text sits on its baseline: about half the font size below the middle
        labels.append(Label(LABEL_WIDTH - 8, middle, _cut(name), "end", "category"))
        labels.append(Label(LABEL_WIDTH + width + 6, middle, fmt(value)))
    listed = "; ".join(f"{name}: {fmt(value)}" for name, value in rows) or "no data"
    return Chart(chart_id, title, f"Bar chart. {listed}.", BAR_WIDTH, 8 + len(rows) * ROW, bars, labels)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2 or 5 times a power of ten that is at least `value` (1 for nothing)."""
    if value <= 1:
        return 1
    power = 10 ** int(math.floor(math.log10(value)))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def column_chart(chart_id: str, title: str, points: Sequence[tuple[str, int]], fmt: Format = str,
                 summary: str = "") -> Chart:
    """Vertical columns over time, one per (period label, value), with a value axis (0, the middle when it
    is a whole number, the top) and at most X_LABELS period labels under them."""
    top = nice_ceiling(max((value for _, value in points), default=0))
    plot_width = COLUMN_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = COLUMN_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    base = MARGIN_TOP + plot_height
    slot = plot_width / max(len(points), 1)
    gap = min(slot * 0.2, 4)
    bars, labels, lines = [], [], []
    for tick in (0, top // 2, top) if top % 2 == 0 else (0, top):  # whole numbers only
        y = _round(base - plot_height * tick / top)
        lines.append(Line(MARGIN_LEFT, y, COLUMN_WIDTH - MARGIN_RIGHT, y))
        labels.append(Label(MARGIN_LEFT - 6, y + 4, fmt(tick), "end", "axis"))
    every = max(1, math.ceil(len(points) / X_LABELS))
    for index, (name, value) in enumerate(points):
        height = _round(plot_height * value / top)
        x = _round(MARGIN_LEFT + index * slot + gap / 2)
        bars.append(Rect(x, _round(base - height), _round(max(slot - gap, 0.5)), height, f"{name}: {fmt(value)}"))
        if index % every == 0:
            labels.append(Label(_round(x + (slot - gap) / 2), base + 18, name, "middle", "axis"))
    description = f"Column chart over time, {len(points)} periods. {summary}".strip()
    return Chart(chart_id, title, description, COLUMN_WIDTH, COLUMN_HEIGHT, bars, labels, lines)
