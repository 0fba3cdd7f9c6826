"""The near-duplicate index's file: every stored pHash, arranged for multi-index hashing, mapped by every process.

One file per database, written whole by one process (a temporary file beside it, fsync,
atomic rename, under an fcntl lock on `<file>.lock`), then opened read-only with numpy
memmap by every process of the host: the page cache holds one copy of it however many
processes map it, and opening it reads nothing from the database. What changed since it
was written is each process's own (dedup/index.py). A file is never changed in place:
truncating a mapped file would kill the processes reading it (SIGBUS).

Layout: HEADER_BYTES of header (MAGIC, the length and CRC-32 of a JSON document: format,
database identity, where the rows stand - watermark, re-read time, the ids still missing -
each section's offset, type and shape, and the body's checksum), then 64-byte aligned
sections: the row ids ascending and their two hashes, and per lookup table the rows
ordered by the table's key (`order`), their hashes in that order (`sorted`) and where each
key value's run starts (`starts`). A file whose header, size or body checksum does not
hold, or that was written for another database or format, is not used (`UnusableFile`).

Lookups (multi-index hashing): the 64 bits are split into m keys; two hashes within
distance T have a key within about T/m of each other (pigeonhole, `key_radii`), so a
lookup enumerates those key values, reads their runs, and keeps the rows whose full
distance (XOR + popcount) is <= T: exactly what a linear scan returns, at every T (where
the runs would hold much of the table, it scans every hash instead). The keys are about
log2(rows) bits wide, where the runs are shortest for the values enumerated: the four
16-bit bands below WIDE_FROM rows, three keys of 21, 21 and 22 bits from there on (each a
band and some bits of the last one). Every band is also the leading field of some table
of the centre hash, for the crop windows' lookups (`crop_matches`).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from mediahub.db.repositories.fingerprints import HASH_KINDS
from mediahub.pipeline.fingerprint import BAND_BITS, BANDS

MAGIC = b"MHDEDUP\x00"
FORMAT = 1
HEADER_BYTES = 1 << 16
ALIGN = 64
CHUNK = 1 << 20  # rows copied or gathered at a time while writing: bounds the writer's own memory
SCAN_SHARE = 8  # a lookup scans every hash when its runs would hold more than 1/SCAN_SHARE of the rows
WIDE_FROM = 1 << 22

Field = tuple[int, int]  # (shift, width): the hash bits (hash >> shift) & (2**width - 1)
Key = tuple[Field, ...]  # its fields concatenated, the first one highest
BAND_KEYS: tuple[Key, ...] = tuple(((BAND_BITS * (BANDS - 1 - b), BAND_BITS),) for b in range(BANDS))
WIDE_KEYS: tuple[Key, ...] = (((48, 16), (11, 5)), ((32, 16), (6, 5)), ((16, 16), (0, 6)))


class UnusableFile(Exception):
    """The file is missing, damaged, or not this database's: it must be written again."""


def lookup_keys(count: int) -> tuple[Key, ...]:
    """The keys a table of `count` rows is looked up by."""
    return WIDE_KEYS if count >= WIDE_FROM else BAND_KEYS


def tables_for(keys: tuple[Key, ...]) -> list[tuple[int, Key]]:
    """(kind, key) of every table: each kind's lookup keys, and for the centre hash a band
    table for each band that leads no key."""
    tables = [(k, key) for k in range(len(HASH_KINDS)) for key in keys]
    leading = {key[0] for key in keys}
    return tables + [(1, band) for band in BAND_KEYS if band[0] not in leading]


def width(key: Key) -> int:
    return sum(bits for _, bits in key)


def key_radii(threshold: int, count: int) -> list[int]:
    """How far each of `count` keys is searched so that every hash within `threshold` is found.

    With T = m*q + r (0 <= r < m), a hash within T has one of the first r+1 keys within q
    or one of the others within q-1: were all of them further, the distance would be at
    least (r+1)(q+1) + (m-r-1)q = T+1 (refined pigeonhole; four bands at T=14: 3,3,3,2,
    2228 values against 4x697).
    """
    q, r = divmod(threshold, count)
    return [q if j <= r else q - 1 for j in range(count)]


