"""Section `scale`: what the reads cost as the library grows, and which index each query uses.

    python -m bench scale [--smoke] [--scale-rows 100000,1000000,10000000]

A PostgreSQL database of its own (migrated by the project's migrations, so the real indexes
exist) is filled with 10^5, then 10^6 media rows (`--smoke`: 10^4; `--scale-rows` picks the
sizes, 10^7 included) of a realistic shape (bench/scale_fill.py). At each size:

* uvicorn serves the app (`bench.server:create`, one worker, PIXEL_WORKERS=0, local storage) and
  one keep-alive client sends the requests one at a time, interleaved round by round, each
  request of a row naming another item or entity where it can: entity lists (the biggest
  entity's first page, anonymous and as its owner, and its last page by offset; typical
  galleries), get, public get, the moderation queue, storage analytics and /similar. p50 and
  p99 over N requests (N grows until a row has used its time budget). The first /similar after
  the server starts is timed apart (it loads the server's near-duplicate index), and the
  server's memory (RSS, PSS, USS from /proc) is read after all the requests.
* a fresh worker process (bench/scale_lookup.py) times an upload's duplicate lookup alone
  (global scope through the in-memory index, and the default entity scope), its first lookup
  apart (the index load), and reports its memory before and after.

Then every SQL statement those endpoints run is captured (a `before_cursor_execute` listener,
the app called in process) and EXPLAINed on that PostgreSQL database at its largest size, and
again on a MariaDB database filled the same way with 10^5 rows (`--smoke`: 10^4): the index each
statement uses, and SEQ SCAN / SORT where it reads or sorts rows without one. Both databases
are dropped at the end. 10^7 rows need about 60 GB of free disk and an hour: not run unless asked.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text

from bench.common import Config, console, scratch_database, table, verdict
from bench.harness import settings_for
from bench.httpload import SECRET, Server, p
from bench.scale_fill import Library
from bench.scale_lookup import memory_kib
from mediahub.api.app import create_app
from mediahub.api.auth import issue_token
from mediahub.config import Settings
from mediahub.db import migrate

FULL, SMOKE = (10**5, 10**6), (10**4,)
ON_REQUEST = 10**7
MARIADB_ROWS, SMOKE_MARIADB_ROWS = 10**5, 10**4
GOAL_SIZE = 10**6
LIST_GOAL_MS, ANALYTICS_GOAL_MS, LOOKUP_GOAL_MS, LOAD_GOAL_MS, MEMORY_GOAL_MIB = 20.0, 50.0, 5.0, 2000.0, 100.0
PAGE = 50
FROM = re.compile(r"\bFROM\b")


@dataclass
class Endpoint:
    key: str  # short name in the EXPLAIN tables
    name: str
    goal_ms: float | None  # p99 at GOAL_SIZE
    calls: list[tuple[str, dict[str, str]]]  # (path, headers), used in turn


@dataclass
class Targets:
    endpoints: list[Endpoint]
    biggest: int  # items of the biggest entity
    deep_offset: int  # offset of its last page an anonymous caller sees


@dataclass
class SizeResult:
    rows: int
    fill_s: float
    targets: Targets
    library: dict[str, Any]
    times: dict[str, list[float]]
    first_similar_ms: float
    server_kib: dict[str, int]
    lookup: dict[str, Any]


def bearer(sub: str, *roles: str) -> dict[str, str]:
    settings = Settings(_env_file=None, jwt_secret=SECRET)
    return {"Authorization": f"Bearer {issue_token(settings, sub, roles=roles or ('user',))}"}


def size_label(rows: int) -> str:
    power = math.log10(rows)
    return f"10^{round(power)}" if power == round(power) else f"{rows:,}"


def targets(library: Library) -> Targets:
    big = library.biggest()
    with library.engine.connect() as connection:
        visible = connection.execute(text(
            "SELECT COUNT(*) FROM media_items WHERE entity_type = :t AND parent_id = :p AND entity_id = :i "
            "AND moderation_status = 'approved'"), {"t": big.entity_type, "p": big.parent_id, "i": big.entity_id}
        ).scalar_one()
        items = connection.execute(text(
            "SELECT id, public_id, uploaded_by FROM media_items WHERE moderation_status = 'approved' "
            "AND MOD(id, :step) = 1 ORDER BY id"), {"step": max(1, library.rows // 200)}).all()
    deep = max(0, visible - PAGE)
    big_path = f"/v1/media/entity/{big.entity_type}/{big.entity_id}?limit={PAGE}"
    anonymous: dict[str, str] = {}
    return Targets([
        Endpoint("list big", "list: biggest entity, first page, anonymous", LIST_GOAL_MS,
                 [(big_path, anonymous)]),
        Endpoint("list big, owner", "list: biggest entity, first page, its owner (every status)", LIST_GOAL_MS,
                 [(big_path, bearer(big.owner))]),
        Endpoint("list big, last page", "list: biggest entity, last page (by offset), anonymous", LIST_GOAL_MS,
                 [(f"{big_path}&offset={deep}", anonymous)]),
        Endpoint("list typical", "list: a typical gallery (5-20 items), anonymous", LIST_GOAL_MS,
                 [(f"/v1/media/entity/{e.entity_type}/{e.entity_id}", anonymous) for e in library.typical(100)]),
        Endpoint("get", "get one item (its uploader)", LIST_GOAL_MS,
                 [(f"/v1/media/{media_id}", bearer(uploader)) for media_id, _, uploader in items]),
        Endpoint("public get", "public get (anonymous)", LIST_GOAL_MS,
                 [(f"/v1/media/public/{public_id}", anonymous) for _, public_id, _ in items]),
        Endpoint("queue", "moderation queue, first page (moderator)", LIST_GOAL_MS,
                 [("/v1/media/moderation/queue", bearer("MOD-1", "user", "moderator"))]),
        Endpoint("analytics", "storage analytics (admin)", ANALYTICS_GOAL_MS,
                 [("/v1/media/analytics/storage", bearer("ADM-1", "user", "admin"))]),
        Endpoint("similar", "/similar of an item (anonymous, global scope)", None,
                 [(f"/v1/media/{media_id}/similar", anonymous) for media_id, _, _ in items]),
    ], big.size, deep)


def _get(http: httpx.Client | TestClient, path: str, headers: dict[str, str]) -> None:
    reply = http.get(path, headers=headers)
    if reply.status_code != 200:
        raise RuntimeError(f"GET {path}: {reply.status_code} {reply.text[:300]}")


def time_endpoints(base: str, eps: list[Endpoint], smoke: bool) -> tuple[dict[str, list[float]], float]:
    """ms per request of each endpoint, round by round; and the first /similar's ms (before any warm-up)."""
    # A row stops after `budget` seconds once it has `least` samples: a slow row (a /similar that compares
    # thousands of candidates) still gets a few, and the fast ones hundreds.
    budget, least, most = (1.0, 3, 10) if smoke else (20.0, 3, 300)
    samples: dict[str, list[float]] = {e.name: [] for e in eps}
    with httpx.Client(base_url=base, timeout=600.0) as http:
        similar = next(e for e in eps if e.key == "similar")
        started = time.perf_counter()
        _get(http, *similar.calls[0])
        first_similar = (time.perf_counter() - started) * 1000
        for e in eps:  # warm-up: connections, compiled statements, the first rows read (/similar had its own)
            for call in e.calls[:2] if e is not similar else ():
                _get(http, *call)
        for n in range(most):
            active = [e for e in eps if len(samples[e.name]) < least or sum(samples[e.name]) < budget * 1000]
            if not active:
                break
            for e in active:
                path, headers = e.calls[n % len(e.calls)]
                started = time.perf_counter()
                _get(http, path, headers)
                samples[e.name].append((time.perf_counter() - started) * 1000)
    return samples, first_similar


