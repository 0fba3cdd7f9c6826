"""The near-duplicate index: every stored pHash in this process's memory, synced from the database.

Each process (API server, worker, CLI) holds one `DedupIndex` (on the `Runtime`),
loaded on first use and brought up to date from the shared database before
every lookup, so a row committed by any process is found by every other one.

Layout, per hash kind ("w" whole picture, "c" centre window): the row ids and
64-bit hashes in numpy arrays sorted by id, and for each of the four 16-bit
bands the rows ordered by band value, with the start of each value's run and
the hashes in that order (multi-index hashing). Two hashes within distance T
have a band within about T/4 of each other (pigeonhole, `band_radii`), so a
lookup enumerates those band values (2228 at T=14, 188 at T=8), reads their
runs, and keeps the rows whose full distance (XOR + popcount) is <= T: exactly
what a linear scan returns, for every T (from 16 on, where the runs would cover
much of the table, it is a vectorised scan of every hash instead). Rows added
since the arrays were built sit in a small unsorted delta that is scanned
whole, and merged in once it outgrows max(MIN_DELTA, N/16). About 125 bytes a
row; the full load pages through the table once (README's Performance section has the figures).

Sync (one UNION query a lookup, on the index's own autocommit connection): rows with `id > watermark`; ids below the
watermark that were still missing (allocated by an INSERT that had not
committed: PostgreSQL and MariaDB hand out ids before the commit) are asked for
again until they show up or SETTLE_SECONDS pass; rows whose `updated_at` is
after the previous sync (minus UPDATE_OVERLAP_SECONDS for commit latency and
clock skew) are read again, which catches hashes set or changed later
(backfill) and SQLite's reuse of a deleted row's id. Deleted rows stay in memory
until the next full rebuild (every `rebuild_seconds`, in a background thread):
callers load the returned ids from the database with their scope conditions,
which drops them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

import numpy as np

from mediahub.db.models import utcnow
from mediahub.db.repositories import HashFeed
from mediahub.db.repositories.fingerprints import HASH_KINDS, HashKind
from mediahub.db.session import Database
from mediahub.pipeline.fingerprint import BAND_BITS, BANDS, Fingerprint, bands

log = logging.getLogger(__name__)

HALVES = HashFeed.HALVES  # the hashes are read as 32-bit halves: two bands a value
BAND_VALUES = 1 << BAND_BITS
SCAN_RADIUS = 4  # per-band radius (threshold 16) from which scanning every hash is cheaper
MIN_DELTA = 4096  # rows the unsorted delta holds before it is merged (at least)
SETTLE_SECONDS = 60.0  # how long an id missing below the watermark is asked for again
UPDATE_OVERLAP_SECONDS = 2.0  # rows updated this long before the previous sync are read again
LOAD_PAGE = 100_000
LOAD_GAP_SPAN = 1000  # on a full load, missing ids this close to the top may be uncommitted inserts
MAX_GAPS = 10_000  # missing ids asked for at once (the newest)
DEFAULT_REBUILD_SECONDS = 3600.0


def band_neighbours(value: int, radius: int) -> list[int]:
    """Every BAND_BITS-bit value within Hamming `radius` of `value` (value first)."""
    out = [value]
    for flips in range(1, radius + 1):
        for positions in itertools.combinations(range(BAND_BITS), flips):
            mask = 0
            for position in positions:
                mask |= 1 << position
            out.append(value ^ mask)
    return out


def band_radii(threshold: int) -> list[int]:
    """How far each band is searched so that every hash within `threshold` is found.

    With T = BANDS*q + r (0 <= r < BANDS), a hash within T has one of the first r+1
    bands within q or one of the others within q-1: were all of them further, the
    distance would be at least (r+1)(q+1) + (BANDS-r-1)q = T+1 (refined pigeonhole;
    T=14: 3,3,3,2 - 2228 values against 4x697; T=8: 2,1,1,1 - 188 against 548).
    """
    q, r = divmod(threshold, BANDS)
    return [q if band <= r else q - 1 for band in range(BANDS)]


@cache
def _ball(radius: int) -> np.ndarray:
    """The XOR masks of the band ball of `radius`."""
    return np.array(band_neighbours(0, radius), dtype=np.intp)


def _band(hashes: np.ndarray, band: int) -> np.ndarray:
    shift = np.uint64(BAND_BITS * (BANDS - 1 - band))
    return ((hashes >> shift) & np.uint64(BAND_VALUES - 1)).astype(np.intp)


def _runs(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The indices lo[i] .. hi[i]-1 for every i, concatenated, without a Python loop."""
    lengths = hi - lo
    keep = lengths > 0
    lo, lengths = lo[keep], lengths[keep]
    if not len(lo):
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.arange(ends[-1]) + np.repeat(lo - (ends - lengths), lengths)


