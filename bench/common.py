"""Run configuration, timing helpers and table output shared by the sections."""

from __future__ import annotations

import gc
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

console = Console(width=200, highlight=False, soft_wrap=False)

# The machine's database servers: (URL up to the database name, database to connect to for CREATE, DROP statement).
SERVERS = {
    "postgresql": ("postgresql+psycopg://postgres@127.0.0.1:5432", "test", "DROP DATABASE IF EXISTS {} WITH (FORCE)"),
    "mariadb": ("mysql+pymysql://root@127.0.0.1:3306", "test", "DROP DATABASE IF EXISTS {}"),
}


@dataclass
class Config:
    smoke: bool
    inputs: dict[str, Path] = field(default_factory=dict)  # name -> generated file
    work: Path = Path(".")  # temporary folder of this run
    results: dict = field(default_factory=dict)  # what one section hands another (throughput -> http)
    scale_rows: tuple[int, ...] = ()  # media rows of the `scale` section's sizes (empty: the mode's default)

    def repeats(self, megapixels: float) -> int:
        if self.smoke:
            return 1
        return 7 if megapixels < 5 else 5  # medians of more runs: the machine is shared and noisy


@contextmanager
def scratch_database(kind: str, prefix: str) -> Iterator[str]:
    """A new, empty database of its own on the machine's PostgreSQL or MariaDB (its URL), dropped after."""
    server, admin_database, drop = SERVERS[kind]
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(f"{server}/{admin_database}", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        try:
            yield f"{server}/{name}"
        finally:
            with admin.connect() as connection:
                connection.execute(text(drop.format(name)))
    finally:
        admin.dispose()


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
