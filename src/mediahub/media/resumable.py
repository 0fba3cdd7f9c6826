"""Resumable uploads (tus 1.0.0): the use cases behind `api/routes/tus.py`.

An upload is created with its target and fields (checked then, before any byte), its bytes
are appended by PATCH requests from any process (each holding the upload's lease while it
writes), persisted in the staging store as they arrive, and once the last byte is in, the
request that wrote it ingests the whole file exactly as a form upload (`media/uploads.py`).
A request that finds every byte there but no outcome (its writer died mid-ingest) ingests
it again. Concatenation joins partial uploads (no target of their own) into a final one.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediahub.config import Settings
from mediahub.db.models import Upload
from mediahub.db.session import Database
from mediahub.db.repositories.uploads import RECEIVING, UploadRepository
from mediahub.entities import Target
from mediahub.errors import (
    ChecksumMismatch,
    Conflict,
    Forbidden,
    InvalidInput,
    Locked,
    MalformedRequest,
    MediaHubError,
    TooLarge,
)
from mediahub.media.access import Principal
from mediahub.media.keys import incoming_key
from mediahub.media.uploads import TRANSIENT_CATEGORIES, Lease, Outcome, UploadService, new_upload_id, target_if_any
from mediahub.pipeline.intake import CHUNK, spooled_file
from mediahub.storage.staging import Staged, Staging, StagingWriter

TRANSPORT = "tus"
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
PARTIAL, FINAL = "partial", "final"
MAX_CONCAT_PARTS = 100


@dataclass(frozen=True)
class Checksum:
    """`Upload-Checksum` of one PATCH: the digest its body must have."""

    algorithm: str
    digest: bytes


class Appending:
    """One PATCH: the bytes of one request appended under the upload's lease, then recorded.

    Without a checksum, each part the staging store persists is recorded as it lands (a server
    killed mid-request loses at most one part); with one, nothing counts until the whole body
    matched it.
    """

    def __init__(self, service: TusService, upload: Upload, lease: Lease, writer: StagingWriter,
                 limit: int, checksum: Checksum | None) -> None:
        self.service = service
        self.upload = upload
        self.lease = lease
        self.writer = writer
        self.limit = limit  # the declared length, or (deferred) the byte cap
        self.checksum = checksum
        self.hasher = CHECKSUM_ALGORITHMS[checksum.algorithm]() if checksum else None
        self.start = upload.offset  # the upload's offset moves on at each checkpoint recorded meanwhile
        self.received = 0

    @property
    def offset(self) -> int:
        return self.start + self.received

    def expect(self, length: int) -> None:
        """`length` more bytes are coming (a body's declared length, or a block): refused if they pass the limit."""
        if self.offset + length > self.limit:
            raise TooLarge(f"more bytes than the upload's {self.limit}", code="beyond_length", limit=self.limit)

    def write(self, block: bytes) -> None:
        self.lease.touch()
        self.expect(len(block))
        self.received += len(block)
        if self.hasher is not None:
            self.hasher.update(block)
        checkpoint = self.writer.write(block)
        if checkpoint is not None and self.hasher is None:
            self.service.uploads.record(self.upload, self.lease, checkpoint.size, checkpoint.state)

    def close(self, *, whole: bool) -> Upload:
        """Keep what arrived (with a checksum: only a whole body that matches it); the upload as recorded."""
        if self.hasher is not None and self.checksum is not None:
            if not whole:
                self.writer.abandon()
                raise ChecksumMismatch("the body did not arrive whole, so its checksum cannot be checked",
                                       code="checksum_incomplete")
            if self.hasher.digest() != self.checksum.digest:
                self.writer.abandon()
                raise ChecksumMismatch(f"the body's {self.checksum.algorithm} is not the declared one")
        staged = self.writer.persist()
        self.service.uploads.record(self.upload, self.lease, staged.size, staged.state)
        return self.upload

    def abandon(self) -> None:
        with contextlib.suppress(MediaHubError):
            self.writer.abandon()

    def end(self) -> None:
        """The request is over: the writer closes (unpersisted bytes are left to be overwritten), the lease goes."""
        try:
            self.writer.close()
        finally:
            self.lease.release()


class TusService:
    def __init__(self, settings: Settings, database: Database, uploads: UploadService, staging: Staging) -> None:
        self.settings = settings
        self.database = database
        self.uploads = uploads
        self.staging = staging

    @property
    def max_size(self) -> int:
        return self.uploads.byte_cap(None)

    def _work_dir(self) -> Path:
        directory = self.settings.temp_dir or Path(tempfile.gettempdir())
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def create(self, principal: Principal, target: Target | None, fields: dict[str, Any],
               length: int | None, *, partial: bool = False) -> Upload:
        """A new upload (the route authorised `target` and counted the rate limit); only a partial one may have
        no target."""
        if target is None:
            self._check_untargeted(principal, length)
        public_id = new_upload_id()
        key = incoming_key(TRANSPORT, public_id)
        staged = self.staging.begin(key)
        try:
            return self.uploads.open(principal, TRANSPORT, target, fields, length, folder=TRANSPORT,
                                     staging=staged.state, concat=PARTIAL if partial else None, public_id=public_id)
        except BaseException:
            self.staging.discard(key)
            raise

    def _check_untargeted(self, principal: Principal, length: int | None) -> None:
        """A partial upload naming no target was checked against no right and no kind's cap: the caller's open
        ones hold one file of the largest cap together, declared up front."""
        if length is None:
            raise MalformedRequest("a partial upload that names no target declares its Upload-Length",
                                   code="missing_length")
        with self.database.session() as session:
            held = UploadRepository(session).untargeted_partial_bytes(principal.sub)
        if held + length > self.max_size:
            raise TooLarge(f"your partial uploads without a target would hold {held + length} bytes; at most "
                           f"{self.max_size} together: name the target in their Upload-Metadata, or finish or "
                           "terminate one first", code="partial_bytes_limit", limit=self.max_size)

    def owned(self, principal: Principal, public_id: str) -> Upload:
        return self.uploads.owned(principal, public_id)

    def start_append(self, principal: Principal, public_id: str, offset: int, *, checksum: Checksum | None = None,
                     length: int | None = None) -> Appending:
        """Take the upload's lease for one PATCH at `offset`; `length`: a deferred length declared now."""
        upload = self.owned(principal, public_id)
        if upload.concat == FINAL:
            raise Forbidden("a final (concatenated) upload takes no bytes of its own", code="upload_is_final")
        lease = self.uploads.lease(public_id)
        try:
            upload = self.owned(principal, public_id)  # as it is now that no one else writes to it
            if upload.state != RECEIVING or (upload.length is not None and upload.offset >= upload.length):
                raise Conflict("this upload has all its bytes", code="upload_complete", offset=upload.offset)
            if offset != upload.offset:
                raise Conflict(f"the upload is at offset {upload.offset}, not {offset}", code="offset_mismatch",
                               offset=upload.offset)
            if length is not None:
                self._declare_length(upload, lease, length)
            cap = self.uploads.byte_cap(target_if_any(upload))
            limit = upload.length if upload.length is not None else cap
            writer = self.staging.writer(upload.storage_key, Staged(upload.offset, upload.staging))
            return Appending(self, upload, lease, writer, limit, checksum)
        except BaseException:
            lease.release()
            raise

    def _declare_length(self, upload: Upload, lease: Lease, length: int) -> None:
        if upload.length is not None:
            if length != upload.length:
                raise InvalidInput(f"the upload's length is {upload.length}; it cannot change",
                                   code="length_mismatch")
            return
        if length < upload.offset:
            raise InvalidInput(f"{upload.offset} bytes arrived already, more than {length}", code="length_mismatch")
        self.uploads.check_length(length, target_if_any(upload))
        self.uploads.record(upload, lease, upload.offset, upload.staging, length)

    def finish_if_complete(self, appending: Appending) -> Outcome | None:
        """After a PATCH: ingest when every byte is in (a partial upload waits for its final one)."""
        upload = appending.upload
        if upload.length is None or upload.offset < upload.length or upload.concat == PARTIAL:
            return None
        return self._finish(upload, appending.lease, self._materialised([upload]))

    def status(self, principal: Principal, public_id: str, *, quiet: bool = False) -> tuple[Upload, Outcome | None]:
        """The upload and what became of it; when its bytes are all in but nobody ingests it (its writer died),
        it is ingested now. No outcome: still receiving, or being ingested by another request (or, `quiet`,
        an ingest that failed for a reason a later try may not meet, such as storage being away)."""
        try:
            return self._status(principal, public_id)
        except MediaHubError as exc:
            if not quiet or exc.category not in TRANSIENT_CATEGORIES:
                raise
            return self.owned(principal, public_id), None

    def _status(self, principal: Principal, public_id: str) -> tuple[Upload, Outcome | None]:
        upload = self.owned(principal, public_id)
        finished = self.uploads.outcome(upload)
        if finished is not None or not self._complete(upload) or upload.concat == PARTIAL:
            return upload, finished
        try:
            lease = self.uploads.lease(public_id)
        except Locked:
            return upload, None
        try:
            upload = self.owned(principal, public_id)
            finished = self.uploads.outcome(upload)
            if finished is None:
                parts = self._parts(principal, upload) if upload.concat == FINAL else [upload]
                finished = self._finish(upload, lease, self._materialised(parts))
            return upload, finished
        finally:
            lease.release()

    def settled(self, principal: Principal, public_id: str, offset: int) -> tuple[Upload, Outcome | None] | None:
        """An empty PATCH at the end of an upload that has all its bytes: its status (a client that lost the
        last answer asks again); None for any other upload."""
        upload = self.owned(principal, public_id)
        if upload.length is None or offset != upload.length or upload.offset != upload.length:
            return None
        return self.status(principal, public_id)

    @staticmethod
    def _complete(upload: Upload) -> bool:
        return upload.state == RECEIVING and upload.length is not None and upload.offset >= upload.length

    def create_final(self, principal: Principal, target: Target, fields: dict[str, Any],
                     part_ids: list[str]) -> tuple[Upload, Outcome]:
        """Concatenation: a final upload of the caller's complete partial uploads, in order, ingested at once."""
        if not part_ids or len(part_ids) > MAX_CONCAT_PARTS or len(set(part_ids)) < len(part_ids):
            raise InvalidInput(f"a final upload joins 1 to {MAX_CONCAT_PARTS} distinct partial uploads",
                               code="invalid_concat")
        for part_id in part_ids:  # anyone else's is NotFound before any is held
            self.owned(principal, part_id)
        with contextlib.ExitStack() as held:
            for part_id in part_ids:  # no other request joins, continues or terminates them until this one ends
                part_lease = self.uploads.lease(part_id)
                held.callback(part_lease.release)
                part_lease.steady = True
            parts = [self.owned(principal, part_id) for part_id in part_ids]
            joined = {(part.outcome or {}).get("joined_into") for part in parts}
            if len(joined) == 1 and None not in joined:  # asked again (the answer was lost): the final upload made
                return self.status(principal, joined.pop())
            for part in parts:
                if part.concat != PARTIAL or not self._complete(part):
                    raise Conflict(f"upload {part.public_id} is not a complete partial upload",
                                   code="partial_incomplete")
            length = sum(part.length or 0 for part in parts)
            public_id = new_upload_id()
            upload = self.uploads.open(principal, TRANSPORT, target, {**fields, "parts": part_ids}, length,
                                       folder=TRANSPORT, concat=FINAL, public_id=public_id, limit_open=False)
            lease = self.uploads.lease(public_id)
            try:
                with self.database.session() as session:
                    UploadRepository(session).record(public_id, lease.token, length, {"parts": part_ids})
                upload.offset = length
                return upload, self._finish(upload, lease, self._materialised(parts))
            finally:
                lease.release()

    def _parts(self, principal: Principal, upload: Upload) -> list[Upload]:
        return [self.owned(principal, part_id) for part_id in upload.fields.get("parts", [])]

    @contextlib.contextmanager
    def _materialised(self, parts: list[Upload]) -> Iterator[Path]:
        """The staged bytes of `parts`, joined in order, as one local file removed afterwards."""
        directory = self._work_dir()
        paths = [self.staging.materialise(p.storage_key, Staged(p.offset, p.staging), directory) for p in parts]
        try:
            if len(paths) > 1:
                joined = Path(tempfile.mkstemp(prefix="upload-", dir=directory)[1])
                paths.append(joined)
                with joined.open("wb") as out:
                    for path in paths[:-1]:
                        with path.open("rb") as source:
                            while block := source.read(CHUNK):
                                out.write(block)
                yield joined
            else:
                yield paths[0]
        finally:
            for path in paths:
                path.unlink(missing_ok=True)

    def _finish(self, upload: Upload, lease: Lease, materialised: contextlib.AbstractContextManager[Path]) -> Outcome:
        """Ingest the whole file; once an outcome is recorded, the staged bytes (and partial uploads) go."""
        lease.steady = True  # from here on no bytes arrive: copying them out of the store must not lose the lease
        try:
            with materialised as path:
                spooled = spooled_file(path)
                self.uploads.ingest(upload, lease, spooled)
        except MediaHubError:
            if upload.state == RECEIVING:  # not recorded: a later request tries again
                raise
        self._discard(upload)
        outcome = self.uploads.outcome(upload)
        assert outcome is not None, "an ingest either stores the item or records why not"
        return outcome

    def _discard(self, upload: Upload) -> None:
        """The bytes of a finished upload, and the partial uploads it joined (rows and bytes)."""
        part_ids = upload.fields.get("parts", [])
        for key in [upload.storage_key, *(incoming_key(TRANSPORT, part) for part in part_ids)]:
            with contextlib.suppress(MediaHubError):  # the sweeper removes what is left
                self.staging.discard(key)
        if part_ids:
            with self.database.session() as session:
                UploadRepository(session).join(part_ids, upload.public_id)

    def terminate(self, principal: Principal, public_id: str) -> None:
        """Termination: the upload and its bytes go; an upload being written to is Locked until its writer ends."""
        upload = self.owned(principal, public_id)
        lease = self.uploads.lease(public_id)
        try:
            self.staging.discard(upload.storage_key)
            with self.database.session() as session:
                UploadRepository(session).remove([upload.id])
        finally:
            lease.release()
