"""One store over several during a storage migration: the target, and the stores objects are moved from.

`mediahub storage migrate` copies each item's objects to the target and then switches the item's
row; until every row is switched (and later, until the copies left on the sources are deleted), an
object may be on the target, on a source, or on both. This store answers as the target does and
looks on the sources only when the target has no such object, so a read costs one more request
only while its object has not been copied yet. Writes go to the target. Deletes and readability
apply to every store: a delete during the move leaves no copy behind on either side.

It knows bytes only: which stores are sources is decided above it (runtime.py), from the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

from mediahub.errors import NotFound
from mediahub.storage.base import ObjectInfo, Storage, Usage

T = TypeVar("T")


class FallbackStorage(Storage):
    def __init__(self, target: Storage, sources: Sequence[Storage]) -> None:
        self.target = target
        self.sources = tuple(sources)
        self.kind = target.kind
        self.bucket = target.bucket
        self.location = target.location
        self.can_presign = target.can_presign

    @property
    def stores(self) -> tuple[Storage, ...]:
        return (self.target, *self.sources)

    def store_of(self, kind: str, bucket: str | None) -> Storage:
        for store in self.stores:
            if (store.kind, store.bucket) == (kind, bucket):
                return store
        return self.target

    def _first(self, read: Callable[[Storage], T]) -> T:
        """`read` on the target, else on each source in turn; the target's NotFound when none has the object."""
        try:
            return read(self.target)
        except NotFound as missing:
            for source in self.sources:
                try:
                    return read(source)
                except NotFound:
                    continue
            raise missing

    # Writes

    def put(self, key: str, source: BinaryIO | Path | bytes, content_type: str) -> ObjectInfo:
        return self.target.put(key, source, content_type)

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        failed: dict[str, None] = {}
        for store in self.stores:
            failed.update(dict.fromkeys(store.delete_many(keys)))
        return list(failed)

    def set_public(self, keys: Iterable[str], public: bool) -> None:
        keys = list(keys)
        for store in self.stores:
            store.set_public(keys, public)

    # Reads

    def get(self, key: str) -> bytes:
        return self._first(lambda store: store.get(key))

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self._first(lambda store: store.open_range(key, start, end))

    def stat(self, key: str) -> ObjectInfo:
        return self._first(lambda store: store.stat(key))

    def presign(self, key: str, expires_in: int, *, method: str = "GET", content_type: str | None = None) -> str:
        return self.target.presign(key, expires_in, method=method, content_type=content_type)

    def public_url(self, key: str) -> str | None:
        return self.target.public_url(key)

    def list(self, prefix: str = "", after: str | None = None) -> Iterator[ObjectInfo]:
        """The target's objects: each store is listed (and verified) on its own."""
        return self.target.list(prefix, after)

    def usage(self, prefix: str = "") -> Usage:
        return self.target.usage(prefix)

    def check(self) -> None:
        """Every store must answer: reads of objects not moved yet need the sources."""
        for store in self.stores:
            store.check()