def library_stats(library: Library) -> dict[str, Any]:
    with library.engine.connect() as connection:
        count = {table: connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                 for table in ("media_items", "media_variants", "media_reports", "entity_members")}
        disk = connection.execute(text(
            "SELECT pg_total_relation_size('media_items') + pg_total_relation_size('media_variants')")).scalar_one()
    return {"counts": count, "disk_bytes": disk, "biggest": library.biggest().size,
            "entities": len({(e.entity_type, e.parent_id, e.entity_id) for e in library.entities})}


def measure(cfg: Config, url: str, library: Library, fill_s: float) -> SizeResult:
    chosen = targets(library)
    eps = chosen.endpoints
    root = Path(tempfile.mkdtemp(prefix=f"mh-scale-{library.rows}-", dir=cfg.work))
    server = Server(root, {"DATABASE_URL": url, "PIXEL_WORKERS": "0", "DEDUP_POLICY": "reject", "MAKE_WEBP": "false",
                           "UPLOAD_RATE_LIMIT": "0"})
    try:
        server.wait_ready()
        times, first_similar = time_endpoints(server.base, eps, cfg.smoke)
        server_kib = memory_kib(server.proc.pid)
    finally:
        server.stop()
    typical = [[e.entity_type, e.entity_id, e.parent_id] for e in library.typical(50)]
    done = subprocess.run([sys.executable, "-m", "bench.scale_lookup", url, str(10 if cfg.smoke else 200),
                           json.dumps(typical)], capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"bench.scale_lookup failed: {done.stderr[-2000:]}")
    return SizeResult(library.rows, fill_s, chosen, library_stats(library), times, first_similar, server_kib,
                      json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------- EXPLAIN


class Recorder:
    """The SELECT statements each endpoint runs, with their parameters, first occurrence of each."""

    def __init__(self) -> None:
        self.label: str | None = None
        self.seen: dict[str, dict[str, Any]] = {}

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                 executemany: bool) -> None:
        head = statement.lstrip("( \n").upper()
        if self.label is None or executemany or not head.startswith(("SELECT", "WITH")) or not FROM.search(head):
            return
        self.seen.setdefault(self.label, {}).setdefault(statement, parameters)


