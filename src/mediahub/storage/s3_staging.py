"""Staged uploads in S3: a multipart upload written part by part as bytes arrive, and tail objects.

An upload of `size` bytes with part size P is stored as the full parts of a multipart upload
(part i+1 = bytes [i*P, (i+1)*P), so a part's number is fixed by its offset and a retried
write of it replaces it) and the bytes after the last full part (at most P) as a few objects of
their own, the tail's pieces, `{key}.tail-{token}`. `Staged.state` (JSON) records the part size,
the multipart upload's id (created when the first full part is due), the parts' ETags, and the
tail's pieces (token and size) in order.

A writer keeps what arrives in a temp file (memory stays at one block), uploads a part whenever
P bytes are pending (the tail's pieces read back in front of the new bytes) and returns a
checkpoint, and on `persist` writes the new bytes as one more piece under a new token: a request
costs the store what it carries, whatever the tail holds, as tus clients that send small chunks
(or an attacker's one-byte PATCHes) would otherwise have the whole tail read back and written
again each time. The last pieces are merged while the one before is at most twice the newest, so
a tail has a few dozen pieces at most and each byte is rewritten a logarithmic number of times.

A writer never deletes a piece a `Staged` it returned names: the caller may not have recorded
the newer state yet. Instead a writer, which starts from the state the caller recorded, deletes
at its start the key's other tail objects: superseded ones, and those of requests that died
before their state was recorded. `discard` removes everything left.

Every backend fault leaves as `StorageUnavailable`, as from `S3Storage` (same bucket and client). The
client adds `If-None-Match: *` to the pieces' PUTs and to the completion, as to the store's own writes: a
piece's name is new each time, and a completion that finds the object there was done already.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from mediahub.errors import NotFound, StorageUnavailable
from mediahub.storage.base import check_prefix
from mediahub.storage.keys import check_key
from mediahub.storage.local_staging import materialised_path, staged_bytes_missing
from mediahub.storage.s3 import S3Storage, _cause_code, _translated
from mediahub.storage.staging import Staged, Staging, StagingWriter

TAIL_MARK = ".tail-"
TAIL_SUFFIX_RE = re.compile(r"\.tail-[0-9a-f]+\Z")
STAGED_CONTENT_TYPE = "application/octet-stream"  # the ingest sniffs the bytes; nobody reads these objects
READ_CAP = 64 * 1024  # botocore reads a body in 1 MiB pieces to hash it, two at a time: capped to this


def tail_key(key: str, token: str) -> str:
    return f"{key}{TAIL_MARK}{token}"


def base_key(stored: str) -> str:
    """The staged upload's key of a stored object (its tails carry a suffix)."""
    match = TAIL_SUFFIX_RE.search(stored)
    return stored[: match.start()] if match else stored


@dataclass
class Layout:
    """Where a staged upload's bytes are: the state kept in `Staged.state`."""

    part_size: int
    upload_id: str | None = None
    parts: list[str] = field(default_factory=list)  # ETags of the full parts, in order
    tails: list[tuple[str, int]] = field(default_factory=list)  # the tail's pieces: (token, size), in order

    @classmethod
    def of(cls, staged: Staged, part_size: int) -> Layout:
        state = staged.state
        layout = cls(part_size=state.get("part_size", part_size), upload_id=state.get("upload_id"),
                     parts=list(state.get("parts", [])),
                     tails=[(token, size) for token, size in state.get("tails", [])])
        if layout.size != staged.size:
            raise StorageUnavailable(f"staged state of {staged.size} bytes describes {layout.size}",
                                     code="staged_state_invalid")
        return layout

    @property
    def tail_size(self) -> int:
        return sum(size for _, size in self.tails)

    @property
    def size(self) -> int:
        return len(self.parts) * self.part_size + self.tail_size

    def staged(self) -> Staged:
        return Staged(self.size, {"part_size": self.part_size, "upload_id": self.upload_id,
                                  "parts": list(self.parts), "tails": [[token, size] for token, size in self.tails]})


