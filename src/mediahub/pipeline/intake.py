"""Step 1: stream an upload to a temporary file with a size cap, hashing as it goes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mediahub.errors import InvalidInput, TooLarge

CHUNK = 1024 * 1024


@dataclass
class Spooled:
    """An upload on local disk with its size and digests; delete it with `discard`."""

    path: Path
    size: int
    sha256: str
    md5: str

    def head(self, n: int = 4096) -> bytes:
        with self.path.open("rb") as fh:
            return fh.read(n)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def iter_file(fh: BinaryIO, chunk: int = CHUNK) -> Iterable[bytes]:
    while block := fh.read(chunk):
        yield block


class Spool:
    """An upload being written to a temp file, capped and hashed chunk by chunk.

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
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)

    def write(self, block: bytes) -> None:
        """Append a block; `TooLarge` (and the file removed) as soon as the limit is passed."""
        self.size += len(block)
        if self.size > self.limit:
            self.discard()
            raise TooLarge(f"file is larger than the limit of {self.limit} bytes", limit=self.limit)
        self._sha256.update(block)
        self._md5.update(block)
        self._out.write(block)

    def finish(self) -> Spooled:
        self._out.close()
        if self.size == 0:
            self.discard()
            raise InvalidInput("file is empty", code="empty_file")
        return Spooled(self.path, self.size, self._sha256.hexdigest(), self._md5.hexdigest())

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
