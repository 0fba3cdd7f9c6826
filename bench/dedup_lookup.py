"""Near-duplicate lookup at library scale: the shared index file against the goals, per process.

    python -m bench.dedup_lookup [--smoke] [--sizes 1e6,1e7] [--distributions random,clustered]
                                 [--database sqlite|postgresql] [--keep NAME] [--baseline-src DIR] [--db-side]

For each distribution and size (`--smoke`: 10^3 and 10^4 rows on SQLite), synthetic rows
are bulk-inserted (PostgreSQL: COPY): `random` - uniformly random 64-bit pHashes, with
neighbours of the queries planted; `clustered` - pictures of a few shared subjects, each
row a centre (bits biased like real pHashes) with ~5 bits flipped, queried near the
centres (long runs, many matches). Then fresh processes (what a server or worker is
after a restart) each open the index and time it:

* `first` - an empty DEDUP_INDEX_DIR: it reads every row and writes the file, then keeps it mapped;
* `restart` - a process opening the file `first` left (no table read), while `first` still maps it.

Each reports its open time (its first sync), lookup p50/p99 (`lookup` at T=14 and T=8, and
`candidates` at T=14 for a picture: an upload's question), and its memory after the lookups:
RSS, PSS, anonymous (its own heap: `+anon` is what opening and using the index added) and
mapped file pages (page cache, one copy for the host). `old` (`--baseline-src`: a checkout's
src/ of the in-memory index) runs the same alone.

`--db-side` adds option (b): a band lookup in SQL (the four whole-hash bands indexed),
its candidate rows and time at T=14. A few lookups are checked against a linear scan in
SQL. PostgreSQL gets a throwaway database (`--keep NAME`: this one, kept and reused).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import create_engine, insert, text

from mediahub.db import migrate
from mediahub.db.models import MediaItem, utcnow
from mediahub.db.session import Database
from mediahub.pipeline.fingerprint import Fingerprint, bands

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
BATCH = 200_000
QUERIES = 200
PROBES = 40
GOAL_MS = 5.0
GOAL_MB = 100.0
ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def database(kind: str, keep: str | None) -> Iterator[Database]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="mh-dedup-bench-") as folder, \
                migrate.migrated(f"sqlite:///{Path(folder) / 'bench.db'}") as db:
            yield db
        return
    name = keep or f"mh_bench_{secrets.token_hex(4)}"
    admin = create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        with migrate.migrated(f"{PG_SERVER}/{name}") as db:
            yield db
    finally:
        if keep is None:
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


# ---------------------------------------------------------------------------- synthetic rows


def clustered_centres(rng: np.random.Generator, count: int) -> np.ndarray:
    """Subjects whose pHash bits lean one way or the other, as real pictures' do."""
    lean = np.random.default_rng(99).uniform(0.15, 0.85, 64)
    return np.packbits(rng.random((count, 64)) < lean, axis=1).view(">u8").ravel().astype(np.uint64)


def flip(rng: np.random.Generator, hashes: np.ndarray, share: float) -> np.ndarray:
    """Each bit flipped with probability `share`."""
    return hashes ^ np.packbits(rng.random((len(hashes), 64)) < share, axis=1).view(">u8").ravel().astype(np.uint64)


def synthetic(rng: np.random.Generator, count: int, distribution: str, centres: np.ndarray,
              queries: np.ndarray) -> np.ndarray:
    if distribution == "random":
        hashes = rng.integers(0, 2**64, count, dtype=np.uint64)
    else:
        hashes = flip(rng, centres[rng.integers(0, len(centres), count)], 0.08)
    planted = rng.random(count) < 0.001  # neighbours of the queries at distances of about 0..16
    hashes[planted] = flip(rng, queries[rng.integers(0, len(queries), int(planted.sum()))], 0.12)
    return hashes


def _columns(hashes: np.ndarray, start: int, prefix: str) -> list[dict]:
    now = utcnow()
    rows = []
    for offset, value in enumerate(hashes.tolist()):
        row = {"public_id": f"{prefix}{start + offset:012d}", "entity_type": "property",
               "entity_id": f"E{(start + offset) % 5000}", "entity_field": "gallery", "position": 0,
               "is_primary": False, "media_type": "image", "storage_type": "local", "original_key": "bench",
               "content_type": "image/jpeg", "byte_size": 1, "tags": [], "metadata": {},
               "moderation_status": "approved", "processing_status": "ready", "sha256": "0" * 64, "md5": "0" * 32,
               "created_at": now, "updated_at": now}
        for i, part in enumerate(bands(value)):
            row[f"hash_w{i}"] = part
            row[f"hash_c{i}"] = part ^ 0x5A5A
        rows.append(row)
    return rows