def capture(url: str, eps: list[Endpoint], work: Path) -> dict[str, dict[str, Any]]:
    """Call each endpoint in process and record what it runs (after one call that starts the app's work)."""
    settings = settings_for(Path(tempfile.mkdtemp(prefix="mh-scale-explain-", dir=work)), database_url=url,
                            sweep_interval_seconds=3600)
    recorder = Recorder()
    event.listen(Engine, "before_cursor_execute", recorder)
    try:
        with TestClient(create_app(settings)) as client:
            _get(client, *eps[0].calls[0])
            for e in eps:
                recorder.label = e.key
                _get(client, *e.calls[0])
                recorder.label = None
    finally:
        event.remove(Engine, "before_cursor_execute", recorder)
    return recorder.seen


def _pg_nodes(node: dict[str, Any]):
    yield node
    for child in node.get("Plans", []):
        yield from _pg_nodes(child)


def explain(engine: Engine, statement: str, parameters: Any) -> tuple[list[str], list[str]]:
    """(indexes used, SEQ SCAN / SORT flags) of one statement's plan."""
    indexes: list[str] = []
    flags: list[str] = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            for node in _pg_nodes(cursor.fetchone()[0][0]["Plan"]):
                kind = node["Node Type"]
                if "Index Name" in node:
                    indexes.append(node["Index Name"] + (" (index only)" if kind == "Index Only Scan" else ""))
                elif kind == "Seq Scan":
                    flags.append(f"SEQ SCAN {node['Relation Name']}")
                elif kind in ("Sort", "Incremental Sort"):
                    flags.append(f"{kind.upper()} of ~{node['Plan Rows']:,} rows")
        else:
            cursor.execute("EXPLAIN " + statement, parameters)
            names = [column[0] for column in cursor.description]
            for row in (dict(zip(names, values, strict=True)) for values in cursor.fetchall()):
                name, access, extra, rows = row["table"] or "", row["type"], row["Extra"] or "", int(row["rows"] or 0)
                if name.startswith("<"):  # a derived table or union result: no table of ours
                    continue
                if access == "ALL":
                    flags.append(f"SEQ SCAN {name} (~{rows:,} rows)")
                elif access == "index":
                    flags.append(f"FULL INDEX SCAN {name}.{row['key']} (~{rows:,} rows)")
                elif row["key"]:
                    indexes.append(row["key"])
                if "filesort" in extra:
                    flags.append(f"SORT ({name}, ~{rows:,} rows)")
                if "temporary" in extra:
                    flags.append(f"TEMP TABLE ({name})")
        cursor.close()
    finally:
        raw.close()
    return list(dict.fromkeys(indexes)), flags