class S3Staging(Staging):
    def __init__(self, storage: S3Storage, part_size: int, temp_dir: Path | None = None) -> None:
        """`temp_dir`: where writers keep the pending part (None: the system's temp directory)."""
        self.storage = storage
        self.part_size = part_size
        self.temp_dir = temp_dir

    def begin(self, key: str) -> Staged:
        """Nothing is stored until the first byte: a crash right after leaves nothing to sweep."""
        check_key(key)
        return Layout(self.part_size).staged()

    def writer(self, key: str, staged: Staged) -> StagingWriter:
        return S3StagingWriter(self, check_key(key), Layout.of(staged, self.part_size))

    def materialise(self, key: str, staged: Staged, directory: Path) -> Path:
        """Complete the multipart upload with the tail as its last part, then download the object; with no
        full part, download the tail's pieces. After a crash midway the completed object is reused."""
        layout = Layout.of(staged, self.part_size)
        if layout.upload_id is not None:
            self._complete(check_key(key), layout)
            sources = [key]
        else:
            sources = [tail_key(key, token) for token, _ in layout.tails]
        target = materialised_path(directory)
        try:
            with _opened(target) as out:
                self._download(key, sources, out, staged.size)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    def _complete(self, key: str, layout: Layout) -> None:
        """Once: a call that died before its download left the object, which is reused. The object and then
        the upload are looked at first, since S3 servers differ in what they answer to completing an upload
        that is completed or aborted already."""
        try:
            if self.storage.stat(key).size == layout.size:
                return
        except NotFound:
            pass
        self.check_upload(key, layout)
        client, bucket = self.storage.client, self.storage.bucket
        parts = [{"PartNumber": number, "ETag": etag} for number, etag in enumerate(layout.parts, start=1)]
        with _lost_as_missing(key, layout.size), _translated("complete", key):
            if layout.tails:
                with self.joined(key, layout.tails) as (tail, size):
                    uploaded = client.upload_part(Bucket=bucket, Key=key, UploadId=layout.upload_id,
                                                  PartNumber=len(parts) + 1, Body=CappedReads(tail),
                                                  ContentLength=size)
                parts.append({"PartNumber": len(parts) + 1, "ETag": uploaded["ETag"]})
            client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=layout.upload_id,
                                             MultipartUpload={"Parts": parts})

    @contextmanager
    def joined(self, key: str, pieces: list[tuple[str, int]], after: BinaryIO | None = None,
               ) -> Iterator[tuple[BinaryIO, int]]:
        """The pieces' bytes, then those of `after` (a file appended to, left at its end), as a file read from
        its start, and their size: `after` itself when there are no pieces, else a temp file."""
        if not pieces and after is not None:
            size = after.seek(0, 2)
            after.seek(0)
            try:
                yield after, size
            finally:
                after.seek(0, 2)
            return
        size = sum(piece_size for _, piece_size in pieces)
        with tempfile.TemporaryFile(dir=self.temp_dir) as joined:
            self._download(key, [tail_key(key, token) for token, _ in pieces], joined, size)
            if after is not None:
                after.seek(0)
                shutil.copyfileobj(after, joined)
                size = joined.tell()
                after.seek(0, 2)
            joined.seek(0)
            yield joined, size

    def check_upload(self, key: str, layout: Layout) -> None:
        """`staged_bytes_missing` unless the layout's multipart upload is still in progress (a bucket's
        lifecycle rule may abort it), so a client learns it must start again before it sends more."""
        with _lost_as_missing(key, layout.size), _translated("check", key):
            self.storage.client.list_parts(Bucket=self.storage.bucket, Key=key, UploadId=layout.upload_id,
                                           MaxParts=1)

    def _download(self, key: str, sources: list[str], out: BinaryIO, size: int) -> None:
        """The objects' bytes, one after the other, into `out`: `size` of them, or the staged upload is lost."""
        written = 0
        try:
            for source in sources:
                for chunk in self.storage.open_range(source):
                    out.write(chunk)
                    written += len(chunk)
        except NotFound:
            raise staged_bytes_missing(key, size) from None
        if written != size:
            raise StorageUnavailable(f"staged upload {key} has {written} bytes, not {size}")

    def discard(self, key: str) -> None:
        """Abort the key's multipart uploads (every one: a writer that died before its state was recorded
        may have begun another), then delete its object and its tails."""
        check_key(key)
        for upload_key, upload_id, _ in self._multipart_uploads(key):
            if upload_key == key:
                self.storage.abort_multipart(key, upload_id)  # one aborted or completed meanwhile is no error
        objects = [info.key for info in self.storage.list(key) if base_key(info.key) == key]
        if self.storage.delete_many(objects):
            raise StorageUnavailable(f"cannot delete staged upload {key}")

    def _multipart_uploads(self, prefix: str) -> Iterator[tuple[str, str, datetime]]:
        """(key, upload id, initiated) of the multipart uploads in progress under `prefix`."""
        pages = self.storage.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.storage.bucket, Prefix=prefix)
        with _translated("list"):
            for page in pages:
                for upload in page.get("Uploads", []):
                    yield upload["Key"], upload["UploadId"], upload["Initiated"]

    def stored_keys(self, prefix: str, older_than: datetime) -> Iterator[str]:
        """A key's last write is the newest of its objects (tails included), its multipart uploads'
        initiations and, for a key that looks older than `older_than` by those, their parts."""
        check_prefix(prefix)
        latest: dict[str, datetime] = {}
        uploads: dict[str, list[str]] = {}
        for info in self.storage.list(prefix):
            if info.last_modified is not None:
                _keep_latest(latest, base_key(info.key), info.last_modified)
        for key, upload_id, initiated in self._multipart_uploads(prefix):
            _keep_latest(latest, key, initiated)
            uploads.setdefault(key, []).append(upload_id)
        for key in sorted(latest, key=str.encode):
            for upload_id in uploads.get(key, []) if latest[key] < older_than else []:
                for written in self._parts_written(key, upload_id):
                    _keep_latest(latest, key, written)
            if latest[key] < older_than:
                yield key

    def _parts_written(self, key: str, upload_id: str) -> Iterator[datetime]:
        pages = self.storage.client.get_paginator("list_parts").paginate(
            Bucket=self.storage.bucket, Key=key, UploadId=upload_id)
        try:
            with _translated("list", key):
                for page in pages:
                    for part in page.get("Parts", []):
                        yield part["LastModified"]
        except StorageUnavailable as exc:
            if _cause_code(exc) != "NoSuchUpload":  # completed or aborted since the listing
                raise


