"""The near-duplicate index: every stored pHash in one file shared by the host's processes, plus what changed since.

Each process (API server, worker, CLI) holds one `DedupIndex` (on the `Runtime`). Its
bulk is the index file (dedup/indexfile.py): the row ids, their whole and centre pHashes
and the multi-index lookup tables, written once by one process and mapped read-only by
all of them, so the page cache holds one copy and a process's own memory holds only the
rows that changed since the file was written: a small unsorted delta (scanned whole) and
the file positions it supersedes. A process opens the newest file on first use (reading
nothing from the database but what changed since it was written) and is brought up to
date from the shared database before every lookup, so a row committed by any process is
found by every other one, and a lookup returns exactly what a linear scan of the table
returns, at every threshold.

Sync (one UNION query a lookup, on the index's own autocommit connection): rows with `id >
watermark`; ids below the watermark that were still missing (allocated by an INSERT that
had not committed: PostgreSQL and MariaDB hand out ids before the commit) are asked for
again until they show up or SETTLE_SECONDS pass; rows whose `updated_at` is after the
previous sync (minus UPDATE_OVERLAP_SECONDS for commit latency and clock skew) are read
again, which catches hashes set or changed later (backfill) and SQLite's reuse of a
deleted row's id. The file carries the watermark, re-read time and missing ids it was
written with, so a process that opens it continues from there. Deleted rows stay until
the next full re-read: callers load the returned ids from the database with their scope
conditions, which drops them.

Upkeep, in a background thread of whichever process notices it first (the others adopt
the result): once a process holds more than MAX_CHANGES rows beside the file, it writes
a new file from the old one and its changes; once the file's rows were read from the
database more than `rebuild_seconds` ago (or it is missing, damaged or another
database's), every row is read again into a new one. Writers take the file's lock and
write a temporary file renamed over the old one; a process sees the new file's stamp and
moves over to it, and keeps answering from the old one (still mapped) until then.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from mediahub.db.models import utcnow
from mediahub.db.repositories import HashFeed
from mediahub.db.repositories.fingerprints import HASH_KINDS, HashKind
from mediahub.db.session import Database
from mediahub.dedup.indexfile import CHUNK, IndexFile, Rows, UnusableFile, locked, write
from mediahub.pipeline.fingerprint import BAND_BITS, BANDS, Fingerprint

log = logging.getLogger(__name__)

HALVES = HashFeed.HALVES  # the hashes are read as 32-bit halves: two bands a value
BAND_VALUES = 1 << BAND_BITS
MAX_CHANGES = 1 << 16  # rows held beside the file (new, changed, superseded) before a new file is written
SETTLE_SECONDS = 60.0  # how long an id missing below the watermark is asked for again
UPDATE_OVERLAP_SECONDS = 2.0  # rows updated this long before the previous sync are read again
RETRY_SECONDS = 1.0  # after upkeep that found the lock taken or failed, before trying again
LOAD_PAGE = 100_000
LOAD_GAP_SPAN = 1000  # on a full read, missing ids this close to the top may be uncommitted inserts
MAX_GAPS = 10_000  # missing ids asked for at once (the newest)
DEFAULT_REBUILD_SECONDS = 3600.0


def _band(hashes: np.ndarray, band: int) -> np.ndarray:
    shift = np.uint64(BAND_BITS * (BANDS - 1 - band))
    return ((hashes >> shift) & np.uint64(BAND_VALUES - 1)).astype(np.intp)


def database_identity(database: Database) -> str:
    """What names the database an index file was written for (a file-based SQLite by its absolute path)."""
    url = database.url
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return f"sqlite memory {os.getpid()} {id(database)}"  # nobody else's
        url = url.set(database=str(Path(url.database).resolve()))
    return url.render_as_string(hide_password=True)


class _Delta:
    """Rows new or changed since the file was written: scanned whole; a replaced row's slot goes dead."""

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
        return np.flatnonzero(self.live[:n] & (np.bitwise_count(self.hashes[k, :n] ^ np.uint64(value)) <= threshold))

    def crop_matches(self, k: int, windows: np.ndarray, threshold: int) -> np.ndarray:
        n = self.count
        hit = np.zeros(n, dtype=bool)
        member = np.zeros(BAND_VALUES, dtype=bool)
        for b in range(BANDS):
            wanted = _band(windows, b)
            member[:] = False
            member[wanted] = True
            values = _band(self.hashes[k, :n], b)
            rows = np.flatnonzero(member[values] & self.live[:n])  # few: rows sharing band b with a window
            near = np.bitwise_count(self.hashes[k, rows, None] ^ windows[None, :]) <= threshold
            hit[rows[(near & (values[rows, None] == wanted[None, :])).any(axis=1)]] = True
        return np.flatnonzero(hit)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The live rows' ids (ascending) and hashes [kind, row]."""
        slots = np.flatnonzero(self.live[:self.count])
        slots = slots[np.argsort(self.ids[slots], kind="stable")]
        return self.ids[slots], self.hashes[:, slots]

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.hashes.nbytes + self.live.nbytes


