"""Staged uploads as files on local disk: one file per key under a root of their own.

The file holds the upload's bytes; `Staged.size` says how many of them count (a request
that died after writing but before persisting leaves more, which the next writer cuts off
and overwrites). Persisting is an fsync, so a persisted size survives a crash of the
process or the machine. Keys map to paths as in `LocalStorage`, which does the checking
(nothing leaves the root), the listing and the removal.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from mediahub.errors import NotFound, StorageUnavailable
from mediahub.storage.local import TEMP_ATTEMPTS, LocalStorage, fsync_dir
from mediahub.storage.staging import Staged, Staging, StagingWriter

MB = 1024 * 1024
BUFFER_BYTES = 1 * MB  # written to the file when more is pending
CHECKPOINT_BYTES = 8 * MB  # a write persists (and returns a checkpoint) once this much is unpersisted
COPY_CHUNK = 1 * MB
FILE_MODE = 0o600  # an upload's bytes are its owner's until the ingest has checked them


def staged_bytes_missing(key: str, size: int) -> NotFound:
    """What a `Staged` describes is no longer stored (the staging directory was cleared, the bucket emptied)."""
    return NotFound(f"staged upload {key} lost its first {size} bytes", code="staged_bytes_missing")


def materialised_path(directory: Path) -> Path:
    """A new name in `directory` for an upload's bytes handed to the ingest."""
    return directory / f"upload-{secrets.token_hex(8)}"


class LocalStaging(Staging):
    def __init__(self, root: Path) -> None:
        self._files = LocalStorage(root)
        self.root = self._files.root

    def begin(self, key: str) -> Staged:
        """Nothing is stored until the first byte: a crash right after leaves nothing to sweep."""
        self._files.path(key)
        return Staged(0)

    def writer(self, key: str, staged: Staged) -> StagingWriter:
        return LocalStagingWriter(key, self._files.path(key), staged.size)

    def materialise(self, key: str, staged: Staged, directory: Path) -> Path:
        """A hard link when the file holds exactly the upload and `directory` is on its filesystem (no bytes
        move; the ingest replaces or removes its file, never writes into it), else a copy of the upload's
        bytes."""
        source = self._files.path(key)
        try:
            size = source.stat().st_size
        except FileNotFoundError:
            size = 0
        except OSError as exc:
            raise StorageUnavailable(f"cannot read staged upload {key}: {exc}") from exc
        if size < staged.size:
            raise staged_bytes_missing(key, staged.size)
        target = materialised_path(directory)
        if size == staged.size and size:
            try:
                os.link(source, target)
                return target
            except OSError:
                pass  # another filesystem, or one without hard links: copy
        try:
            _copy_head(source, target, staged.size)
        except OSError as exc:
            target.unlink(missing_ok=True)
            raise StorageUnavailable(f"cannot copy staged upload {key}: {exc}") from exc
        return target

    def discard(self, key: str) -> None:
        if self._files.delete_many([key]):
            raise StorageUnavailable(f"cannot remove staged upload {key}")

    def stored_keys(self, prefix: str, older_than: datetime) -> Iterator[str]:
        for info in self._files.list(prefix):
            if info.last_modified is not None and info.last_modified < older_than:
                yield info.key


class LocalStagingWriter(StagingWriter):
    """Writes at the persisted size, in writes of at least BUFFER_BYTES; fsyncs every CHECKPOINT_BYTES."""

    def __init__(self, key: str, path: Path, size: int) -> None:
        self._key = key
        self._persisted = size  # fsynced
        self._written = size  # in the file, perhaps not yet synced
        self._pending = bytearray()
        try:
            self._file = _open_at(key, path, size)
        except FileNotFoundError:
            raise staged_bytes_missing(key, size) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot open staged upload {key}: {exc}") from exc

    def write(self, block: bytes) -> Staged | None:
        if len(self._pending) + len(block) > BUFFER_BYTES:
            self._flush()
        if len(block) >= BUFFER_BYTES:
            self._write(block)
        else:
            self._pending += block
        if self._written + len(self._pending) - self._persisted >= CHECKPOINT_BYTES:
            return self.persist()
        return None

    def persist(self) -> Staged:
        self._flush()
        if self._written != self._persisted:
            with _io_errors(self._key):
                os.fsync(self._file.fileno())
            self._persisted = self._written
        return Staged(self._persisted)

    def abandon(self) -> None:
        self._pending.clear()
        with _io_errors(self._key):
            os.ftruncate(self._file.fileno(), self._persisted)
        self._written = self._persisted

    def close(self) -> None:
        self._file.close()

    def _flush(self) -> None:
        if self._pending:
            self._write(self._pending)
            self._pending.clear()

    def _write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        with _io_errors(self._key):
            while view:
                done = os.pwrite(self._file.fileno(), view, self._written)
                self._written += done
                view = view[done:]


@contextmanager
def _io_errors(key: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StorageUnavailable(f"cannot write staged upload {key}: {exc}") from exc


def _open_at(key: str, path: Path, size: int) -> BinaryIO:
    """The staged file open for writing and cut to `size`; created only for an upload with no bytes yet."""
    file = path.open("r+b", buffering=0) if size else _create(path)
    length = os.fstat(file.fileno()).st_size
    if length > size:
        os.ftruncate(file.fileno(), size)
    elif length < size:
        file.close()
        raise staged_bytes_missing(key, size)
    return file


def _create(path: Path) -> BinaryIO:
    """Open the file, creating it and its folder. Retried because a discard of the folder's last other upload
    may remove the just-created folder (as in `LocalStorage.put`)."""
    attempts_left = TEMP_ATTEMPTS
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except FileNotFoundError:
            attempts_left -= 1
            if not attempts_left:
                raise
            continue
        fsync_dir(path.parent)
        return os.fdopen(fd, "r+b", buffering=0)


def _copy_head(source: Path, target: Path, size: int) -> None:
    """The first `size` bytes of `source` into a new file `target`."""
    with open(target, "xb") as out:
        if not size:
            return
        with open(source, "rb") as stream:
            left = size
            while left:
                chunk = stream.read(min(COPY_CHUNK, left))
                if not chunk:
                    raise OSError(f"{source} is shorter than {size} bytes")
                out.write(chunk)
                left -= len(chunk)
