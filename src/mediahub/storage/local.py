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
    check_after,
    check_prefix,
    check_range,
    open_source,
    usage_of,
)
from mediahub.storage.keys import KEY_RE, check_key

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
        self.location = f"local:{self.root}"

    # Paths

    def path(self, key: str) -> Path:
        """The file for a key, refusing any way out of the root (including symlinks)."""
        check_key(key)
        lexical = self.root / key
        parent = lexical.parent.resolve()
        if not parent.is_relative_to(self.root) or lexical.is_symlink():
            raise InvalidInput(f"storage key {key!r} leaves the media root", code="invalid_key")
        return parent / lexical.name

    def _file_stat(self, key: str) -> os.stat_result:
        try:
            result = os.stat(self.path(key), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            result = None
        except OSError as exc:
            raise StorageUnavailable(f"cannot stat {key}: {exc}") from exc
        if result is None or not stat_mode.S_ISREG(result.st_mode):
            raise NotFound(f"no object {key}", code="object_not_found")
        return result

    # Writes

    def put(self, key: str, source: BinaryIO | Path | bytes, content_type: str) -> ObjectInfo:
        path = self.path(key)
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
        fsync_dir(path.parent)
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
        paths = [(key, self.path(key)) for key in keys]  # validate all before deleting any
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
        path = self.path(key)
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
        return _object_info(key, self._file_stat(key))

    def set_public(self, keys: Iterable[str], public: bool) -> None:
        """Nothing to change: no one reads local files without going through whoever serves them."""
        for key in keys:
            check_key(key)

    def list(self, prefix: str = "", after: str | None = None) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        return self._list(prefix, check_after(after))

    def _list(self, prefix: str, after: str | None) -> Iterator[ObjectInfo]:
        """Walk only the deepest folder the prefix names, in key order, holding one folder's names at a time."""
        folder = prefix.rpartition("/")[0]
        path = (self.root / folder).resolve()
        if path.is_relative_to(self.root):
            yield from self._walk(str(path), f"{folder}/" if folder else "", prefix, after)

    def _walk(self, folder: str, start: str, prefix: str, after: str | None) -> Iterator[ObjectInfo]:
        """The objects under `folder`, whose keys all begin with `start`, in byte order of the whole keys.

        A subfolder's keys all begin with its name and `/`, so sorting a folder's entries with
        that `/` after each subfolder's name puts every subtree where its keys fall among its
        siblings: `a-b` and `a.b` (below `/`) come before the keys under `a/`, `a0` after them.
        Symlinks are never followed; temp files, and anything else named as no key can be, are not objects.
        """
        try:
            with os.scandir(folder) as entries:
                names = sorted(entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name
                               for entry in entries)
        except (FileNotFoundError, NotADirectoryError):  # removed since its parent was read
            return
        except OSError as exc:
            raise StorageUnavailable(f"cannot list {folder}: {exc}") from exc
        for name in names:
            key = start + name
            if not _is_key_part(name.removesuffix("/")):
                continue
            if name.endswith("/"):
                if _may_hold(key, prefix, after):
                    yield from self._walk(os.path.join(folder, name[:-1]), key, prefix, after)
            elif key.startswith(prefix) and (after is None or key > after):
                info = self._info(os.path.join(folder, name), key)
                if info is not None:
                    yield info

    @staticmethod
    def _info(path: str, key: str) -> ObjectInfo | None:
        """A regular file's object info; None for anything else, or a file deleted since the walk."""
        try:
            result = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable(f"cannot stat {key}: {exc}") from exc
        return _object_info(key, result) if stat_mode.S_ISREG(result.st_mode) else None

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


def _object_info(key: str, result: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=result.st_size,
        content_type=content_type_for(key),
        last_modified=datetime.fromtimestamp(result.st_mtime_ns / 1e9, tz=timezone.utc),
        etag=f'"{result.st_size:x}-{result.st_mtime_ns:x}"',
    )


def _may_hold(folder: str, prefix: str, after: str | None) -> bool:
    """Whether keys beginning with `folder` (which ends in `/`) can start with `prefix` and sort after `after`.

    When `after` does not begin with `folder`, the two differ within `folder`'s length, so every
    key under it sorts on the same side of `after` as `folder` itself.
    """
    matches_prefix = folder.startswith(prefix) or prefix.startswith(folder)
    return matches_prefix and (after is None or folder > after or after.startswith(folder))


def _is_key_part(name: str) -> bool:
    """A folder or file name a key can have (temp files start with `.`, which none can)."""
    return KEY_RE.match(name) is not None


def _write_synced(fd: int, source: BinaryIO | Path | bytes) -> None:
    """Copy the source in chunks into the open temp file and make it durable."""
    with os.fdopen(fd, "wb") as out, open_source(source) as stream:
        while chunk := stream.read(WRITE_CHUNK):
            out.write(chunk)
        out.flush()
        os.fchmod(out.fileno(), FILE_MODE)
        os.fsync(out.fileno())


def fsync_dir(folder: Path) -> None:
    """Make the new directory entry durable; best effort where directories cannot be opened."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