@dataclass
class _State:
    """One file, this process's changes beside it, and where its sync stands."""

    file: IndexFile
    watermark: int  # every id up to here has been seen (or is in `gaps`)
    since: datetime | None  # rows updated from here on are read again by the next sync
    gaps: dict[int, float]  # missing id -> monotonic deadline
    delta: _Delta = field(default_factory=_Delta)
    dead: set[int] = field(default_factory=set)  # file positions superseded (by the delta, or by no hash)
    _dead: np.ndarray | None = None  # `dead` sorted, until it changes

    @classmethod
    def of(cls, file: IndexFile) -> _State:
        rows = file.rows
        deadline = time.monotonic() + SETTLE_SECONDS - max(0.0, time.time() - rows.written_at)
        return cls(file, rows.watermark, datetime.fromisoformat(rows.since), {int(i): deadline for i in rows.gaps})

    def live(self, positions: np.ndarray) -> np.ndarray:
        """`positions` less the superseded ones."""
        if not self.dead:
            return positions
        if self._dead is None:
            self._dead = np.array(sorted(self.dead), dtype=np.int64)
        return positions[~np.isin(positions, self._dead, assume_unique=True)]

    def get(self, media_id: int) -> tuple[int, int] | None:
        slot = self.delta.slots.get(media_id)
        if slot is not None:
            return int(self.delta.hashes[0, slot]), int(self.delta.hashes[1, slot])
        at = self.file.position(media_id)
        if at is None or at in self.dead:
            return None
        return int(self.file.hashes[0, at]), int(self.file.hashes[1, at])

    def put(self, media_id: int, hashes: tuple[int, int] | None) -> None:
        """Record a row's current hashes (None: it has none)."""
        if self.get(media_id) == hashes:
            return
        at = self.file.position(media_id)
        if at is not None and at not in self.dead:
            self.dead.add(at)
            self._dead = None
        self.delta.drop(media_id)
        if hashes is not None:
            self.delta.add(media_id, hashes)

    @property
    def changes(self) -> int:
        return self.delta.count + len(self.dead)

    def snapshot(self) -> _Snapshot:
        ids, hashes = self.delta.rows()
        return _Snapshot(self.file, np.array(sorted(self.dead), dtype=np.int64), ids, hashes,
                         Rows(self.watermark, _iso(self.since), np.array(sorted(self.gaps), dtype=np.int64),
                              time.time(), self.file.rows.reread_at))

    @property
    def nbytes(self) -> int:
        return self.delta.nbytes + 8 * (len(self.dead) + len(self.gaps))


