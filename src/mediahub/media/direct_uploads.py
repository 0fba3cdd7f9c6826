"""Uploads sent straight to the S3 bucket: the API signs, checks and ingests; the bytes never pass through it.

A client announces an upload to a target (authorised and rate-limited by the route, as a form
upload is); the service opens an upload row (`media.uploads`) whose staged key
(`incoming_key("direct", public_id)`) is where the client sends its bytes, by one of two means:

- multipart (the endpoints of Uppy's `@uppy/aws-s3`): a multipart upload at the key, parts PUT
  to URLs signed here, listed to resume, then completed here;
- a presigned POST form (small files): a policy for exactly the key, with a `content-length-range`
  up to the target's byte cap, then completed here by a call of its own.

Every call after the first names the key (and the multipart upload id): only the creator of an
upload still receiving bytes gets anything but 404. Completion checks what arrived before anything
is assembled (each named part's ETag and size, the byte cap), assembles the object, copies it into
a local spool under the cap (comparing the SHA-256 the client may have declared) and hands the
spool to the shared ingest, which records the outcome with the item; completing again answers that
outcome. A refused file's bytes leave the bucket at once, an ingested one's once its item exists;
the sweeper removes what expired uploads leave behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from typing import Any, NoReturn

from mediahub.config import Settings
from mediahub.db.models import MediaItem, Upload
from mediahub.db.repositories.uploads import RECEIVING, UploadRepository
from mediahub.db.session import Database
from mediahub.entities import Target
from mediahub.errors import ChecksumMismatch, Conflict, InvalidInput, MediaHubError, NotFound, TooLarge
from mediahub.media.access import Principal
from mediahub.media.keys import incoming_key
from mediahub.media.uploads import TRANSIENT_CATEGORIES, Lease, UploadService, new_upload_id, target_of
from mediahub.pipeline.intake import spool
from mediahub.storage.base import KeyExists, Storage
from mediahub.storage.s3 import MAX_PARTS, Part, PresignedPost, S3Storage

log = logging.getLogger(__name__)

FOLDER = "direct"  # the staged keys' place under the incoming prefix
MULTIPART, POST = "s3_multipart", "s3_post"  # Upload.transport
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part, but for the last


def max_parts(cap: int) -> int:
    """The most parts an upload of at most `cap` bytes has: each part but the last holds MIN_PART_SIZE or more."""
    return min(MAX_PARTS, max(cap - 1, 0) // MIN_PART_SIZE + 1)


def _plain_etag(etag: str) -> str:
    """S3 lists ETags quoted; clients send them with or without the quotes."""
    return etag.strip().strip('"')


@dataclass(frozen=True)
class Started:
    """A new direct upload: the key the client sends its bytes to, and how."""

    key: str
    upload_id: str | None = None  # multipart: the multipart upload's id
    post: PresignedPost | None = None  # presigned POST: the form


class DirectUploadService:
    def __init__(self, settings: Settings, database: Database, uploads: UploadService, storage: Storage) -> None:
        self.settings = settings
        self.database = database
        self.uploads = uploads
        self._store = storage if isinstance(storage, S3Storage) else None

    def require_bucket(self) -> S3Storage:
        """The bucket clients send to; NotFound on any other store."""
        if self._store is None:
            raise NotFound("direct uploads need the S3 store (STORAGE_TYPE=s3); upload through the API instead",
                           code="direct_uploads_unavailable")
        return self._store

    # Creation (the route has authorised the target and counted the rate limit)

    def start_multipart(self, principal: Principal, target: Target, fields: dict[str, Any]) -> Started:
        """A multipart upload at a new upload's key, then the upload's row (the multipart upload is aborted
        again when the row is refused: too many open uploads)."""
        store = self.require_bucket()
        public_id = new_upload_id()
        key = incoming_key(FOLDER, public_id)
        upload_id = store.create_multipart(key)
        try:
            self._open(principal, MULTIPART, target, fields, public_id, {"upload_id": upload_id})
        except BaseException:
            with suppress(MediaHubError):  # else the sweeper finds a multipart upload that no row names
                store.abort_multipart(key, upload_id)
            raise
        return Started(key, upload_id=upload_id)

    def start_post(self, principal: Principal, target: Target, fields: dict[str, Any]) -> Started:
        """The upload's row, then a form for exactly its key and at most the target's byte cap."""
        store = self.require_bucket()
        upload = self._open(principal, POST, target, fields, None, {})
        post = store.presign_post(upload.storage_key, self.settings.direct_upload_url_seconds,
                                  self.uploads.byte_cap(target))
        return Started(upload.storage_key, post=post)

    def _open(self, principal: Principal, transport: str, target: Target, fields: dict[str, Any],
              public_id: str | None, staging: dict[str, Any]) -> Upload:
        if fields.get("sha256"):
            staging = {**staging, "sha256": fields["sha256"]}  # what the client declares of the bytes it sends
        return self.uploads.open(principal, transport, target, fields, None, folder=FOLDER, staging=staging,
                                 public_id=public_id)

    # Multipart: sign, list, complete, abort

    def sign_parts(self, principal: Principal, key: str, upload_id: str, numbers: Sequence[int]) -> dict[int, str]:
        """URLs to PUT the parts to; none beyond the parts the target's byte cap allows."""
        store = self.require_bucket()
        upload = self._receiving(principal, key, MULTIPART, upload_id)
        cap = self.uploads.byte_cap(target_of(upload))
        most = max_parts(cap)
        for number in numbers:
            if number > most:
                raise TooLarge(f"part {number} is past the {most} parts of an upload of at most {cap} bytes",
                               code="too_many_parts", limit=cap, max_parts=most)
        seconds = self.settings.direct_upload_url_seconds
        return {number: store.presign_part(key, upload_id, number, seconds) for number in numbers}

    def list_parts(self, principal: Principal, key: str, upload_id: str) -> list[Part]:
        store = self.require_bucket()
        self._receiving(principal, key, MULTIPART, upload_id)
        return store.list_parts(key, upload_id)

    def complete_multipart(self, principal: Principal, key: str, upload_id: str,
                           parts: Sequence[tuple[int, str]]) -> MediaItem | int:
        """Assemble the named parts (number, ETag) and ingest the file: the new item, or, for an upload an
        earlier call completed, that item's id (or its refusal raised again)."""

        def assemble(store: S3Storage, upload: Upload, lease: Lease, cap: int) -> None:
            self._assemble(store, upload, lease, parts, cap)

        return self._complete(principal, key, MULTIPART, upload_id, assemble)

    def abort(self, principal: Principal, key: str, upload_id: str) -> None:
        """Remove the multipart upload, anything assembled from it, and the upload's row. A finished upload has
        nothing left to abort: Uppy aborts after every refused completion, so that is no error."""
        store = self.require_bucket()
        upload = self._owned(principal, key, MULTIPART, upload_id)
        if upload.state != RECEIVING:
            return
        lease = self.uploads.lease(upload.public_id)
        try:
            upload = self._receiving(principal, key, MULTIPART, upload_id)  # as it is now that this request holds it
            store.abort_multipart(key, upload_id)
            store.delete(key)
            with self.database.session() as session:
                UploadRepository(session).remove([upload.id])
        finally:
            lease.release()

    # Presigned POST: completion

    def complete_post(self, principal: Principal, key: str) -> MediaItem | int:
        """Ingest the file the form sent (as `complete_multipart` answers)."""

        def posted(store: S3Storage, upload: Upload, lease: Lease, cap: int) -> None:
            raise Conflict("nothing has been uploaded to this key yet; POST the form first", code="upload_incomplete")

        return self._complete(principal, key, POST, None, posted)

    # Shared

    def _owned(self, principal: Principal, key: str, transport: str, upload_id: str | None) -> Upload:
        """The caller's upload at `key` (of this transport, with this multipart upload); anyone else's is
        NotFound, as is no upload at all."""
        upload = self.uploads.owned(principal, key.rsplit("/", 1)[-1])
        if (upload.storage_key != key or upload.transport != transport
                or (upload_id is not None and upload.staging.get("upload_id") != upload_id)):
            raise NotFound("no such upload", code="upload_not_found")
        return upload

    def _receiving(self, principal: Principal, key: str, transport: str, upload_id: str | None) -> Upload:
        upload = self._owned(principal, key, transport, upload_id)
        if upload.state != RECEIVING:
            raise NotFound("this upload is finished: complete it again to learn its outcome",
                           code="upload_finished")
        return upload

    def _complete(self, principal: Principal, key: str, transport: str, upload_id: str | None,
                  assemble: Callable[[S3Storage, Upload, Lease, int], None]) -> MediaItem | int:
        store = self.require_bucket()
        upload = self._owned(principal, key, transport, upload_id)
        if upload.state != RECEIVING:
            return self._outcome(upload)
        lease = self.uploads.lease(upload.public_id)
        lease.steady = True  # the bytes are in the bucket: what follows is this request's own work
        try:
            upload = self._owned(principal, key, transport, upload_id)  # as it is now that this request holds it
            if upload.state != RECEIVING:
                return self._outcome(upload)
            cap = self.uploads.byte_cap(target_of(upload))
            # An object at the key is this upload's, assembled by a completion that stopped before its ingest.
            if not store.exists(key):
                assemble(store, upload, lease, cap)
            return self._ingest(store, upload, lease, cap)
        finally:
            lease.release()

    def _outcome(self, upload: Upload) -> int:
        outcome = self.uploads.outcome(upload)
        if outcome is None:  # finished without an outcome: not a state a finished row is left in
            raise NotFound("this upload is finished", code="upload_finished")
        if outcome.error is not None:
            raise outcome.error
        assert outcome.media_id is not None
        return outcome.media_id

    def _assemble(self, store: S3Storage, upload: Upload, lease: Lease, parts: Sequence[tuple[int, str]],
                  cap: int) -> None:
        """Complete the multipart upload from the named parts, once they are what S3 lists. A wrong list is
        the client's to correct (the upload stays); more bytes than the cap refuse the upload."""
        key, upload_id = upload.storage_key, upload.staging["upload_id"]
        numbers = [number for number, _ in parts]
        if not numbers or numbers != sorted(set(numbers)):
            raise InvalidInput("name the uploaded parts in ascending order of their numbers, each once",
                               code="invalid_parts")
        uploaded = {part.number: part for part in store.list_parts(key, upload_id)}
        named: list[Part] = []
        for number, etag in parts:
            part = uploaded.get(number)
            if part is None or _plain_etag(part.etag) != _plain_etag(etag):
                raise InvalidInput(f"part {number} is not uploaded with that ETag; list the parts to see what is",
                                   code="part_mismatch", part=number)
            named.append(part)
        small = next((part.number for part in named[:-1] if part.size < MIN_PART_SIZE), None)
        if small is not None:
            raise InvalidInput(f"part {small} has less than {MIN_PART_SIZE} bytes and is not the last",
                               code="part_too_small", part=small)
        total = sum(part.size for part in named)
        if total > cap:
            self._refuse(store, upload, lease, TooLarge(f"the parts hold {total} bytes; at most {cap}", limit=cap))
        lease.touch()  # still this request's (Locked if another took it over)
        try:
            store.complete_multipart(key, upload_id, [(part.number, part.etag) for part in named])
        except KeyExists:  # assembled by an earlier call whose answer was lost: the same object
            pass

    def _ingest(self, store: S3Storage, upload: Upload, lease: Lease, cap: int) -> MediaItem:
        """Copy the object into a spool under the cap, check the declared digest, ingest; a refusal is
        recorded and the bytes are removed, a transient failure leaves both for the next try."""
        key = upload.storage_key
        try:
            size = store.stat(key).size
            if size > cap:
                raise TooLarge(f"the upload holds {size} bytes; at most {cap}", limit=cap)
            with closing(store.open_range(key)) as chunks:
                spooled = spool(chunks, cap, self.settings.temp_dir)
            try:
                declared = upload.staging.get("sha256")
                if declared and spooled.sha256 != declared:
                    raise ChecksumMismatch("the file's SHA-256 is not the one declared for it",
                                           code="checksum_mismatch")
                item = self.uploads.ingest(upload, lease, spooled)
            finally:
                spooled.discard()
        except MediaHubError as exc:
            if exc.category in TRANSIENT_CATEGORIES:
                raise
            self._refuse(store, upload, lease, exc)
        self._remove_bytes(store, upload)
        return item

    def _refuse(self, store: S3Storage, upload: Upload, lease: Lease, exc: MediaHubError) -> NoReturn:
        """Record the refusal as the upload's outcome (unless the ingest has), remove its bytes, raise it."""
        if upload.state == RECEIVING:
            self.uploads.fail(upload, lease, exc)
        self._remove_bytes(store, upload)
        raise exc

    @staticmethod
    def _remove_bytes(store: S3Storage, upload: Upload) -> None:
        """What the upload left in the bucket; on a storage fault the sweeper removes it with the row."""
        try:
            if upload.transport == MULTIPART:
                store.abort_multipart(upload.storage_key, upload.staging["upload_id"])
            store.delete(upload.storage_key)
        except MediaHubError as exc:
            log.warning("could not remove the bytes of upload %s: %s", upload.public_id, exc.message)