def short_sql(statement: str, width: int = 70) -> str:
    """The statement on one line, without its column list, table prefixes and parameter names."""
    flat = re.sub(r"\s+", " ", statement).strip()
    flat = re.sub(r"%\((\w+)\)s(::\w+)?", "?", flat)
    flat = re.sub(r"\b(media_items|media_variants|media_reports|entity_members)\.", "", flat)
    flat = re.sub(r"SELECT (?!count)(.{30,}?) FROM", "SELECT … FROM", flat, count=1)
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def plans(url: str, eps: list[Endpoint], work: Path) -> list[tuple[str, str, list[str], list[str]]]:
    seen = capture(url, eps, work)
    engine = create_engine(url)
    try:
        return [(label, statement, *explain(engine, statement, parameters))
                for label, statements in seen.items() for statement, parameters in statements.items()]
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------- the run


def _grow(library: Library, rows: int) -> float:
    started = time.perf_counter()
    library.grow(rows)
    return time.perf_counter() - started


def run(cfg: Config) -> None:
    sizes = tuple(sorted(cfg.scale_rows or (SMOKE if cfg.smoke else FULL)))
    results: list[SizeResult] = []
    with scratch_database("postgresql", "scale_bench") as url:
        migrate.upgrade(url)
        engine = create_engine(url)
        try:
            library = Library(engine)
            for rows in sizes:
                fill_s = _grow(library, rows)
                console.print(f"scale: {size_label(rows)} rows filled in {fill_s:.0f} s", markup=False)
                started = time.perf_counter()
                results.append(measure(cfg, url, library, fill_s))
                console.print(f"scale: {size_label(rows)} measured in {time.perf_counter() - started:.0f} s",
                              markup=False)
            pg_plans = plans(url, results[-1].targets.endpoints, cfg.work)
        finally:
            engine.dispose()
    mariadb_rows = min(sizes[-1], SMOKE_MARIADB_ROWS if cfg.smoke else MARIADB_ROWS)
    with scratch_database("mariadb", "scale_bench") as url:
        migrate.upgrade(url)
        engine = create_engine(url)
        try:
            library = Library(engine)
            library.grow(mariadb_rows)
            mariadb_plans = plans(url, targets(library).endpoints, cfg.work)
        finally:
            engine.dispose()
    print_library(results)
    print_latency(results)
    print_lookup(results)
    print_plans(f"PostgreSQL, {size_label(sizes[-1])} rows", pg_plans)
    print_plans(f"MariaDB, {size_label(mariadb_rows)} rows", mariadb_plans)


# ---------------------------------------------------------------------------- tables


