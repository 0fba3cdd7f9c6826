"""Objects as files under one root directory.

Keys map one-to-one to relative paths. Writes go to a temp file beside the
target and are published with a hard link, which is atomic and refuses to
replace an existing file, so readers never see a partial object and a key is
never overwritten (`KeyExists`). Temp files start with `.tmp-`, which no valid
key can, so they never show up as objects. Local files have no URLs of their
own: whoever reads them from here serves them.
"""

from __future__ import annotations

import dataclasses
import os
import stat as stat_mode
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from mediahub.errors import InvalidInput, NotFound, StorageUnavailable
from mediahub.formats import FORMATS
from mediahub.storage.base import (
    KeyExists,
    ObjectInfo,
    Storage,
    Usage,
    check_prefix,
    check_range,
    open_source,
    usage_of,
)
from mediahub.storage.keys import check_key

WRITE_CHUNK = 1024 * 1024
READ_CHUNK = 64 * 1024
TEMP_PREFIX = ".tmp-"
FILE_MODE = 0o644  # mkstemp creates 0600; a front web server may serve these files
TEMP_ATTEMPTS = 3

# Local files keep no content type: it is guessed from the key's extension, as the store names objects.
CONTENT_TYPE_OF_EXTENSION = {fmt.extension: fmt.content_type for fmt in FORMATS.values() if fmt.extension}


def content_type_for(key: str) -> str | None:
    """A best guess from the extension: local files keep no content type."""
    _, dot, ext = key.rpartition(".")
    return CONTENT_TYPE_OF_EXTENSION.get(ext.lower()) if dot else None


class LocalStorage(Storage):
    kind = "local"
    bucket = None

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    # Paths

    def _path(self, key: str) -> Path:
        """The file for a key, refusing any way out of the root (including symlinks)."""
        check_key(key)
        lexical = self.root / key
        parent = lexical.parent.resolve()
        if not parent.is_relative_to(self.root) or lexical.is_symlink():
            raise InvalidInput(f"storage key {key!r} leaves the media root", code="invalid_key")
        return parent / lexical.name

    def _file_stat(self, key: str) -> os.stat_result:
        try:
            result = os.stat(self._path(key), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            result = None
        except OSError as exc:
            raise StorageUnavailable(f"cannot stat {key}: {exc}") from exc
        if result is None or not stat_mode.S_ISREG(result.st_mode):
            raise NotFound(f"no object {key}", code="object_not_found")
        return result

    # Writes

    def put(self, key: str, source: BinaryIO | Path | bytes, content_type: str) -> ObjectInfo:
        path = self._path(key)
        try:
            fd, tmp = self._make_temp(path.parent)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc}") from exc
        try:
            _write_synced(fd, source)
            os.link(tmp, path)
        except FileExistsError as exc:
            raise KeyExists(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc}") from exc
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_dir(path.parent)
        return dataclasses.replace(self.stat(key), content_type=content_type)

    def _make_temp(self, folder: Path) -> tuple[int, str]:
        """Create the folder and a temp file in it.

        Retried because a concurrent `delete_many` may remove the just-created,
        still-empty folder before the temp file lands in it.
        """
        attempts_left = TEMP_ATTEMPTS
        while True:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                return tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
            except FileNotFoundError:
                attempts_left -= 1
                if not attempts_left:
                    raise

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        paths = [(key, self._path(key)) for key in keys]  # validate all before deleting any
        failed = []
        for key, path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                failed.append(key)
                continue
            self._prune_empty_parents(path.parent)
        return failed

    def _prune_empty_parents(self, folder: Path) -> None:
        """Best effort: drop folders left empty, stopping at the root or the first non-empty one."""
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    # Reads

    def get(self, key: str) -> bytes:
        return b"".join(self.open_range(key))

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Validate eagerly (so errors surface at the call), then stream lazily."""
        check_range(start, end)
        path = self._path(key)
        size = self._file_stat(key).st_size
        if start >= size and not (start == 0 and end is None):
            raise InvalidInput(f"range {start}-{end} outside {size} bytes", code="range_not_satisfiable")
        last = size - 1 if end is None else min(end, size - 1)
        return self._stream(key, path, start, last - start + 1)

    def _stream(self, key: str, path: Path, start: int, length: int) -> Iterator[bytes]:
        try:
            with path.open("rb") as stream:
                stream.seek(start)
                while length > 0:
                    chunk = stream.read(min(READ_CHUNK, length))
                    if not chunk:
                        return
                    length -= len(chunk)
                    yield chunk
        except FileNotFoundError as exc:
            raise NotFound(f"no object {key}", code="object_not_found") from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc

    def stat(self, key: str) -> ObjectInfo:
        result = self._file_stat(key)
        return ObjectInfo(
            key=key,
            size=result.st_size,
            content_type=content_type_for(key),
            last_modified=datetime.fromtimestamp(result.st_mtime_ns / 1e9, tz=timezone.utc),
            etag=f'"{result.st_size:x}-{result.st_mtime_ns:x}"',
        )

    def set_public(self, keys: Iterable[str], public: bool) -> None:
        """Nothing to change: no one reads local files without going through whoever serves them."""
        for key in keys:
            check_key(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        for key in sorted(self._keys_under(prefix)):
            with suppress(NotFound):  # deleted since the walk
                yield self.stat(key)

    def _keys_under(self, prefix: str) -> Iterator[str]:
        """Walk only the deepest folder the prefix names; symlinks are never followed."""
        folder = (self.root / prefix.rpartition("/")[0]).resolve()
        if not folder.is_relative_to(self.root):
            return
        for dirpath, _, filenames in os.walk(folder):
            for name in filenames:
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if not name.startswith(TEMP_PREFIX) and key.startswith(prefix) and _is_plain_file(path):
                    yield key

    def usage(self, prefix: str = "") -> Usage:
        return usage_of(self.list(prefix))

    def check(self) -> None:
        """Prove the root is writable by creating (and removing) a temp file in it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=TEMP_PREFIX)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageUnavailable(f"media root {self.root} is not writable: {exc}") from exc


def _is_plain_file(path: Path) -> bool:
    return not path.is_symlink() and path.is_file()


def _write_synced(fd: int, source: BinaryIO | Path | bytes) -> None:
    """Copy the source in chunks into the open temp file and make it durable."""
    with os.fdopen(fd, "wb") as out, open_source(source) as stream:
        while chunk := stream.read(WRITE_CHUNK):
            out.write(chunk)
        out.flush()
        os.fchmod(out.fileno(), FILE_MODE)
        os.fsync(out.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the new directory entry durable; best effort where directories cannot be opened."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