def insert_rows(db: Database, hashes: np.ndarray, start: int, prefix: str) -> None:
    """Insert rows with these whole hashes (centre: the whole one with a fixed XOR), in one transaction."""
    if db.engine.dialect.name != "postgresql":
        with db.engine.begin() as connection:
            for at in range(0, len(hashes), 10_000):
                connection.execute(insert(MediaItem.__table__), _columns(hashes[at:at + 10_000], start + at, prefix))
        return
    names = ["public_id", "entity_type", "entity_id", "entity_field", "position", "is_primary", "media_type",
             "storage_type", "original_key", "content_type", "byte_size", "tags", "metadata", "moderation_status",
             "processing_status", "sha256", "md5", "created_at", "updated_at"]
    names += [f"hash_{k}{i}" for k in "wc" for i in range(4)]
    now = utcnow().isoformat()
    fixed = f"property\t{{}}\tgallery\t0\tf\timage\tlocal\tbench\timage/jpeg\t1\t[]\t{{{{}}}}\tapproved\tready\t" \
            f"{'0' * 64}\t{'0' * 32}\t{now}\t{now}"
    raw = db.engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            parts = [(hashes >> np.uint64(48 - 16 * i)) & np.uint64(0xFFFF) for i in range(4)]
            lines = []
            for offset, (a, b, c, d) in enumerate(zip(*(p.tolist() for p in parts), strict=True)):
                n = start + offset
                lines.append(f"{prefix}{n:012d}\t{fixed.format(f'E{n % 5000}')}\t{a}\t{b}\t{c}\t{d}\t"
                             f"{a ^ 0x5A5A}\t{b ^ 0x5A5A}\t{c ^ 0x5A5A}\t{d ^ 0x5A5A}\n")
            with cursor.copy(f"COPY media_items ({', '.join(names)}) FROM STDIN") as copy:
                copy.write("".join(lines))
        raw.commit()
    finally:
        raw.close()


def fill(db: Database, rng: np.random.Generator, count: int, start: int, distribution: str, centres: np.ndarray,
         queries: np.ndarray) -> None:
    """Insert `count` synthetic rows after the `start` there are, BATCH rows a transaction."""
    for at in range(0, count, BATCH):
        size = min(BATCH, count - at)
        insert_rows(db, synthetic(rng, size, distribution, centres, queries), start + at, distribution[0])


def settle(db: Database) -> None:
    if db.engine.dialect.name == "postgresql":  # autovacuum and the checkpointer stay idle during the timings
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE media_items"))
            connection.execute(text("CHECKPOINT"))


