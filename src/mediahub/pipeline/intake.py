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


def spool(chunks: Iterable[bytes], limit: int, tmp_dir: Path | None = None) -> Spooled:
    """Write chunks to a temp file, stopping as soon as `limit` bytes are passed.

    Memory stays at one chunk whatever the upload's size; the file is removed
    again on any failure.
    """
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=tmp_dir)
    path = Path(name)
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with os.fdopen(fd, "wb") as out:
            for block in chunks:
                size += len(block)
                if size > limit:
                    raise TooLarge(f"file is larger than the limit of {limit} bytes", limit=limit)
                sha256.update(block)
                md5.update(block)
                out.write(block)
        if size == 0:
            raise InvalidInput("file is empty", code="empty_file")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Spooled(path, size, sha256.hexdigest(), md5.hexdigest())
