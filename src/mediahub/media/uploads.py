"""Uploads whose bytes arrive apart from their ingest (tus, direct to S3): what both transports share.

An upload is a row (`db.models.Upload`), created when the client announces it, after the
checks of a form upload: the route authorises the target and counts the rate limit, `open`
adds the byte cap and the open-uploads limit, before any byte is accepted. Bytes then
arrive by the transport's own means. Whoever writes bytes or ingests holds the row's lease,
renewed while it works, so requests in several processes never advance one upload twice,
and a killed process holds it only until the lease runs out. Once every byte is there,
`ingest` runs the one ingest pipeline of form uploads and records the outcome in the item's
own transaction: an upload makes its item exactly once, and keeps answering with it (or
with the ingest's problem) until it expires.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from mediahub.config import Settings
from mediahub.db.models import MediaItem, Upload, utcnow
from mediahub.db.repositories.uploads import DONE, FAILED, UploadRepository
from mediahub.db.session import Database
from mediahub.entities import Target
from mediahub.errors import Locked, MediaHubError, NotFound, RateLimited, RecordedError, TooLarge
from mediahub.media.access import Principal
from mediahub.media.ingest import IngestService, UploadRequest
from mediahub.media.keys import incoming_key
from mediahub.pipeline.intake import Spooled

# Errors after which the same bytes may well be ingested on a later try: not recorded as the outcome.
TRANSIENT_CATEGORIES = frozenset({"unavailable", "busy", "locked"})
# What an upload row keeps of its creation: the form fields, the raw tus metadata, the parts a final upload joins.
FIELD_NAMES = ("filename", "alt_text", "caption", "is_primary", "tags", "allow_duplicate", "metadata", "parts")


def new_upload_id() -> str:
    """128 random bits in hex: also a storage key segment, which must start with a letter or digit."""
    return secrets.token_hex(16)


def principal_record(principal: Principal) -> dict[str, Any]:
    return {"sub": principal.sub, "roles": sorted(principal.roles), "verified": principal.verified,
            "grants": sorted(principal.grants)}


def principal_of(record: dict[str, Any]) -> Principal:
    return Principal(record["sub"], frozenset(record.get("roles", ())), bool(record.get("verified")),
                     frozenset(record.get("grants", ())))


def target_if_any(upload: Upload) -> Target | None:
    """The upload's target; None for a tus partial upload that names none."""
    return target_of(upload) if upload.entity_type is not None else None


def target_of(upload: Upload) -> Target:
    if upload.entity_type is None or upload.entity_id is None or upload.entity_field is None:
        raise AssertionError(f"upload {upload.public_id} has no target")
    return Target.parse(upload.entity_type, upload.entity_id, upload.entity_field, upload.parent_id)