# ---------------------------------------------------------------------------- the arrays


class _Sorted:
    """The bulk of the rows: ids ascending and their hashes; per kind and band, the rows ordered by
    band value (`order`, where each value's run starts: `starts`) and their hashes in that order
    (`sorted`), so a lookup reads each run's hashes from one place in memory."""

    def __init__(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        by_id = np.argsort(ids, kind="stable")
        self.ids = np.ascontiguousarray(ids[by_id], dtype=np.int64)
        self.hashes = np.ascontiguousarray(hashes[:, by_id], dtype=np.uint64)  # [kind, row]
        self.live = np.ones(len(self.ids), dtype=bool)
        self.dead = 0
        count = len(self.ids)
        self.order = np.empty((len(HASH_KINDS), BANDS, count), dtype=np.int32)
        self.sorted = np.empty((len(HASH_KINDS), BANDS, count), dtype=np.uint64)
        self.starts = np.zeros((len(HASH_KINDS), BANDS, BAND_VALUES + 1), dtype=np.int64)
        for k in range(len(HASH_KINDS)):
            for b in range(BANDS):
                values = _band(self.hashes[k], b)
                self.order[k, b] = np.argsort(values.astype(np.uint16), kind="stable")  # a radix sort
                self.sorted[k, b] = self.hashes[k, self.order[k, b]]
                np.cumsum(np.bincount(values, minlength=BAND_VALUES), out=self.starts[k, b, 1:])

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, media_id: int) -> int | None:
        at = int(np.searchsorted(self.ids, media_id))
        return at if at < len(self.ids) and self.ids[at] == media_id else None

    def within(self, k: int, value: int, threshold: int) -> np.ndarray:
        """Positions of live rows whose kind-k hash is within `threshold` of `value`."""
        target = np.uint64(value)
        if threshold // BANDS >= SCAN_RADIUS:
            return np.flatnonzero(self.live & (np.bitwise_count(self.hashes[k] ^ target) <= threshold))
        found = []
        for b, (part, radius) in enumerate(zip(bands(value), band_radii(threshold), strict=True)):
            if radius >= 0:
                values = _ball(radius) ^ part
                at = _runs(self.starts[k, b][values], self.starts[k, b][values + 1])
                found.append(self.order[k, b, at[np.bitwise_count(self.sorted[k, b, at] ^ target) <= threshold]])
        if not found:  # a negative threshold
            return np.empty(0, dtype=np.int64)
        positions = np.unique(np.concatenate(found))
        return positions[self.live[positions]]

    def band_equal(self, k: int, wanted: list[np.ndarray]) -> np.ndarray:
        """Positions of live rows with band b of their kind-k hash in wanted[b], for some b."""
        found = [self.order[k, b, _runs(self.starts[k, b][values], self.starts[k, b][values + 1])]
                 for b, values in enumerate(wanted)]
        positions = np.unique(np.concatenate(found))
        return positions[self.live[positions]]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.ids, self.hashes, self.live, self.order, self.sorted, self.starts))


class _Delta:
    """Rows added since the sorted part was built: scanned whole; a replaced row's slot goes dead."""

    def __init__(self, capacity: int = 1024) -> None:
        self.ids = np.empty(capacity, dtype=np.int64)
        self.hashes = np.empty((len(HASH_KINDS), capacity), dtype=np.uint64)
        self.live = np.zeros(capacity, dtype=bool)
        self.count = 0
        self.slots: dict[int, int] = {}

    def add(self, media_id: int, hashes: tuple[int, int]) -> None:
        if self.count == len(self.ids):
            size = 2 * len(self.ids)
            self.ids = np.resize(self.ids, size)
            self.hashes = np.concatenate([self.hashes, np.empty_like(self.hashes)], axis=1)
            self.live = np.concatenate([self.live, np.zeros_like(self.live)])
        self.ids[self.count] = media_id
        self.hashes[:, self.count] = hashes
        self.live[self.count] = True
        self.slots[media_id] = self.count
        self.count += 1

    def drop(self, media_id: int) -> None:
        slot = self.slots.pop(media_id, None)
        if slot is not None:
            self.live[slot] = False

    def within(self, k: int, value: int, threshold: int) -> np.ndarray:
        n = self.count
        if not n:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self.live[:n] & (np.bitwise_count(self.hashes[k, :n] ^ np.uint64(value)) <= threshold))

    def band_equal(self, k: int, wanted: list[np.ndarray]) -> np.ndarray:
        n = self.count
        if not n:
            return np.empty(0, dtype=np.int64)
        hit = np.zeros(n, dtype=bool)
        for b, values in enumerate(wanted):
            hit |= np.isin(_band(self.hashes[k, :n], b), values)
        return np.flatnonzero(hit & self.live[:n])

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.hashes.nbytes + self.live.nbytes