def _p50_p99(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {p(values, 0.99):.1f} ({len(values)})"


def _not_run(sizes: list[int]) -> list[str]:
    return [] if ON_REQUEST in sizes else [f"not run (--scale-rows {','.join(map(str, (*FULL, ON_REQUEST)))})"]


def _at_goal_size(results: list[SizeResult]) -> SizeResult | None:
    return next((r for r in results if r.rows == GOAL_SIZE), None)


def print_library(results: list[SizeResult]) -> None:
    t = table("Scale: the library (PostgreSQL)", ["rows", "variant rows", "open reports", "entities",
                                                  "biggest entity", "media + variants on disk (MiB)", "fill (s)"])
    for r in results:
        counts = r.library["counts"]
        t.add_row(size_label(r.rows), f"{counts['media_variants']:,}", f"{counts['media_reports']:,}",
                  f"{r.library['entities']:,}", f"{r.library['biggest']:,}",
                  f"{r.library['disk_bytes'] / 2**20:,.0f}", f"{r.fill_s:.0f}")
    console.print(t)


def print_latency(results: list[SizeResult]) -> None:
    sizes = [r.rows for r in results]
    at_goal = _at_goal_size(results)
    t = table("Scale: requests through uvicorn (1 worker, PostgreSQL, one keep-alive client, one request at a "
              "time), ms p50 / p99 (N)",
              ["request", *map(size_label, sizes), *(["10^7"] if ON_REQUEST not in sizes else []), "goal",
               f"at {size_label(GOAL_SIZE)}"])
    for e in results[-1].targets.endpoints:
        ok = None if at_goal is None or e.goal_ms is None else p(at_goal.times[e.name], 0.99) < e.goal_ms
        t.add_row(e.name, *[_p50_p99(r.times[e.name]) for r in results], *_not_run(sizes),
                  "-" if e.goal_ms is None else f"p99 < {e.goal_ms:.0f} ms at {size_label(GOAL_SIZE)}", verdict(ok))
    console.print(t)
    console.print("biggest entity: " + "; ".join(
        f"{size_label(r.rows)}: {r.targets.biggest:,} items, last page at offset {r.targets.deep_offset:,}"
        for r in results) + ". Every other row names another item or gallery on each request.", markup=False)


def _mib(kib: dict[str, int]) -> str:
    return f"{kib['rss'] / 1024:,.0f} / {kib['pss'] / 1024:,.0f} / {kib['uss'] / 1024:,.0f}"


def print_lookup(results: list[SizeResult]) -> None:
    sizes = [r.rows for r in results]
    at_goal = _at_goal_size(results)
    biggest = results[-1] if results[-1].rows >= ON_REQUEST else None
    rows: list[tuple[str, Any, str, bool | None]] = [
        ("duplicate lookup, global scope (in-memory index), ms p50 / p99 (N)",
         lambda r: _p50_p99(r.lookup["global_ms"]), f"p99 < {LOOKUP_GOAL_MS:.0f} ms at 10^6 and 10^7",
         None if at_goal is None else p(at_goal.lookup["global_ms"], 0.99) < LOOKUP_GOAL_MS),
        ("duplicate lookup, entity scope (the default), a typical gallery, ms p50 / p99 (N)",
         lambda r: _p50_p99(r.lookup["entity_ms"]), "-", None),
        ("a fresh worker's index load (its first lookup pays it), ms", lambda r: f"{r.lookup['load_ms']:,.0f}",
         f"< {LOAD_GOAL_MS / 1000:.0f} s (not multi-second)",
         None if at_goal is None else at_goal.lookup["load_ms"] < LOAD_GOAL_MS),
        ("first /similar after the server starts, ms", lambda r: f"{r.first_similar_ms:,.0f}",
         f"< {LOAD_GOAL_MS / 1000:.0f} s (not multi-second)",
         None if at_goal is None else at_goal.first_similar_ms < LOAD_GOAL_MS),
        ("index arrays (DedupIndex.nbytes), MiB", lambda r: f"{r.lookup['index_bytes'] / 2**20:,.1f}", "-", None),
        ("worker before its first lookup: RSS / PSS / USS MiB", lambda r: _mib(r.lookup["idle_kib"]), "-", None),
        ("worker after the lookups: RSS / PSS / USS MiB", lambda r: _mib(r.lookup["after_kib"]),
         f"<= {MEMORY_GOAL_MIB:.0f} MB at 10^7",
         None if biggest is None else biggest.lookup["after_kib"]["rss"] / 1024 <= MEMORY_GOAL_MIB),
        ("server after all the requests: RSS / PSS / USS MiB", lambda r: _mib(r.server_kib),
         f"<= {MEMORY_GOAL_MIB:.0f} MB at 10^7",
         None if biggest is None else biggest.server_kib["rss"] / 1024 <= MEMORY_GOAL_MIB),
    ]
    t = table("Scale: an upload's duplicate lookup alone (dedup.check_duplicate, fresh worker process, after "
              "warm-up), first requests after a start, memory per process",
              ["", *map(size_label, sizes), *(["10^7"] if ON_REQUEST not in sizes else []), "goal", "met"])
    for name, cell, goal, ok in rows:
        t.add_row(name, *[cell(r) for r in results], *_not_run(sizes), goal, verdict(ok))
    console.print(t)


def print_plans(where: str, found: list[tuple[str, str, list[str], list[str]]]) -> None:
    t = table(f"Scale: EXPLAIN of every statement the endpoints ran ({where})",
              ["endpoint", "statement", "index used", "SEQ SCAN / SORT"])
    for column, least in zip(t.columns, (17, 70, 30, 40), strict=True):  # names and flags fold, never cut
        column.min_width, column.justify = least, "left"
        column.no_wrap = column.header == "statement"
    last = None
    for label, statement, indexes, flags in found:
        t.add_row(label if label != last else "", short_sql(statement), ", ".join(indexes) or "-",
                  "; ".join(flags))
        last = label
    console.print(t)