@cache
def ball(radius: int, bits: int) -> np.ndarray:
    """The XOR masks of every `bits`-bit value within Hamming `radius` of 0 (0 first)."""
    masks = [0]
    for flips in range(1, radius + 1):
        for positions in itertools.combinations(range(bits), flips):
            masks.append(sum(1 << p for p in positions))
    return np.array(masks, dtype=np.intp)


def ball_size(radius: int, bits: int) -> int:
    return sum(math.comb(bits, flips) for flips in range(radius + 1))


def key_values(hashes: np.ndarray, key: Key) -> np.ndarray:
    """The key of each hash (uint64 array)."""
    out = np.zeros(len(hashes), dtype=np.intp)
    for shift, bits in key:
        out <<= bits
        out |= ((hashes >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.intp)
    return out


def key_of(value: int, key: Key) -> int:
    out = 0
    for shift, bits in key:
        out = (out << bits) | ((value >> shift) & ((1 << bits) - 1))
    return out


def runs(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The indices lo[i] .. hi[i]-1 for every i, concatenated, without a Python loop."""
    lengths = hi - lo
    keep = lengths > 0
    lo, lengths = lo[keep].astype(np.int64), lengths[keep]
    if not len(lo):
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lengths, dtype=np.int64)
    return np.arange(ends[-1]) + np.repeat(lo - (ends - lengths), lengths)


def _stable_order(values: np.ndarray, bits: int) -> np.ndarray:
    """argsort(values, stable) by radix passes of at most 16 bits (numpy's radix sort)."""
    order: np.ndarray | None = None
    for low in range(0, bits, BAND_BITS):
        digit = ((values if order is None else values[order]) >> low).astype(np.uint16)
        step = np.argsort(digit, kind="stable")
        order = step if order is None else order[step]
    assert order is not None
    return order


# ---------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Rows:
    """Where the rows in a file stand (dedup/index.py's sync state, written with them)."""

    watermark: int  # every id up to here is in the file, or in `gaps`, or has no fingerprint
    since: str  # ISO time: rows updated from here on are read again after opening
    gaps: np.ndarray  # ids below the watermark that were missing (maybe uncommitted) when written
    written_at: float  # wall time (epoch seconds) the sync state was taken
    reread_at: float  # wall time every row was last read from the database (deleted rows dropped)


def _sections(count: int, gaps: int, tables: list[tuple[int, Key]]) -> dict[str, tuple[str, tuple[int, ...]]]:
    plan: dict[str, tuple[str, tuple[int, ...]]] = {
        "ids": ("<i8", (count,)), "hashes": ("<u8", (len(HASH_KINDS), count)), "gaps": ("<i8", (gaps,))}
    for t, (_, key) in enumerate(tables):
        plan[f"order{t}"] = ("<i4", (count,))
        plan[f"sorted{t}"] = ("<u8", (count,))
        plan[f"starts{t}"] = ("<i4", ((1 << width(key)) + 1,))
    return plan


def _layout(plan: dict[str, tuple[str, tuple[int, ...]]]) -> tuple[dict[str, int], int]:
    offsets, at = {}, HEADER_BYTES
    for name, (dtype, shape) in plan.items():
        offsets[name] = at
        size = np.dtype(dtype).itemsize * int(np.prod(shape))
        at += -(-size // ALIGN) * ALIGN
    return offsets, at


def _checksum(body: np.ndarray) -> list[int]:
    """Wrapping sum and XOR of the body's 64-bit words: any lost page, flipped bit or
    truncation changes them (not a defence against deliberate tampering)."""
    words = body.view(np.uint64)
    return [int(words.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(words)) if len(words) else 0]


def write(path: Path, identity: str, count: int, fill: Callable[[np.ndarray, np.ndarray], None], rows: Rows,
          generation: int) -> None:
    """Write the file for `count` rows at `path` (atomically: readers see the old file or this one).

    `fill(ids, hashes)` writes the rows, ids ascending, into the file's own arrays (so the
    writer holds no copy of the table); the tables are built from them. The caller holds the lock.
    """
    if count >= 1 << 31:
        raise ValueError("an index file holds fewer than 2**31 rows")
    keys = lookup_keys(count)
    tables = tables_for(keys)
    plan = _sections(count, len(rows.gaps), tables)
    offsets, size = _layout(plan)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb+") as fh:
            fh.truncate(size)
            whole = np.memmap(fh, dtype=np.uint8, mode="r+", shape=(size,))
            arrays = {name: whole[offsets[name]:].view(dtype)[:int(np.prod(shape))].reshape(shape)
                      for name, (dtype, shape) in plan.items()}
            ids, hashes = arrays["ids"], arrays["hashes"]
            fill(ids, hashes)
            arrays["gaps"][:] = rows.gaps
            for t, (k, key) in enumerate(tables):
                _build_table(hashes[k], key, arrays[f"order{t}"], arrays[f"sorted{t}"], arrays[f"starts{t}"])
            whole.flush()
            header = {"format": FORMAT, "identity": identity, "count": count, "size": size, "generation": generation,
                      "keys": keys, "tables": tables, "watermark": rows.watermark, "since": rows.since,
                      "written_at": rows.written_at, "reread_at": rows.reread_at,
                      "sections": {name: [offsets[name], dtype, list(shape)] for name, (dtype, shape) in plan.items()},
                      "checksum": _checksum(whole[HEADER_BYTES:])}
            del whole, arrays, ids, hashes
            document = json.dumps(header).encode()
            if len(document) > HEADER_BYTES - 16:
                raise ValueError("index file header too long")
            fh.seek(0)
            fh.write(MAGIC + len(document).to_bytes(4, "little") + zlib.crc32(document).to_bytes(4, "little")
                     + document)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def _build_table(hashes: np.ndarray, key: Key, order: np.ndarray, ordered: np.ndarray, starts: np.ndarray) -> None:
    values = np.empty(len(hashes), dtype=np.uint32)
    for a in range(0, len(hashes), CHUNK):
        values[a:a + CHUNK] = key_values(np.asarray(hashes[a:a + CHUNK]), key)
    starts[0] = 0
    np.cumsum(np.bincount(values, minlength=len(starts) - 1), out=starts[1:])
    positions = _stable_order(values, width(key))
    del values
    order[:] = positions
    for a in range(0, len(positions), CHUNK):
        ordered[a:a + CHUNK] = hashes[positions[a:a + CHUNK]]


class IndexFile:
    """One written file, mapped read-only: its rows, where they stand, and lookups over them."""

    def __init__(self, path: Path, identity: str) -> None:
        """Open and check the file (raises UnusableFile): header, size, identity, body checksum."""
        try:
            with open(path, "rb") as fh:
                stat = os.fstat(fh.fileno())
                header = _header(fh.read(HEADER_BYTES))
                if header["format"] != FORMAT or header["identity"] != identity:
                    raise UnusableFile(f"{path}: written for another format or database")
                if header["size"] != stat.st_size:
                    raise UnusableFile(f"{path}: {stat.st_size} bytes, the header says {header['size']}")
                whole = np.memmap(fh, dtype=np.uint8, mode="r", shape=(stat.st_size,))
            if _checksum(whole[HEADER_BYTES:]) != header["checksum"]:
                raise UnusableFile(f"{path}: checksum mismatch")
            arrays = {name: whole[offset:].view(dtype)[:int(np.prod(shape))].reshape(shape)
                      for name, (offset, dtype, shape) in header["sections"].items()}
            self.keys = tuple(_key(key) for key in header["keys"])
            self.tables = [(int(k), _key(key)) for k, key in header["tables"]]
            self.rows = Rows(int(header["watermark"]), str(header["since"]), np.asarray(arrays["gaps"]),
                             float(header["written_at"]), float(header["reread_at"]))
        except FileNotFoundError as exc:
            raise UnusableFile(f"{path}: missing") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnusableFile(f"{path}: {exc!r}") from exc
        self.path = path
        self.stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # another file at `path` has another stamp
        self.size = stat.st_size
        self.count: int = header["count"]
        self.generation: int = header["generation"]
        self.ids: np.ndarray = arrays["ids"]
        self.hashes: np.ndarray = arrays["hashes"]  # [kind, position]
        self._order = [arrays[f"order{t}"] for t in range(len(self.tables))]
        self._sorted = [arrays[f"sorted{t}"] for t in range(len(self.tables))]
        self._starts = [arrays[f"starts{t}"] for t in range(len(self.tables))]
        self._lookup = [[t for t, (kind, key) in enumerate(self.tables) if kind == k and key in self.keys]
                        for k in range(len(HASH_KINDS))]

    def position(self, media_id: int) -> int | None:
        at = int(np.searchsorted(self.ids, media_id))
        return at if at < self.count and self.ids[at] == media_id else None

    def within(self, k: int, value: int, threshold: int) -> np.ndarray:
        """Positions (ascending) of the rows whose kind-k hash is within `threshold` of `value`."""
        target = np.uint64(value)
        tables = self._lookup[k]
        radii = key_radii(threshold, len(tables))
        if max(radii) < 0:  # a negative threshold
            return np.empty(0, dtype=np.int64)
        reads = sum(ball_size(r, width(self.tables[t][1])) * (1 + (self.count >> width(self.tables[t][1])))
                    for t, r in zip(tables, radii, strict=True) if r >= 0)
        if reads * SCAN_SHARE > self.count:
            return np.flatnonzero(np.bitwise_count(self.hashes[k] ^ target) <= threshold)
        found = []
        for t, radius in zip(tables, radii, strict=True):
            if radius >= 0:
                key = self.tables[t][1]
                values = ball(radius, width(key)) ^ key_of(value, key)
                at = runs(self._starts[t][values], self._starts[t][values + 1])
                found.append(self._order[t][at[np.bitwise_count(self._sorted[t][at] ^ target) <= threshold]])
        return np.unique(np.concatenate(found))

    def crop_matches(self, k: int, windows: np.ndarray, threshold: int) -> np.ndarray:
        """Positions of the rows whose kind-k hash has a band equal to that band of one of `windows`
        (uint64 hashes) and is within `threshold` of that window."""
        found = []
        for b, band in enumerate(BAND_KEYS):
            t = next(t for t, (kind, key) in enumerate(self.tables) if kind == k and key[0] == band[0])
            rest = width(self.tables[t][1]) - BAND_BITS
            values = key_values(windows, band)
            lo, hi = self._starts[t][values << rest], self._starts[t][(values + 1) << rest]
            at = runs(lo, hi)
            targets = np.repeat(windows, hi - lo)
            found.append(self._order[t][at[np.bitwise_count(self._sorted[t][at] ^ targets) <= threshold]])
        return np.unique(np.concatenate(found))


def _key(fields: Any) -> Key:
    return tuple((int(shift), int(bits)) for shift, bits in fields)


def _header(head: bytes) -> dict[str, Any]:
    if len(head) < 16 or head[:8] != MAGIC:
        raise UnusableFile("not an index file")
    length, crc = int.from_bytes(head[8:12], "little"), int.from_bytes(head[12:16], "little")
    document = head[16:16 + length]
    if len(document) != length or zlib.crc32(document) != crc:
        raise UnusableFile("damaged header")
    return json.loads(document)


@contextmanager
def locked(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the writers' lock of the file at `path` (an fcntl lock on `<path>.lock`; released
    by the kernel if the process dies). Yields False without it when `wait` is False and
    another process or index holds it."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        for stale in path.parent.glob(path.name + ".tmp-*"):  # left by a writer that died: only writers make them
            stale.unlink(missing_ok=True)
        yield True
    finally:
        os.close(fd)
