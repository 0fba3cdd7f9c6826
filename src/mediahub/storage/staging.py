"""Uploads in progress: bytes appended in order across requests (and processes), then read back whole.

A resumable upload arrives in pieces, possibly through different server processes
and across restarts. A `Staging` keeps what has arrived so far under a key the
caller chose (`media.keys.incoming_key`); the caller keeps the returned `Staged`
(size and the backend's own state, JSON) with its upload row, and hands it back
to continue. Only what a `Staged` describes is the upload: bytes written past it
(a request that died before persisting) are overwritten by the next writer.

Backends: local disk (a file under the temp directory) and S3 (a multipart upload
whose parts are written as they arrive, the tail below the part size kept as an
object of its own until it fills a part). Both pass the contract suite in
`tests/storage/test_staging_contract.py`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Staged:
    """What is persisted of one staged upload: its size in bytes, and the backend's state to keep with it."""

    size: int
    state: dict[str, Any] = field(default_factory=dict)


class StagingWriter(abc.ABC):
    """Appends to one staged upload from a persisted size on. One per request; not thread-safe.

    Memory stays at most one part (S3) or one block (local) whatever the upload's size.
    """

    @abc.abstractmethod
    def write(self, block: bytes) -> Staged | None:
        """Append `block`; a new `Staged` when this write persisted more of the upload (a checkpoint the
        caller may record), else None."""

    @abc.abstractmethod
    def persist(self) -> Staged:
        """Persist everything written so far and return the upload's new state; writing may go on after it."""

    @abc.abstractmethod
    def abandon(self) -> None:
        """Drop what was written since the last persisted state (a checksum mismatch): the upload stays as the
        last `Staged` describes it, and whatever this writer stored beyond it is removed or left to be
        overwritten."""

    def close(self) -> None:
        """Release what the writer holds (an open file) without persisting: as if its process had died, so
        bytes past the last persisted state are left to be overwritten. The writer is unusable after."""

    def __enter__(self) -> StagingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Staging(abc.ABC):
    """Staged uploads addressed by storage keys; every method blocks (run it off the event loop)."""

    @abc.abstractmethod
    def begin(self, key: str) -> Staged:
        """Start an empty staged upload at `key` (nothing need be stored yet)."""

    @abc.abstractmethod
    def writer(self, key: str, staged: Staged) -> StagingWriter:
        """A writer appending at `staged.size`."""

    @abc.abstractmethod
    def materialise(self, key: str, staged: Staged, directory: Path) -> Path:
        """The staged bytes as a new local file in `directory` (the caller's to delete). The staged upload
        stays until `discard`; calling this again (after a crash) gives the same bytes."""

    @abc.abstractmethod
    def discard(self, key: str) -> None:
        """Remove everything stored for `key` (S3: its multipart uploads aborted, its objects deleted);
        nothing stored is not an error."""

    @abc.abstractmethod
    def stored_keys(self, prefix: str, older_than: datetime) -> Iterator[str]:
        """Keys under `prefix` holding anything (a file, an object, an S3 multipart upload) last written
        before `older_than`: what the sweeper and `mediahub verify` compare with the live upload rows."""