def pictures(count: int, seed: int, windows: bool = True) -> list[Fingerprint]:
    """Fingerprints of smooth random pictures, their windows computed ahead (not timed) unless not `windows`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        noise = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L")
        fingerprint = Fingerprint.of(noise.resize((256, 256), Image.Resampling.BICUBIC))
        if windows:
            _ = fingerprint.windows, fingerprint.whole, fingerprint.centre
        out.append(fingerprint)
    return out


# ---------------------------------------------------------------------------- one process


def memory() -> dict[str, float]:
    """This process's memory in MiB: RSS; its anonymous part (heap: this process's alone, whoever else
    runs) and its mapped-file part (page cache, one copy for every process mapping the file); PSS
    (each shared page divided among the processes mapping it); peak RSS."""
    values = {}
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1]) / 1024
    with open("/proc/self/status") as fh:
        status = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in fh if line.endswith("kB\n")}
    return {"rss": values["Rss"], "pss": values["Pss"], "anon": status["RssAnon"], "file": status["RssFile"],
            "peak": status["VmHWM"]}


def _percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1e3, ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1e3


def child(spec: dict) -> dict:
    """One fresh process: open the index (timed), look up, report times and memory."""
    import inspect

    from mediahub.dedup.index import DedupIndex

    db = Database(spec["url"])
    if "directory" in inspect.signature(DedupIndex).parameters:
        index = DedupIndex(db, Path(spec["directory"]))
    else:  # the in-memory index (--baseline-src)
        index = DedupIndex(db)
    probes = pictures(PROBES, 8)
    queries = [int(q) for q in spec["queries"]]
    before = memory()
    started = time.perf_counter()
    index.sync()
    opened = time.perf_counter() - started
    out: dict = {"open_s": opened}
    for threshold in (14, 8):
        times, found = [], 0
        for query in queries:
            started = time.perf_counter()
            found += len(index.lookup("w", query, threshold))
            times.append(time.perf_counter() - started)
        out[f"lookup{threshold}"] = _percentiles(times)
        out[f"found{threshold}"] = found / len(queries)
    times, sizes = [], []
    for fingerprint in probes:
        started = time.perf_counter()
        sizes.append(len(index.candidates(fingerprint, 14)))
        times.append(time.perf_counter() - started)
    out["candidates14"] = _percentiles(times)
    out["candidate_ids"] = statistics.median(sizes)
    out["check"] = {str(q): sorted(index.lookup("w", q, 14)) for q in queries[:3]}
    out["memory"] = memory()
    out["memory"]["index_anon"] = out["memory"]["anon"] - before["anon"]  # what opening and using the index added
    out["private_arrays_mb"] = index.nbytes / 2**20
    out["file_mb"] = getattr(index, "file_bytes", 0) / 2**20
    if spec.get("hold"):  # keep the file mapped until told: the next process's PSS shows the sharing
        print(json.dumps(out), flush=True)
        deadline = time.monotonic() + 3600
        while not Path(spec["hold"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    index.close()
    db.engine.dispose()
    return out


def start_child(spec: dict, src: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}")
    return subprocess.Popen([sys.executable, "-m", "bench.dedup_lookup", "--child", json.dumps(spec)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def run_child(spec: dict, src: Path) -> dict:
    process = start_child(spec, src)
    out = process.communicate()[0]
    if process.returncode:
        raise RuntimeError("a bench child failed")
    return json.loads(out.strip().splitlines()[-1])


def processes_in_turn(spec: dict, src: Path, directory: str) -> list[tuple[str, dict]]:
    """`first` writes the file and keeps it mapped while `restart` opens it and runs (alone on the CPU)."""
    release = Path(directory) / "release"
    holder = start_child(spec | {"hold": str(release)}, src)
    assert holder.stdout is not None
    first = json.loads(holder.stdout.readline())
    try:
        restart = run_child(spec, src)
    finally:
        release.touch()
        holder.communicate()
    if holder.returncode:
        raise RuntimeError("a bench child failed")
    return [("first", first), ("restart", restart)]


# ---------------------------------------------------------------------------- SQL: reference and option (b)


def _whole(column_prefix: str = "hash_w") -> str:
    return " | ".join(f"({column_prefix}{i}::bigint << {48 - 16 * i})" for i in range(4))


def sql_scan(db: Database, query: int, threshold: int) -> tuple[list[int], float]:
    """The linear scan in SQL (PostgreSQL): every row's distance computed by the server."""
    signed = query - (1 << 64) if query >= 1 << 63 else query
    statement = text(f"SELECT id FROM media_items WHERE hash_w0 IS NOT NULL AND "
                     f"length(replace((({_whole()}) # :q)::bit(64)::text, '0', '')) <= :t ORDER BY id")
    started = time.perf_counter()
    with db.engine.connect() as connection:
        ids = list(connection.scalars(statement, {"q": signed, "t": threshold}))
    return ids, time.perf_counter() - started


def db_side(db: Database, queries: list[int], threshold: int) -> tuple[float, float, float]:
    """Option (b): band values within the refined-pigeonhole radii looked up through indexes on the
    band columns, distances filtered in SQL: (median candidate rows, p50 ms, p99 ms)."""
    from mediahub.dedup.indexfile import BAND_KEYS, ball, key_of, key_radii

    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for i in range(4):
            connection.execute(text(f"CREATE INDEX IF NOT EXISTS bench_band_w{i} ON media_items (hash_w{i})"))
        connection.execute(text("ANALYZE media_items"))
    times, counts = [], []
    with db.engine.connect() as connection:
        for query in queries:
            wanted = [(ball(r, 16) ^ key_of(query, key)).tolist() if r >= 0 else []
                      for key, r in zip(BAND_KEYS, key_radii(threshold, 4), strict=True)]
            condition = " OR ".join(f"hash_w{i} = ANY(:v{i})" for i in range(4))
            params = {f"v{i}": values for i, values in enumerate(wanted)}
            started = time.perf_counter()
            candidates = connection.execute(text(f"SELECT id, {_whole()} FROM media_items WHERE {condition}"),
                                            params).all()
            _ = [i for i, h in candidates if ((h & (2**64 - 1)) ^ query).bit_count() <= threshold]
            times.append(time.perf_counter() - started)
            counts.append(len(candidates))
    p50, p99 = _percentiles(times)
    return statistics.median(counts), p50, p99