@dataclass(frozen=True)
class _Snapshot:
    """A state's file and changes, copied for writing a new file outside the index's lock."""

    file: IndexFile
    dead: np.ndarray  # positions, ascending
    ids: np.ndarray  # the delta's, ascending
    hashes: np.ndarray
    rows: Rows

    def fill(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        """The file's live rows and the delta's, merged in id order, a chunk at a time.

        A live file row lands at its rank among the live rows plus the number of delta ids
        below it; a delta row at its rank in the delta plus the number of live file rows
        below it (a delta id never equals a live file row's: it superseded it).
        """
        file, dead = self.file, self.dead
        for start in range(0, file.count, CHUNK):
            positions = np.arange(start, min(start + CHUNK, file.count))
            positions = positions[~np.isin(positions, dead, assume_unique=True)]
            chunk = np.asarray(file.ids[positions])
            at = positions - np.searchsorted(dead, positions) + np.searchsorted(self.ids, chunk)
            ids[at] = chunk
            hashes[:, at] = file.hashes[:, positions]
        below = np.searchsorted(file.ids, self.ids)
        at = np.arange(len(self.ids)) + below - np.searchsorted(dead, below)
        ids[at] = self.ids
        hashes[:, at] = self.hashes

    @property
    def count(self) -> int:
        return self.file.count - len(self.dead) + len(self.ids)


def _iso(moment: datetime | None) -> str:
    return (moment or datetime.fromtimestamp(0).astimezone()).isoformat()


def _hashes(halves: Any) -> tuple[int, int] | None:
    """(whole, centre) from the four 32-bit halves, or None when the row has no fingerprint."""
    if min(halves) < 0:
        return None
    return (halves[0] << 32) | halves[1], (halves[2] << 32) | halves[3]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


# ---------------------------------------------------------------------------- the index


class DedupIndex:
    """The stored whole and centre pHashes of one database, for exact near-duplicate lookups.

    Thread-safe. Nothing is read until the first lookup. `directory`: where the database's
    index file is shared (DEDUP_INDEX_DIR); `rebuild_seconds` bounds how long deleted rows
    (and anything a sync could not see) linger in it.
    """

    def __init__(self, database: Database, directory: Path,
                 rebuild_seconds: float = DEFAULT_REBUILD_SECONDS) -> None:
        self.rebuild_seconds = rebuild_seconds
        self.identity = database_identity(database)
        self.path = Path(directory) / f"phashes-{hashlib.sha256(self.identity.encode()).hexdigest()[:16]}.idx"
        self.feed = HashFeed(database, BAND_BITS)  # the rows; its syncs use it under the lock
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._upkeep: threading.Thread | None = None
        self._upkeep_after = 0.0  # monotonic time before which no upkeep starts
        self._closed = False

    # -------------------------------------------------------------- lookups

    def lookup(self, kind: HashKind, value: int, threshold: int) -> dict[int, int]:
        """id -> distance of every row whose `kind` hash is within `threshold` of `value` (any threshold)."""
        k = HASH_KINDS.index(kind)
        with self._lock:
            state = self._synced()
            in_file = state.live(state.file.within(k, value, threshold))
            in_delta = state.delta.within(k, value, threshold)
            ids = np.concatenate([state.file.ids[in_file], state.delta.ids[in_delta]])
            hashes = np.concatenate([state.file.hashes[k, in_file], state.delta.hashes[k, in_delta]])
        distances = np.bitwise_count(hashes ^ np.uint64(value))
        return dict(zip(ids.tolist(), distances.tolist(), strict=True))

    def candidates(self, fingerprint: Fingerprint, threshold: int) -> set[int]:
        """Ids worth a full comparison with `fingerprint`: whole or centre hash within `threshold`, or a
        stored centre within `threshold` of one of its crop windows with which it shares a band."""
        windows = np.array([w.hash for w in fingerprint.windows], dtype=np.uint64)
        hashes = (fingerprint.whole.hash, fingerprint.centre.hash)
        with self._lock:
            state = self._synced()
            file, delta = state.file, state.delta
            ids = [file.ids[state.live(file.within(k, value, threshold))] for k, value in enumerate(hashes)]
            ids += [delta.ids[delta.within(k, value, threshold)] for k, value in enumerate(hashes)]
            ids += [file.ids[state.live(file.crop_matches(1, windows, threshold))],
                    delta.ids[delta.crop_matches(1, windows, threshold)]]
        return set(np.concatenate(ids).tolist())

    # -------------------------------------------------------------- upkeep

    def sync(self) -> None:
        """Bring this index up to date with the database now (lookups do it themselves)."""
        with self._lock:
            self._synced()

    def rebuild(self) -> None:
        """Read every row again into a new file, here and now, and move over to it (upkeep does
        it every `rebuild_seconds`); waits for another writer."""
        with self._lock:
            state = self._state
        file = self._rewrite(state, full=True, wait=True, adopt_newer=False)
        assert file is not None
        self._adopt(file)

    def close(self) -> None:
        self._closed = True
        thread = self._upkeep
        if thread is not None:
            thread.join(timeout=30)
        with self._lock:
            self.feed.close()

    def __len__(self) -> int:
        with self._lock:
            state = self._state
            return 0 if state is None else state.file.count - len(state.dead) + len(state.delta.slots)

    @property
    def nbytes(self) -> int:
        """Bytes of this process's own arrays (the changes beside the file; 0 before the first lookup)."""
        with self._lock:
            return 0 if self._state is None else self._state.nbytes

    @property
    def generation(self) -> int:
        """Which file this index answers from (each one written gets the next number; 0 before the first lookup)."""
        with self._lock:
            return 0 if self._state is None else self._state.file.generation

    @property
    def file_bytes(self) -> int:
        """Bytes of the mapped file (shared with every process of the host that maps it)."""
        with self._lock:
            return 0 if self._state is None else self._state.file.size

    def _synced(self) -> _State:
        """The current state, opened or brought up to date (under the lock)."""
        if self._state is None:
            self._state = self._open()
        state = self._state
        if (time.monotonic() >= self._upkeep_after
                and (state.changes > MAX_CHANGES or _stamp(self.path) != state.file.stamp
                     or time.time() - state.file.rows.reread_at >= self.rebuild_seconds)):
            self._start_upkeep()
        self._sync(state)
        return state

    def _open(self) -> _State:
        """The file as it is, or (missing, damaged, another database's) a new one, waiting for any writer."""
        try:
            file = IndexFile(self.path, self.identity)
        except UnusableFile as why:
            log.info("dedup index file not usable (%s): reading every row", why)
            file = self._rewrite(None, full=True, wait=True, adopt_newer=True)
            assert file is not None
        return _State.of(file)

    def _sync(self, state: _State) -> None:
        started, now = utcnow(), time.monotonic()
        for media_id in [i for i, deadline in state.gaps.items() if deadline <= now]:
            del state.gaps[media_id]  # rolled back, deleted, or committing too late: the next full read finds it
        watermark = state.watermark
        rows = self.feed.changes(watermark, state.since, sorted(state.gaps))
        fresh: set[int] = set()
        for media_id, *parts in rows:
            hashes = _hashes(parts)
            if media_id > watermark:  # new to this index (a file holds no id above its watermark)
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

    def _start_upkeep(self) -> None:
        if self._upkeep is not None or self._closed:
            return

        def run() -> None:
            adopted = False
            try:
                file = self._refresh()
                if file is not None:
                    self._adopt(file)
                    adopted = True
            except Exception:  # the current file stays in use; try again later
                log.warning("dedup index upkeep failed", exc_info=True)
            finally:
                if not adopted:
                    self._upkeep_after = time.monotonic() + RETRY_SECONDS
                self._upkeep = None

        self._upkeep = threading.Thread(target=run, name="dedup-index-upkeep", daemon=True)
        self._upkeep.start()

    def _refresh(self) -> IndexFile | None:
        """The file to move over to: another process's newer one, or one written here; None
        when another process is writing (or there is nothing to do)."""
        with self._lock:
            state = self._state
        assert state is not None
        if _stamp(self.path) != state.file.stamp:
            try:
                file = IndexFile(self.path, self.identity)
                if time.time() - file.rows.reread_at < self.rebuild_seconds:
                    return file
            except UnusableFile as why:
                log.info("dedup index file not usable (%s): reading every row", why)
            return self._rewrite(state, full=True, wait=False, adopt_newer=True)
        if time.time() - state.file.rows.reread_at >= self.rebuild_seconds:
            return self._rewrite(state, full=True, wait=False, adopt_newer=True)
        if state.changes > MAX_CHANGES:
            return self._rewrite(state, full=False, wait=False, adopt_newer=True)
        return None

    def _rewrite(self, state: _State | None, *, full: bool, wait: bool, adopt_newer: bool) -> IndexFile | None:
        """Under the writers' lock, a new file: every row read again (`full`, or without a `state`),
        else `state`'s file with its changes (taken under the index's lock: not to be held by the
        caller then). `adopt_newer`: the file another
        writer put in place meanwhile instead, when it is usable (and recently re-read, for `full`).
        None when `wait` is False and another writer holds the lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path, wait=wait) as holding:
            if not holding:
                return None
            try:
                on_disk: IndexFile | None = IndexFile(self.path, self.identity)
            except UnusableFile:
                on_disk = None
            if adopt_newer and on_disk is not None and (state is None or on_disk.stamp != state.file.stamp) and (
                    not full or time.time() - on_disk.rows.reread_at < self.rebuild_seconds):
                return on_disk
            generation = (on_disk.generation if on_disk is not None else 0) + 1
            if full or state is None:
                self._write_every_row(generation)
            else:
                with self._lock:
                    snapshot = state.snapshot()
                write(self.path, self.identity, snapshot.count, snapshot.fill, snapshot.rows, generation)
            return IndexFile(self.path, self.identity)

    def _write_every_row(self, generation: int) -> None:
        """Read every row (page by page, through a scratch file beside the index: the table is never
        in this process's memory) and write the file from them."""
        started, started_at = utcnow(), time.time()
        scratch = self.path.with_name(f"{self.path.name}.tmp-rows-{os.getpid()}")
        try:
            count, last, tail = 0, 0, []
            with open(scratch, "wb") as out:
                for rows in self.feed.pages(LOAD_PAGE):
                    page = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64,
                                       count=len(rows) * (1 + HALVES)).reshape(len(rows), -1)
                    last = int(page[-1, 0])
                    tail = [*tail[-1:], page[:, 0]]  # the ids near the top are in the last two pages
                    page = page[(page[:, 1:] >= 0).all(axis=1)].astype(np.uint64)
                    record = np.empty((len(page), 1 + len(HASH_KINDS)), dtype=np.uint64)
                    record[:, 0] = page[:, 0]
                    record[:, 1:] = (page[:, 1::2] << np.uint64(32)) | page[:, 2::2]
                    out.write(record.tobytes())
                    count += len(page)
            near_top = np.concatenate(tail) if tail else np.empty(0, dtype=np.int64)
            low = max(1, last - LOAD_GAP_SPAN)
            gaps = np.setdiff1d(np.arange(low, last), near_top[near_top >= low])
            table = (np.memmap(scratch, dtype=np.uint64, mode="r", shape=(count, 1 + len(HASH_KINDS))) if count
                     else np.empty((0, 1 + len(HASH_KINDS)), dtype=np.uint64))

            def fill(ids: np.ndarray, hashes: np.ndarray) -> None:
                for start in range(0, count, CHUNK):
                    chunk = table[start:start + CHUNK]
                    ids[start:start + len(chunk)] = chunk[:, 0]
                    hashes[:, start:start + len(chunk)] = chunk[:, 1:].T

            since = started - timedelta(seconds=UPDATE_OVERLAP_SECONDS)
            write(self.path, self.identity, count, fill, Rows(last, _iso(since), gaps, started_at, started_at),
                  generation)
        finally:
            scratch.unlink(missing_ok=True)

    def _adopt(self, file: IndexFile) -> None:
        """Move over to `file`: a state that continues from where it was written, synced now."""
        state = _State.of(file)
        with self._lock:
            if self._closed:
                return
            self._sync(state)
            self._state = state
