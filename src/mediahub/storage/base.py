"""The storage interface: bytes by key, nothing about media rows.

Both backends (local disk, S3) implement it and pass the same contract tests
(`tests/storage/test_contract.py`). All methods block; callers in async code run
them in a worker thread. Backend faults are raised as `StorageUnavailable`, a
missing key as `NotFound`, a `put` on a key that holds an object as `KeyExists`.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from mediahub.errors import InvalidInput, NotFound, StorageUnavailable
from mediahub.storage.keys import check_key

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the SigV4 ceiling
# A signed URL is one caller's capability: no shared cache may keep what it returns.
PRIVATE_CACHE_CONTROL = "private, no-store"


def public_cache_control(seconds: int) -> str:
    """Unsigned reads of public objects: bounded, never `immutable`, since making one private must take effect."""
    return f"public, max-age={seconds}"


class KeyExists(Exception):
    """`put` on a key that already holds an object: objects are immutable, so nothing was replaced.

    Not a `MediaHubError`: no request can cause it, so it reaches no caller as a client error.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"object {key} already exists")
        self.key = key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None = None
    last_modified: datetime | None = None
    etag: str | None = None


@dataclass(frozen=True)
class Usage:
    objects: int
    bytes: int


class Storage(abc.ABC):
    """A flat namespace of immutable objects addressed by validated keys."""

    kind: str  # "local" or "s3": callers record it beside what they store
    bucket: str | None = None
    location: str  # which store this is (a local root, an S3 endpoint and bucket): tells two stores apart
    # Whether `presign` works: the backend itself serves reads at URLs it signs. Without it,
    # objects reach clients only through whoever reads them from the store and serves them.
    can_presign: bool = False

    @abc.abstractmethod
    def put(self, key: str, source: BinaryIO | Path | bytes, content_type: str) -> ObjectInfo:
        """Store a new object atomically (readers never see a partial one); `KeyExists` if the key holds one."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object; for small objects and tests."""

    @abc.abstractmethod
    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes start..end inclusive (end None = to the end) in chunks."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, type, mtime and etag of one object; `NotFound` if absent."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    @abc.abstractmethod
    def delete_many(self, keys: Iterable[str]) -> list[str]:
        """Delete the keys (absent ones count as deleted); return the keys that failed."""

    def presign(self, key: str, expires_in: int, *, method: str = "GET", content_type: str | None = None) -> str:
        """A URL the backend serves that grants `method` on the key until it expires; only where `can_presign`."""
        raise InvalidInput(f"{self.kind} storage serves no URLs of its own", code="unsupported_operation")

    @abc.abstractmethod
    def set_public(self, keys: Iterable[str], public: bool) -> None:
        """Make the objects readable at `public_url` without a signature, or no longer.

        Backends without public URLs of their own do nothing. Keys that no longer exist are skipped.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "", after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object whose key starts with prefix (and sorts after `after`), lazily, in ascending order of
        the keys' UTF-8 bytes: S3's ListObjectsV2 order, which a merge with other key-ordered streams needs."""

    @abc.abstractmethod
    def usage(self, prefix: str = "") -> Usage:
        """Object count and bytes under prefix."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise `StorageUnavailable` unless the backend answers."""

    def delete(self, key: str) -> None:
        failed = self.delete_many([key])
        if failed:
            raise StorageUnavailable(f"could not delete {key}")

    def public_url(self, key: str) -> str | None:
        """The unsigned URL the backend serves an object at once `set_public` made it public, where it has one."""
        return None

    def store_of(self, kind: str, bucket: str | None) -> Storage:
        """The store of objects recorded as kept in `kind` (and `bucket`): this one, unless it spans several
        (storage/fallback.py), whose URLs (presigned, public) name the objects where they are."""
        return self


# Helpers shared by the backends, so both enforce the contract the same way.


@contextmanager
def open_source(source: BinaryIO | Path | bytes) -> Iterator[BinaryIO]:
    """One readable stream for every `put` source; a caller's own stream is left open."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(source)
    elif isinstance(source, Path):
        with source.open("rb") as stream:
            yield stream
    else:
        yield source


def check_prefix(prefix: str) -> str:
    """A list prefix is a key, or the start of one, optionally ending in `/`."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


def check_after(after: str | None) -> str | None:
    """Where a listing resumes: a key (not necessarily one that exists)."""
    return None if after is None else check_key(after)


def check_range(start: int, end: int | None) -> None:
    """Refuse ranges no backend could serve before any I/O happens."""
    if start < 0 or (end is not None and end < start):
        raise InvalidInput(f"invalid byte range {start}-{end}", code="invalid_range")


def check_expires_in(expires_in: int) -> int:
    if not 0 < expires_in <= MAX_PRESIGN_SECONDS:
        raise InvalidInput(f"expiry must be 1..{MAX_PRESIGN_SECONDS} seconds", code="invalid_expiry")
    return expires_in


def usage_of(objects: Iterable[ObjectInfo]) -> Usage:
    count = total = 0
    for info in objects:
        count += 1
        total += info.size
    return Usage(objects=count, bytes=total)