class Lease:
    """One request's hold on an upload, renewed on a thread while the request works.

    A writer `touch`es it as bytes arrive; once nothing arrived for half the lease (a connection
    gone quiet), renewal pauses so the client's next request can take over, and a write that
    comes after all first takes the lease back, or stops if another request has it.
    """

    def __init__(self, database: Database, public_id: str, seconds: float) -> None:
        self.database = database
        self.public_id = public_id
        self.seconds = seconds
        self.token = secrets.token_hex(16)
        self.lost = threading.Event()
        self.steady = False  # an ingest, not a stream of bytes: renewed whatever arrives
        self._touched = time.monotonic()
        self._paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _until(self) -> datetime:
        return utcnow() + timedelta(seconds=self.seconds)

    def take(self) -> Lease:
        with self.database.session() as session:
            taken = UploadRepository(session).take_lease(self.public_id, self.token, self._until())
        if not taken:
            raise Locked("another request is writing to or ingesting this upload; try again shortly",
                         code="upload_locked", retry_after=max(1, round(self.seconds / 4)))
        self._thread = threading.Thread(target=self._renew_while_working, name="upload-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> bool:
        with self.database.session() as session:
            return UploadRepository(session).renew_lease(self.public_id, self.token, self._until())

    def _renew_while_working(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            if not self.steady and time.monotonic() - self._touched > self.seconds / 2:
                self._paused = True
                continue
            try:
                renewed = self._renew()
            except MediaHubError:  # the database is away for a moment: the lease has time left; try again
                continue
            if not renewed:
                self.lost.set()
                return

    def touch(self) -> None:
        """Bytes arrived: renewal goes on; after a pause, the lease is taken back first, if no other request
        has had it meanwhile (one that took it and let it go again leaves the upload in a newer state), else
        Locked."""
        self._touched = time.monotonic()
        if self._paused and not self.lost.is_set():
            if self._renew():
                self._paused = False
            else:
                self.lost.set()
        if self.lost.is_set():
            raise _taken_over()

    def arrived(self) -> bool:
        """`touch` without I/O (for the event loop): False when renewal paused, so `touch` must take the lease
        back before more bytes count."""
        if self.lost.is_set():
            raise _taken_over()
        if self._paused:
            return False
        self._touched = time.monotonic()
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.database.session() as session:
                UploadRepository(session).release_lease(self.public_id, self.token)
        except MediaHubError:  # it runs out by itself
            pass


def _taken_over() -> Locked:
    return Locked("this upload was taken over by a newer request", code="upload_locked", retry_after=1)


@dataclass(frozen=True)
class Outcome:
    """Where a finished upload ended: its item's id, or the problem its ingest raised."""

    media_id: int | None = None
    error: RecordedError | None = None


class UploadService:
    def __init__(self, settings: Settings, database: Database, ingest: IngestService) -> None:
        self.settings = settings
        self.database = database
        self.ingest_service = ingest

    def byte_cap(self, target: Target | None) -> int:
        """The most bytes an upload to `target` may have (with no target yet, of any kind)."""
        if target is None:
            return max(self.settings.max_image_size, self.settings.max_video_size)
        return self.ingest_service.size_cap(target)

    def check_length(self, length: int, target: Target | None) -> None:
        cap = self.byte_cap(target)
        if length > cap:
            raise TooLarge(f"the upload declares {length} bytes; at most {cap}", limit=cap)

    def open(self, principal: Principal, transport: str, target: Target | None, fields: dict[str, Any],
             length: int | None, *, folder: str, staging: dict[str, Any] | None = None,
             concat: str | None = None, public_id: str | None = None, limit_open: bool = True) -> Upload:
        """A new upload row, once the byte cap and the caller's open-uploads limit allow it.

        The caller (route) has authorised the target and counted the rate limit. `folder`
        names the staged key's place under the incoming prefix. `limit_open=False`: an upload
        made of others already counted (a tus final upload of its partial ones).
        """
        if length is not None:
            self.check_length(length, target)
        public_id = public_id or new_upload_id()
        now = utcnow()
        with self.database.session() as session:
            repo = UploadRepository(session)
            if limit_open and repo.count_open(principal.sub, now) >= self.settings.upload_max_open:
                raise RateLimited(f"at most {self.settings.upload_max_open} unfinished uploads at once; finish or "
                                  "terminate one first", code="too_many_uploads",
                                  limit=self.settings.upload_max_open, retry_after=60)
            upload = repo.add(Upload(
                public_id=public_id, transport=transport, created_by=principal.sub,
                principal=principal_record(principal),
                entity_type=target.kind.name if target else None, entity_id=target.entity_id if target else None,
                parent_id=target.parent_id if target else None,
                entity_field=target.field.name if target else None,
                fields={name: fields[name] for name in FIELD_NAMES if fields.get(name) is not None},
                length=length, offset=0, concat=concat, state="receiving",
                storage_key=incoming_key(folder, public_id), staging=staging or {},
                expires_at=now + timedelta(seconds=self.settings.upload_expiry_seconds),
            ))
            session.expunge(upload)
        return upload

    def owned(self, principal: Principal, public_id: str) -> Upload:
        """The caller's upload, not expired; anyone else's (or none) is NotFound alike."""
        with self.database.session() as session:
            upload = UploadRepository(session).get(public_id)
            if upload is not None:
                session.expunge(upload)
        if upload is None or upload.created_by != principal.sub or upload.expires_at <= utcnow():
            raise NotFound("no such upload", code="upload_not_found")
        return upload

    def lease(self, public_id: str) -> Lease:
        return Lease(self.database, public_id, self.settings.upload_lease_seconds).take()

    def record(self, upload: Upload, lease: Lease, offset: int, staging: dict[str, Any],
               length: int | None = None) -> None:
        with self.database.session() as session:
            recorded = UploadRepository(session).record(upload.public_id, lease.token, offset, staging, length)
        if not recorded:
            raise _taken_over()
        upload.offset, upload.staging = offset, staging
        if length is not None:
            upload.length = length

    def ingest(self, upload: Upload, lease: Lease, spooled: Spooled) -> MediaItem:
        """Ingest the complete bytes as a form upload of the same fields would be; the outcome is recorded
        (the item in its own transaction) unless the failure is one a later try may not meet."""
        fields = upload.fields
        principal = principal_of(upload.principal)

        def mark_done(session: Session, item: MediaItem) -> None:
            if not UploadRepository(session).finish(upload.public_id, lease.token, media_id=item.id):
                raise _taken_over()

        lease.steady = True
        request = UploadRequest(
            target_of(upload), uploaded_by=principal.sub, verified=principal.verified,
            is_primary=bool(fields.get("is_primary")), alt_text=fields.get("alt_text"),
            caption=fields.get("caption"), tags=list(fields.get("tags", [])), filename=fields.get("filename"),
            allow_duplicate=bool(fields.get("allow_duplicate")), principal=principal, on_commit=mark_done,
        )
        try:
            item = self.ingest_service.ingest_spooled(spooled, request)
        except MediaHubError as exc:
            if exc.category not in TRANSIENT_CATEGORIES:
                self.fail(upload, lease, exc)
            raise
        upload.state, upload.media_id = DONE, item.id
        return item

    def fail(self, upload: Upload, lease: Lease, exc: MediaHubError) -> None:
        """Record a refusal as the upload's outcome (by the lease holder)."""
        record = RecordedError.record(exc)
        with self.database.session() as session:
            UploadRepository(session).finish(upload.public_id, lease.token, outcome=record)
        upload.state, upload.outcome = FAILED, record

    @staticmethod
    def outcome(upload: Upload) -> Outcome | None:
        """The finished upload's item id or recorded problem; None while unfinished."""
        if upload.state == DONE and upload.media_id is not None:
            return Outcome(media_id=upload.media_id)
        if upload.state == FAILED and upload.outcome is not None:
            return Outcome(error=RecordedError.of(upload.outcome))
        return None