@dataclass
class _State:
    """One loaded copy of the index and where its sync stands."""

    main: _Sorted
    delta: _Delta = field(default_factory=_Delta)
    watermark: int = 0  # every id up to here has been seen (or is in `gaps`)
    since: Any = None  # rows updated from here on are read again by the next sync
    gaps: dict[int, float] = field(default_factory=dict)  # missing id -> monotonic deadline
    loaded_at: float = 0.0

    def get(self, media_id: int) -> tuple[int, int] | None:
        slot = self.delta.slots.get(media_id)
        if slot is not None:
            return int(self.delta.hashes[0, slot]), int(self.delta.hashes[1, slot])
        at = self.main.position(media_id)
        if at is None or not self.main.live[at]:
            return None
        return int(self.main.hashes[0, at]), int(self.main.hashes[1, at])

    def put(self, media_id: int, hashes: tuple[int, int] | None) -> None:
        """Record a row's current hashes (None: it has none)."""
        if self.get(media_id) == hashes:
            return
        at = self.main.position(media_id)
        if at is not None and self.main.live[at]:
            self.main.live[at] = False
            self.main.dead += 1
        self.delta.drop(media_id)
        if hashes is not None:
            self.delta.add(media_id, hashes)

    def merge_if_due(self) -> None:
        limit = max(MIN_DELTA, len(self.main) // 16)
        if self.delta.count <= limit and self.main.dead <= limit:
            return
        main, delta = self.main, self.delta
        keep = np.flatnonzero(delta.live[:delta.count])
        self.main = _Sorted(np.concatenate([main.ids[main.live], delta.ids[keep]]),
                            np.concatenate([main.hashes[:, main.live], delta.hashes[:, keep]], axis=1))
        self.delta = _Delta()

    def ids_of(self, found: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        in_main, in_delta = found
        return np.concatenate([self.main.ids[in_main], self.delta.ids[in_delta]])

    @property
    def nbytes(self) -> int:
        return self.main.nbytes + self.delta.nbytes


def _hashes(halves: Any) -> tuple[int, int] | None:
    """(whole, centre) from the four 32-bit halves, or None when the row has no fingerprint."""
    if min(halves) < 0:
        return None
    return (halves[0] << 32) | halves[1], (halves[2] << 32) | halves[3]


# ---------------------------------------------------------------------------- the index


class DedupIndex:
    """The stored whole and centre pHashes of one database, for exact near-duplicate lookups.

    Thread-safe. Nothing is read until the first lookup. `rebuild_seconds` bounds how
    long deleted rows (and anything a sync could not see) linger in memory.
    """

    def __init__(self, database: Database, rebuild_seconds: float = DEFAULT_REBUILD_SECONDS) -> None:
        self.rebuild_seconds = rebuild_seconds
        self.feed = HashFeed(database, BAND_BITS)  # the rows; its syncs use it under the lock
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._rebuilding: threading.Thread | None = None
        self._closed = False

    # -------------------------------------------------------------- lookups

    def lookup(self, kind: HashKind, value: int, threshold: int) -> dict[int, int]:
        """id -> distance of every row whose `kind` hash is within `threshold` of `value` (any threshold)."""
        k = HASH_KINDS.index(kind)
        with self._lock:
            state = self._synced()
            found = (state.main.within(k, value, threshold), state.delta.within(k, value, threshold))
            ids = state.ids_of(found)
            hashes = np.concatenate([state.main.hashes[k, found[0]], state.delta.hashes[k, found[1]]])
        distances = np.bitwise_count(hashes ^ np.uint64(value))
        return dict(zip(ids.tolist(), distances.tolist(), strict=True))

    def candidates(self, fingerprint: Fingerprint, threshold: int) -> set[int]:
        """Ids worth a full comparison with `fingerprint`: whole or centre hash within `threshold`,
        or a stored centre with a band equal to that band of one of its crop windows."""
        windows = np.array([w.hash for w in fingerprint.windows], dtype=np.uint64)
        wanted = [np.unique(_band(windows, b)) for b in range(BANDS)]
        with self._lock:
            state = self._synced()
            ids = [state.ids_of((state.main.within(k, value, threshold), state.delta.within(k, value, threshold)))
                   for k, value in enumerate((fingerprint.whole.hash, fingerprint.centre.hash))]
            ids.append(state.ids_of((state.main.band_equal(1, wanted), state.delta.band_equal(1, wanted))))
        return set(np.concatenate(ids).tolist())

    # -------------------------------------------------------------- upkeep

    def sync(self) -> None:
        """Bring this copy up to date with the database now (lookups do it themselves)."""
        with self._lock:
            self._synced()

    def rebuild(self) -> None:
        """Load every row again, here and now (a background thread does it every `rebuild_seconds`)."""
        state = self._load()
        with self._lock:
            self._state = state

    def close(self) -> None:
        self._closed = True
        thread = self._rebuilding
        if thread is not None:
            thread.join(timeout=30)
        with self._lock:
            self.feed.close()

    def __len__(self) -> int:
        with self._lock:
            state = self._state
            return 0 if state is None else int(state.main.live.sum()) + len(state.delta.slots)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (0 before the first lookup)."""
        with self._lock:
            return 0 if self._state is None else self._state.nbytes

    def _synced(self) -> _State:
        """The current state, loaded or brought up to date (under the lock)."""
        if self._state is None:
            self._state = self._load()
        elif time.monotonic() - self._state.loaded_at >= self.rebuild_seconds:
            self._rebuild_in_background()
        state = self._state
        self._sync(state)
        state.merge_if_due()
        return state

    def _sync(self, state: _State) -> None:
        started, now = utcnow(), time.monotonic()
        for media_id in [i for i, deadline in state.gaps.items() if deadline <= now]:
            del state.gaps[media_id]  # rolled back, deleted, or committing too late: the next rebuild finds it
        watermark = state.watermark
        rows = self.feed.changes(watermark, state.since, sorted(state.gaps))
        fresh: set[int] = set()
        for media_id, *parts in rows:
            hashes = _hashes(parts)
            if media_id > watermark:  # new to this copy: straight into the delta
                if media_id in fresh:
                    continue  # a new row is also a recently updated one
                fresh.add(media_id)
                if hashes is not None:
                    state.delta.add(media_id, hashes)
            else:
                state.gaps.pop(media_id, None)
                state.put(media_id, hashes)
        top = max(fresh, default=watermark)
        if top - watermark > len(fresh):
            missing = (i for i in range(top - 1, watermark, -1) if i not in fresh)
            state.gaps.update((i, now + SETTLE_SECONDS) for i in itertools.islice(missing, MAX_GAPS))
        if len(state.gaps) > MAX_GAPS:  # keep the newest
            state.gaps = dict(sorted(state.gaps.items())[-MAX_GAPS:])
        state.watermark = top
        state.since = started - timedelta(seconds=UPDATE_OVERLAP_SECONDS)

    def _load(self) -> _State:
        """Every row, page by page, as plain tuples: a fresh state."""
        started, now = utcnow(), time.monotonic()
        pages: list[np.ndarray] = []
        last = 0
        for rows in self.feed.pages(LOAD_PAGE):
            page = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64,
                               count=len(rows) * (1 + HALVES)).reshape(len(rows), -1)
            pages.append(page)
            last = int(page[-1, 0])
        table = np.concatenate(pages) if pages else np.empty((0, 1 + HALVES), dtype=np.int64)
        low = max(1, last - LOAD_GAP_SPAN)
        missing = np.setdiff1d(np.arange(low, last), table[table[:, 0] >= low, 0])
        table = table[(table[:, 1:] >= 0).all(axis=1)].astype(np.uint64)
        hashes = (table[:, 1::2] << np.uint64(32)) | table[:, 2::2]  # [row, kind]
        state = _State(_Sorted(table[:, 0].astype(np.int64), hashes.T), watermark=last, loaded_at=now,
                       since=started - timedelta(seconds=UPDATE_OVERLAP_SECONDS))
        state.gaps = {int(i): now + SETTLE_SECONDS for i in missing}
        return state

    def _rebuild_in_background(self) -> None:
        if self._rebuilding is not None or self._closed:
            return

        def run() -> None:
            try:
                state = self._load()
                with self._lock:
                    if not self._closed:
                        self._state = state
            except Exception:  # the old copy stays in use; try again after another period
                log.warning("dedup index rebuild failed", exc_info=True)
                with self._lock:
                    if self._state is not None:
                        self._state.loaded_at = time.monotonic()
            finally:
                self._rebuilding = None

        self._rebuilding = threading.Thread(target=run, name="dedup-index-rebuild", daemon=True)
        self._rebuilding.start()