# ---------------------------------------------------------------------------- the run


def _mb(value: float) -> str:
    return f"{value:7.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="10^3 and 10^4 rows on SQLite")
    parser.add_argument("--sizes", default="1e6,1e7")
    parser.add_argument("--distributions", default="random,clustered")
    parser.add_argument("--database", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument("--keep", help="PostgreSQL database to fill (or reuse when filled) and keep")
    parser.add_argument("--baseline-src", type=Path, help="src/ of a checkout whose index to time beside")
    parser.add_argument("--db-side", action="store_true", help="also time option (b), a band lookup in SQL")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    sizes = [10**3, 10**4] if args.smoke else [int(float(s)) for s in args.sizes.split(",")]
    kind = "sqlite" if args.smoke else args.database
    src = ROOT / "src"
    print(f"Dedup lookup: {kind}, {os.cpu_count()} cores; goals: p99 < {GOAL_MS:.0f} ms, "
          f"per-process private memory <= {GOAL_MB:.0f} MB at 10^7; times in ms, memory in MiB")
    print(f"{'dist':9s} {'rows':>9s} {'process':8s} {'open s':>7s} {'T14 p50':>8s} {'T14 p99':>8s} {'T8 p99':>7s} "
          f"{'upload p50':>10s} {'upload p99':>10s} {'cand':>6s} {'RSS':>7s} {'PSS':>7s} {'anon':>7s} {'+anon':>7s} {'mapped':>7s} "
          f"{'peak':>7s} {'file':>7s}")
    for distribution in args.distributions.split(","):
        rng = np.random.default_rng(6)
        centres = clustered_centres(rng, max(16, max(sizes) // 64))
        queries = (rng.integers(0, 2**64, QUERIES, dtype=np.uint64) if distribution == "random"
                   else flip(rng, centres[rng.integers(0, len(centres), QUERIES)], 0.05))
        keep = f"{args.keep}_{distribution}" if args.keep else None
        with database(kind, keep) as db:
            with db.session() as session:
                stored = session.query(MediaItem).count()
            for size in sizes:
                if stored < size:
                    fill(db, rng, size - stored, stored, distribution, centres, queries)
                    stored = size
                    settle(db)
                with tempfile.TemporaryDirectory(prefix="mh-dedup-index-") as directory:
                    spec = {"url": db.url.render_as_string(hide_password=False), "directory": directory,
                            "queries": [str(q) for q in queries]}
                    rows = processes_in_turn(spec, src, directory)
                    if args.baseline_src:
                        rows.append(("old", run_child(spec, args.baseline_src)))
                for name, out in rows:
                    m = out["memory"]
                    print(f"{distribution:9s} {size:9d} {name:8s} {out['open_s']:7.2f} {out['lookup14'][0]:8.2f} "
                          f"{out['lookup14'][1]:8.2f} {out['lookup8'][1]:7.2f} {out['candidates14'][0]:10.2f} "
                          f"{out['candidates14'][1]:10.2f} {out['candidate_ids']:6.0f} {_mb(m['rss'])} "
                          f"{_mb(m['pss'])} {_mb(m['anon'])} {_mb(m['index_anon'])} {_mb(m['file'])} {_mb(m['peak'])} {_mb(out['file_mb'])}", flush=True)
                if any(out["check"] != rows[0][1]["check"] for _, out in rows):
                    raise AssertionError("processes disagree")
                if kind == "postgresql":
                    for query, found in rows[0][1]["check"].items():
                        scanned, took = sql_scan(db, int(query), 14)
                        if scanned != found:
                            raise AssertionError(f"index and SQL linear scan disagree on {query}")
                    print(f"{'':9s} {'':9s} linear scan in SQL: {took * 1e3:.0f} ms a lookup; same ids for 3 queries")
                    if args.db_side:
                        count, p50, p99 = db_side(db, [int(q) for q in queries[:20]], 14)
                        print(f"{'':9s} {'':9s} (b) SQL band lookup T=14: {count:.0f} candidate rows, "
                              f"p50 {p50:.0f} ms, p99 {p99:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