@contextmanager
def _lost_as_missing(key: str, size: int) -> Iterator[None]:
    """A multipart upload or tail that is gone: the staged bytes are lost, as when a local file is."""
    try:
        yield
    except NotFound:
        raise staged_bytes_missing(key, size) from None
    except StorageUnavailable as exc:
        if _cause_code(exc) == "NoSuchUpload":
            raise staged_bytes_missing(key, size) from None
        raise


@contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """A new file to write, its OSErrors a storage fault."""
    try:
        with path.open("xb") as file:
            yield file
    except OSError as exc:
        raise StorageUnavailable(f"cannot write a staged upload's bytes: {exc}") from exc


def _keep_latest(latest: dict[str, datetime], key: str, when: datetime) -> None:
    if key not in latest or when > latest[key]:
        latest[key] = when


class S3StagingWriter(StagingWriter):
    """Keeps the bytes that arrived after the last persisted state (with the tail, at most P) in a temp file."""

    def __init__(self, staging: S3Staging, key: str, layout: Layout) -> None:
        self._staging = staging
        self._storage = staging.storage
        self._key = key
        self._layout = layout  # the last persisted state
        self._upload_id = layout.upload_id
        self._fresh = 0  # bytes in the buffer: what arrived after the layout's tail
        if staging.temp_dir is not None:
            staging.temp_dir.mkdir(parents=True, exist_ok=True)
        self._buffer = tempfile.TemporaryFile(dir=staging.temp_dir)  # noqa: SIM115 - closed by `close`
        try:
            if layout.upload_id is not None:
                staging.check_upload(key, layout)
            self._drop_other_tails()
        except BaseException:
            self._buffer.close()
            raise

    @property
    def _pending(self) -> int:
        """The bytes after the last full part: the tail's, then the fresh ones."""
        return self._layout.tail_size + self._fresh

    def _drop_other_tails(self) -> None:
        """The key's tail objects but the pieces of the state the caller recorded: superseded, or never
        recorded. A piece that is gone means the staged bytes are lost (the client learns it before sending)."""
        keep = {tail_key(self._key, token) for token, _ in self._layout.tails}
        stored = {info.key for info in self._storage.list(f"{self._key}{TAIL_MARK}")
                  if base_key(info.key) == self._key}
        if not keep <= stored:
            raise staged_bytes_missing(self._key, self._layout.size)
        if stored - keep:
            self._storage.delete_many(sorted(stored - keep))  # best effort: what stays goes with the upload

    def write(self, block: bytes) -> Staged | None:
        """A full part is uploaded as soon as it is pending (first thing, when its upload failed before)."""
        checkpoint = None
        view = memoryview(block)
        while True:
            if self._pending == self._layout.part_size:
                checkpoint = self._upload_part()
            if not view:
                return checkpoint
            piece = view[: self._layout.part_size - self._pending]
            self._buffer.write(piece)
            self._fresh += len(piece)
            view = view[len(piece) :]

    def _upload_part(self) -> Staged:
        """The tail's pieces read back, then the fresh bytes, as the next part."""
        layout, client, bucket = self._layout, self._storage.client, self._storage.bucket
        self._buffer.flush()
        with _lost_as_missing(self._key, layout.size), _translated("stage", self._key), \
                self._staging.joined(self._key, layout.tails, after=self._buffer) as (part, size):
            if self._upload_id is None:
                self._upload_id = client.create_multipart_upload(
                    Bucket=bucket, Key=self._key, ContentType=STAGED_CONTENT_TYPE)["UploadId"]
            etag = client.upload_part(Bucket=bucket, Key=self._key, UploadId=self._upload_id,
                                      PartNumber=len(layout.parts) + 1, Body=CappedReads(part),
                                      ContentLength=size)["ETag"]
        self._clear()
        self._layout = Layout(layout.part_size, self._upload_id, [*layout.parts, etag])
        return self._layout.staged()

    def persist(self) -> Staged:
        """The fresh bytes as one more piece of the tail (the last pieces merged while the one before is at
        most twice the newest), unless nothing arrived since the last persisted state."""
        if self._fresh:
            self._buffer.flush()
            with self._staging.joined(self._key, [], after=self._buffer) as (fresh, size):
                piece = self._put_piece(fresh, size)
            self._clear()
            tails = [*self._layout.tails, piece]
            while True:  # each step a state of its own: one that fails leaves the writer at the one before
                self._layout = Layout(self._layout.part_size, self._layout.upload_id, self._layout.parts, tails)
                if len(tails) < 2 or tails[-2][1] > 2 * tails[-1][1]:
                    break
                tails = [*tails[:-2], self._merged(tails[-2:])]
        return self._layout.staged()

    def _merged(self, pieces: list[tuple[str, int]]) -> tuple[str, int]:
        """The pieces' bytes as one new piece (they stay until the next writer's start: see the module)."""
        with _lost_as_missing(self._key, self._layout.size), _translated("stage", self._key), \
                self._staging.joined(self._key, pieces) as (joined, size):
            return self._put_piece(joined, size)

    def _put_piece(self, source: BinaryIO, size: int) -> tuple[str, int]:
        token = secrets.token_hex(8)
        with _translated("stage", self._key):
            self._storage.client.put_object(Bucket=self._storage.bucket, Key=tail_key(self._key, token),
                                            Body=CappedReads(source), ContentLength=size,
                                            ContentType=STAGED_CONTENT_TYPE)
        return token, size

    def _clear(self) -> None:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._fresh = 0

    def abandon(self) -> None:
        """Back to the last persisted state: the fresh bytes go."""
        self._clear()

    def close(self) -> None:
        self._buffer.close()


class CappedReads:
    """A seekable file whose sized reads return at most READ_CAP bytes (a short read, as a socket gives)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size if size < 0 else min(size, READ_CAP))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()
