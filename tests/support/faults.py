"""Fault injection through public seams: wrappers around a real store or database.

A wrapper forwards everything it does not override to the real object, so the
code under test sees an ordinary `Storage` or `Database` that fails exactly where
a test wants it to.
"""

from __future__ import annotations

from typing import Any

from mediahub.errors import StorageUnavailable


class Passthrough:
    """Forwards every attribute it does not define to `inner`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def store_of(self, kind: str, bucket: str | None) -> Any:
        """A wrapped store is the store of what its rows record: writes to it meet the wrapper's faults."""
        store = self.inner.store_of(kind, bucket)
        return self if store is self.inner else store


class FailingPuts(Passthrough):
    """A real store whose `fail_on`-th put (counted while `armed`) fails as a dropped connection does.

    `fail_on=0` fails no put: the store only counts them.
    """

    def __init__(self, inner: Any, fail_on: int, *, armed: bool = True) -> None:
        super().__init__(inner)
        self.fail_on, self.puts, self.armed = fail_on, 0, armed

    def put(self, key: str, source: Any, content_type: str) -> Any:
        if self.armed:
            self.puts += 1
            if self.puts == self.fail_on:
                raise StorageUnavailable("injected: connection reset", code="storage_unavailable")
        return self.inner.put(key, source, content_type)
