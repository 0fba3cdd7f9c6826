"""Run configuration, timing helpers and table output shared by the sections."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

console = Console(width=200, highlight=False, soft_wrap=False)


@dataclass
class Config:
    smoke: bool
    inputs: dict[str, Path] = field(default_factory=dict)  # name -> generated file
    work: Path = Path(".")  # temporary folder of this run
    results: dict = field(default_factory=dict)  # what one section hands another (throughput -> http)

    def repeats(self, megapixels: float) -> int:
        if self.smoke:
            return 1
        return 7 if megapixels < 5 else 5  # medians of more runs: the machine is shared and noisy


def timed(fn: Callable[[], object]) -> float:
    """Milliseconds of one call (garbage collected before, not during)."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def interleaved(rows: dict[str, Callable[[], object]], repeats: int, warmup: bool) -> dict[str, float]:
    """Median ms per row; every repeat runs every row once, in rotating order, so noise hits all alike."""
    names = list(rows)
    if warmup:
        for name in names:
            rows[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            samples[name].append(timed(rows[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


def table(title: str, columns: list[str]) -> Table:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for index, column in enumerate(columns):
        t.add_column(column, justify="left" if index == 0 else "right", no_wrap=True)
    return t


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def ratio(value: float | None, goal: str = "") -> str:
    return "-" if value is None else f"{value:.2f}x{goal}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:,.0f}"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "NOT met")
