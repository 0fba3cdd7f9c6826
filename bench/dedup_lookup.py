"""Near-duplicate lookup: the in-memory index vs a linear scan, on SQLite and PostgreSQL.

    python -m bench.dedup_lookup [--smoke] [--databases sqlite,postgresql] [--thresholds 8,14]

For 10^4, 10^5 and 10^6 stored hashes (`--smoke`: 10^3 and 10^4), synthetic
rows are bulk-inserted (uniformly random 64-bit pHashes, plus a few planted
neighbours of each query so lookups return something). A fresh `DedupIndex`
is loaded (timed: the one-time cost of a process's first lookup), then the same
queries run through `DedupIndex.lookup` (its sync query included: what a real
lookup costs) and `dedup.linear_scan` interleaved, and the p50/p95 latency of
each is printed side by side with the load time and the bytes of the index's
arrays. Both return the same rows (checked on every scanned query). PostgreSQL
gets a throwaway database, dropped after.

Lookups are timed once the bulk-inserted rows are older than the sync's re-read
window (`UPDATE_OVERLAP_SECONDS`: rows updated that recently are read again by
every sync). The `+write` column is the p50 when another process commits a new
row before each lookup (the index reads it, and the rows written in the window);
`upload` is the p50 of `DedupIndex.candidates` for a picture: what an upload's
check asks of the index (whole and centre hash within T, and the crop windows).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import insert, text

from bench.common import scratch_database
from mediahub.db import migrate
from mediahub.db.models import MediaItem, utcnow
from mediahub.db.session import Database
from mediahub.dedup import policy as dedup
from mediahub.dedup.index import UPDATE_OVERLAP_SECONDS, DedupIndex
from mediahub.pipeline.fingerprint import Fingerprint, bands

BATCH = 10_000


@contextmanager
def database(kind: str) -> Iterator[Database]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="mh-dedup-bench-") as folder, \
                migrate.migrated(f"sqlite:///{Path(folder) / 'bench.db'}") as db:
            yield db
        return
    with scratch_database(kind, "mh_bench") as url, migrate.migrated(url) as db:
        yield db


def _rows(hashes: list[int], start: int, prefix: str = "b") -> list[dict]:
    now = utcnow()
    out = []
    for offset, value in enumerate(hashes):
        row = {"public_id": f"{prefix}{start + offset:012d}", "entity_type": "property", "entity_id": f"E{(start + offset) % 5000}",
               "entity_field": "gallery", "position": 0, "is_primary": False, "media_type": "image",
               "storage_type": "local", "original_key": "bench", "content_type": "image/jpeg",
               "byte_size": 1, "tags": [], "metadata": {}, "moderation_status": "approved",
               "processing_status": "ready", "sha256": "0" * 64, "md5": "0" * 32, "created_at": now,
               "updated_at": now}
        for i, part in enumerate(bands(value)):
            row[f"hash_w{i}"] = part
            row[f"hash_c{i}"] = part ^ 0x5A5A
        out.append(row)
    return out


def fill(db: Database, count: int, already: int, rng: random.Random, queries: list[int]) -> None:
    """Top the table up to `count` rows (sizes grow, so each level reuses the previous rows)."""
    table = MediaItem.__table__
    remaining = count - already
    position = already
    while remaining > 0:
        size = min(BATCH, remaining)
        hashes = [rng.getrandbits(64) for _ in range(size)]
        # A few planted neighbours per query at distances 0..16.
        for i in range(0, size, max(1, size // 20)):
            query = rng.choice(queries)
            flipped = query
            for bit in rng.sample(range(64), rng.randint(0, 16)):
                flipped ^= 1 << bit
            hashes[i] = flipped
        with db.engine.begin() as connection:
            connection.execute(insert(table), _rows(hashes, position))
        position += size
        remaining -= size
    if db.engine.dialect.name == "postgresql":  # autovacuum and the checkpointer stay idle during the timings
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE media_items"))
            connection.execute(text("CHECKPOINT"))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(db: Database, index: DedupIndex, queries: list[int], threshold: int,
            scans: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"index": [], "scan": []}
    with db.session() as session:
        for n, query in enumerate(queries):
            started = time.perf_counter()
            via_index = index.lookup("w", query, threshold)
            times["index"].append(time.perf_counter() - started)
            if n < scans:
                started = time.perf_counter()
                scanned = dedup.linear_scan(session, "w", query, threshold)
                times["scan"].append(time.perf_counter() - started)
                if scanned != via_index:
                    raise AssertionError("index and linear scan disagree")
    return times


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


def measure_uploads(index: DedupIndex, probes: list[Fingerprint], threshold: int) -> list[float]:
    times = []
    for fingerprint in probes:
        started = time.perf_counter()
        index.candidates(fingerprint, threshold)
        times.append(time.perf_counter() - started)
    return times


def measure_after_writes(db: Database, index: DedupIndex, queries: list[int], threshold: int,
                         rng: random.Random) -> list[float]:
    """Lookups with one new row committed before each (written through another connection)."""
    times = []
    for query in queries:
        with db.engine.begin() as connection:
            connection.execute(insert(MediaItem.__table__), _rows([rng.getrandbits(64)], rng.getrandbits(40), "w"))
        started = time.perf_counter()
        index.lookup("w", query, threshold)
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="10^3 and 10^4 rows only")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--thresholds", default="8,14")
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args(argv)
    sizes = [10**3, 10**4] if args.smoke else [10**4, 10**5, 10**6]
    thresholds = [int(t) for t in args.thresholds.split(",")]
    probes = pictures(args.queries, 8)
    print(f"{'db':10s} {'rows':>8s} {'T':>3s} {'index p50':>10s} {'index p95':>10s} {'+write p50':>10s} "
          f"{'upload p50':>10s} {'scan p50':>10s} {'scan p95':>10s} {'speed-up':>8s} {'load':>7s} {'memory':>8s}")
    for kind in args.databases.split(","):
        rng = random.Random(6)
        queries = [rng.getrandbits(64) for _ in range(args.queries)]
        with database(kind) as db:
            stored = 0
            for size in sizes:
                fill(db, size, stored, rng, queries)
                stored = size
                time.sleep(UPDATE_OVERLAP_SECONDS)
                index = DedupIndex(db)  # a new process's copy: loaded by the first sync
                started = time.perf_counter()
                index.sync()
                load = time.perf_counter() - started
                for threshold in thresholds:
                    time.sleep(UPDATE_OVERLAP_SECONDS)  # the rows the last +write run added settle
                    scans = max(5, min(args.queries, 10**6 // size * 2))
                    times = measure(db, index, queries, threshold, scans)
                    ip50, ip95 = statistics.median(times["index"]), _percentile(times["index"], 0.95)
                    sp50, sp95 = statistics.median(times["scan"]), _percentile(times["scan"], 0.95)
                    up50 = statistics.median(measure_uploads(index, probes, threshold))
                    wp50 = statistics.median(measure_after_writes(db, index, queries, threshold, rng))
                    print(f"{kind:10s} {size:8d} {threshold:3d} {ip50 * 1e3:8.2f}ms {ip95 * 1e3:8.2f}ms "
                          f"{wp50 * 1e3:8.2f}ms {up50 * 1e3:8.2f}ms {sp50 * 1e3:8.1f}ms {sp95 * 1e3:8.1f}ms "
                          f"{sp50 / ip50:7.0f}x {load:6.2f}s {index.nbytes / 2**20:6.1f}MB", flush=True)
                index.close()


if __name__ == "__main__":
    main()
