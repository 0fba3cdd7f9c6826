"""Step 1: stream an upload to a temporary file with a size cap; its digests follow in the background."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mediahub.errors import InvalidInput, TooLarge
from mediahub.pipeline import background

CHUNK = 1024 * 1024
FILENAME_MAX = 255


@dataclass
class Spooled:
    """An upload on local disk with its size and digests; delete it with `discard`.

    The SHA-256/MD5 are computed on a side thread while the pixels are processed;
    reading `sha256` or `md5` waits for them. Read them before changing the file.
    """

    path: Path
    size: int
    digests: Future[tuple[str, str]]

    @property
    def sha256(self) -> str:
        return self.digests.result()[0]

    @property
    def md5(self) -> str:
        return self.digests.result()[1]

    def head(self, n: int = 4096) -> bytes:
        with self.path.open("rb") as fh:
            return fh.read(n)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def file_digests(path: Path) -> tuple[str, str]:
    """SHA-256 and MD5 (hex) of a file, read once."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            sha256.update(block)
            md5.update(block)
    return sha256.hexdigest(), md5.hexdigest()


def sha256_of(source: bytes | Path) -> str:
    """SHA-256 (hex) of bytes, or of a file read in chunks."""
    if not isinstance(source, Path):
        return hashlib.sha256(source).hexdigest()
    with source.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def safe_filename(name: str | None) -> str | None:
    """The client's file name as a harmless label: basename only, printable, at most FILENAME_MAX
    characters (the extension kept); None when nothing is left. A hint for the record, never a path."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(char for char in base if char.isprintable()).strip().lstrip(".")
    if len(base) > FILENAME_MAX:
        stem, dot, ext = base.rpartition(".")
        base = f"{stem[:FILENAME_MAX - len(ext) - 1]}.{ext}" if dot and len(ext) <= 16 else base[:FILENAME_MAX]
    return base or None


def iter_file(fh: BinaryIO, chunk: int = CHUNK) -> Iterable[bytes]:
    while block := fh.read(chunk):
        yield block


class Spool:
    """An upload being written to a temp file, capped chunk by chunk.

    For producers that push bytes as they arrive (the HTTP multipart reader);
    `spool` below is the same for an iterable. Memory stays at one chunk.
    """

    def __init__(self, limit: int, tmp_dir: Path | None = None) -> None:
        if tmp_dir is not None:
            tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=tmp_dir)
        self.path = Path(name)
        self.limit = limit
        self.size = 0
        self._out = os.fdopen(fd, "wb")

    def write(self, block: bytes) -> None:
        """Append a block; `TooLarge` (and the file removed) as soon as the limit is passed."""
        self.size += len(block)
        if self.size > self.limit:
            self.discard()
            raise TooLarge(f"file is larger than the limit of {self.limit} bytes", limit=self.limit)
        self._out.write(block)

    def finish(self) -> Spooled:
        self._out.close()
        return spooled_file(self.path)

    def discard(self) -> None:
        self._out.close()
        self.path.unlink(missing_ok=True)


def spool(chunks: Iterable[bytes], limit: int, tmp_dir: Path | None = None) -> Spooled:
    """Write chunks to a temp file, stopping as soon as `limit` bytes are passed.

    The file is removed again on any failure.
    """
    writer = Spool(limit, tmp_dir)
    try:
        for block in chunks:
            writer.write(block)
        return writer.finish()
    except BaseException:
        writer.discard()
        raise


def spooled_file(path: Path) -> Spooled:
    """A whole upload already in a local file (the caller's, removed on refusal) as ingest takes it."""
    size = path.stat().st_size
    if size == 0:
        path.unlink(missing_ok=True)
        raise InvalidInput("file is empty", code="empty_file")
    return Spooled(path, size, background.submit(file_digests, path))
