"""Consistency between rows and stored objects, and its repair, over a library of any size.

A crash between writing bytes and committing the row leaves stray objects; a lost object leaves a
row that points at nothing. `verify` walks the store's listing and the keys the database knows side
by side, both in byte order of the keys (`Storage.list`, `ObjectKeyRepository.page`), holding a page
of each whatever the number of objects. A key only the store has is stray, unless younger than the
grace period (an upload in flight); a key only rows name is missing. Each candidate is checked again
before it counts, since the rows or the store may have changed after their page was read; then it
is reported (`on_finding`) and, with `repair`, fixed in batches: strays deleted, rows with missing
objects marked `failed` with the keys they miss. Counts are exact; the report keeps a sample.

Every CHECKPOINT_OBJECTS objects, once the findings up to there are settled, the position and the
counts are saved in the database (`verify_checkpoints`, one row per store): a pass that was stopped
continues from there with `resume`. The database rather than a file: it is where any process that
can verify can also read it, whichever machine or container ran the pass before, without a path to
agree on, and the row is keyed by the store, so it never resumes a pass over another store.

Objects under INCOMING_PREFIX are the bytes of uploads in progress, not media: the merge passes them
by. Given the staging, the upload rows are compared with the staged uploads instead: rows that expired
longer than the grace period ago and that sweeping has not removed, and staged uploads older than it
that no row names are reported, and swept with `repair`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from mediahub.db.repositories import MediaRepository
from mediahub.db.repositories.object_keys import KnownKey, ObjectKeyRepository
from mediahub.db.repositories.uploads import UploadRepository
from mediahub.db.session import Database
from mediahub.errors import MediaHubError
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.keys import INCOMING_PREFIX
from mediahub.media.upload_sweep import stray_keys, sweep_uploads
from mediahub.storage.base import ObjectInfo, Storage
from mediahub.storage.staging import Staging

SAMPLE = 100  # findings of each kind kept in the report (all of them go to `on_finding`)
BATCH = 500  # candidates checked again, and repaired, together
PAGE = 1000  # known keys read per query
CHECKPOINT_OBJECTS = 10_000
PROGRESS_STEP = 1000

Progress = Callable[[int], None]
Listed = TypeVar("Listed", ObjectInfo, KnownKey)


@dataclass(frozen=True)
class Finding:
    kind: str  # "stray" | "missing" | "expired_upload" | "stray_upload"
    key: str
    media_ids: tuple[int, ...] = ()  # missing: the items that name the key


@dataclass
class VerifyReport:
    objects: int = 0  # listed in the store, over the whole pass
    keys_in_db: int = 0  # distinct keys the rows name
    stray_count: int = 0
    missing_count: int = 0  # keys
    removed: int = 0  # stray objects deleted (repair)
    marked: int = 0  # rows marked failed (repair)
    stray: list[str] = field(default_factory=list)  # the first SAMPLE stray keys
    missing: dict[int, list[str]] = field(default_factory=dict)  # the first SAMPLE items -> keys they miss
    resumed_after: str | None = None
    objects_this_run: int = 0
    seconds: float = 0.0  # this run's
    # Uploads left over (checked with a staging): rows expired before the grace period that sweeping has
    # not removed, and staged uploads older than it that no row names. Their staged keys, the first SAMPLE.
    expired_upload_count: int = 0
    stray_upload_count: int = 0
    uploads_removed: int = 0  # expired rows and stray staged uploads removed (repair)
    expired_uploads: list[str] = field(default_factory=list)
    stray_uploads: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.stray_count or self.missing_count or self.expired_upload_count or self.stray_upload_count)

    @property
    def rate(self) -> float:
        """Objects per second in this run."""
        return self.objects_this_run / self.seconds if self.seconds else 0.0

    def counts(self) -> dict[str, int]:
        return {"objects": self.objects, "keys_in_db": self.keys_in_db, "stray": self.stray_count,
                "missing": self.missing_count, "removed": self.removed, "marked": self.marked}


class KeyOrderError(MediaHubError):
    """A listing came out of byte order: comparing it with the other would report false findings."""

    default_code = "key_order"


def verify(database: Database, storage: Storage, *, staging: Staging | None = None,
           grace: timedelta = timedelta(minutes=15), repair: bool = False, resume: bool = False,
           on_finding: Callable[[Finding], None] | None = None, progress: Progress | None = None,
           checkpoint_every: int = CHECKPOINT_OBJECTS) -> VerifyReport:
    """One pass over the store and the rows (from the store's checkpoint with `resume`). Objects under
    INCOMING_PREFIX are uploads in progress, not media: with `staging` they are checked against the
    upload rows instead (and swept with `repair`)."""
    return _Pass(database, storage, staging, grace, repair, on_finding, progress, checkpoint_every).run(resume)


class _Pass:
    def __init__(self, database: Database, storage: Storage, staging: Staging | None, grace: timedelta,
                 repair: bool, on_finding: Callable[[Finding], None] | None, progress: Progress | None,
                 checkpoint_every: int) -> None:
        self.database, self.storage, self.staging, self.repair = database, storage, staging, repair
        self.on_finding, self.progress, self.checkpoint_every = on_finding, progress, checkpoint_every
        self.grace = grace
        self.cutoff = datetime.now(timezone.utc) - grace
        self.report = VerifyReport()
        self.strays: list[str] = []  # candidates, checked again in batches
        self.missing: list[KnownKey] = []
        self.marked_last: set[int] = set()  # rows marked by the last batch: an item's keys may straddle two
        self.started = time.monotonic()
        self.started_at = datetime.now(timezone.utc)
        self.seconds_before = 0.0  # of the runs this one resumes

    def run(self, resume: bool) -> VerifyReport:
        after = self._start(resume)
        position, checkpointed, shown = after, 0, 0
        for key, info, known in _merged(self.storage.list(after=after), self._known_keys(after)):
            if key.startswith(INCOMING_PREFIX):
                continue
            if info is not None:
                self.report.objects += 1
                self.report.objects_this_run += 1
                if known is None and (info.last_modified is None or info.last_modified < self.cutoff):
                    self.strays.append(key)
            if known is not None and known.media_ids:
                self.report.keys_in_db += 1
                if info is None:
                    self.missing.append(known)
            position = key
            if len(self.strays) >= BATCH or len(self.missing) >= BATCH:
                self._settle()
            if self.report.objects_this_run - checkpointed >= self.checkpoint_every:
                self._checkpoint(position)
                checkpointed = self.report.objects_this_run
            if self.progress and self.report.objects_this_run - shown >= PROGRESS_STEP:
                self.progress(self.report.objects_this_run - shown)
                shown = self.report.objects_this_run
        self._settle()
        if self.progress and self.report.objects_this_run > shown:
            self.progress(self.report.objects_this_run - shown)
        if self.staging is not None:
            self._check_uploads(self.staging)
        with self.database.session() as session:
            ObjectKeyRepository(session).clear_checkpoint(self.storage.location)
        if self.repair:
            purge_pending_deletes(self.database, self.storage)
        self.report.seconds = time.monotonic() - self.started
        return self.report

    def _start(self, resume: bool) -> str | None:
        """Where this run begins: after the store's checkpoint with `resume`, else at the first key (a new pass)."""
        with self.database.session() as session:
            keys = ObjectKeyRepository(session)
            saved = keys.checkpoint(self.storage.location)
            if saved is None or not resume:
                keys.clear_checkpoint(self.storage.location)
                return None
            report = self.report
            report.objects, report.keys_in_db, report.stray_count = saved.objects, saved.keys_in_db, saved.stray
            report.missing_count, report.removed, report.marked = saved.missing, saved.removed, saved.marked
            report.resumed_after = saved.after_key
            self.seconds_before, self.started_at = saved.seconds, saved.started_at
            return saved.after_key

    def _known_keys(self, after: str | None) -> Iterator[KnownKey]:
        """Every key the database knows after `after`, in key order; one short transaction per page."""
        while True:
            with self.database.session() as session:
                page = ObjectKeyRepository(session).page(after, PAGE)
            if not page:
                return
            yield from page
            after = page[-1].key

    def _checkpoint(self, position: str | None) -> None:
        self._settle()
        if position is None:
            return
        seconds = self.seconds_before + time.monotonic() - self.started
        with self.database.session() as session:
            ObjectKeyRepository(session).save_checkpoint(self.storage.location, position, self.report.counts(),
                                                         seconds, self.started_at)

    def _settle(self) -> None:
        """Check the candidates again, report those that hold, and repair them with `repair`."""
        if self.strays:
            with self.database.session() as session:
                known = ObjectKeyRepository(session).known(self.strays)  # rows committed since their page
            stray = [key for key in self.strays if key not in known]
            self.strays = []
            for key in stray:
                self.report.stray_count += 1
                if len(self.report.stray) < SAMPLE:
                    self.report.stray.append(key)
                self._found(Finding("stray", key))
            if self.repair and stray:
                self.report.removed += len(stray) - len(self.storage.delete_many(stray))
        if self.missing:
            with self.database.session() as session:
                named = ObjectKeyRepository(session).named(known.key for known in self.missing)
            # Rows deleted since their page was read are gone; an object stored since the listing passed is not.
            missing = [KnownKey(known.key, named[known.key]) for known in self.missing
                       if known.key in named and not self.storage.exists(known.key)]
            self.missing = []
            for known in missing:
                self.report.missing_count += 1
                for media_id in known.media_ids:
                    if media_id in self.report.missing or len(self.report.missing) < SAMPLE:
                        self.report.missing.setdefault(media_id, []).append(known.key)
                self._found(Finding("missing", known.key, known.media_ids))
            if self.repair and missing:
                self._mark(missing)

    def _check_uploads(self, staging: Staging) -> None:
        with self.database.session() as session:
            expired = UploadRepository(session).expired_keys(self.cutoff)
        strays = stray_keys(self.database, staging, self.cutoff)
        report = self.report
        report.expired_upload_count, report.expired_uploads = len(expired), expired[:SAMPLE]
        report.stray_upload_count, report.stray_uploads = len(strays), strays[:SAMPLE]
        for kind, keys in (("expired_upload", expired), ("stray_upload", strays)):
            for key in keys:
                self._found(Finding(kind, key))
        if self.repair and (expired or strays):
            swept = sweep_uploads(self.database, staging, datetime.now(timezone.utc), self.grace)
            report.uploads_removed = swept.expired + swept.strays

    def _mark(self, missing: list[KnownKey]) -> None:
        """Mark the items that miss objects `failed`, with the keys they miss."""
        keys_of: dict[int, list[str]] = {}
        for known in missing:
            for media_id in known.media_ids:
                keys_of.setdefault(media_id, []).append(known.key)
        with self.database.session() as session:
            repo = MediaRepository(session)
            for media_id, keys in keys_of.items():
                if repo.mark_missing(media_id, keys):
                    self.report.marked += media_id not in self.marked_last
        self.marked_last = set(keys_of)

    def _found(self, finding: Finding) -> None:
        if self.on_finding:
            self.on_finding(finding)


def _merged(stored: Iterator[ObjectInfo], known: Iterator[KnownKey],
            ) -> Iterator[tuple[str, ObjectInfo | None, KnownKey | None]]:
    """Each key of either listing once, ascending, with what each listing has for it."""
    stored_head = _next_in_order(stored, None, "the store")
    known_head = _next_in_order(known, None, "the database")
    while stored_head is not None or known_head is not None:
        if known_head is None or (stored_head is not None and stored_head.key < known_head.key):
            yield stored_head.key, stored_head, None
            stored_head = _next_in_order(stored, stored_head.key, "the store")
        elif stored_head is None or known_head.key < stored_head.key:
            yield known_head.key, None, known_head
            known_head = _next_in_order(known, known_head.key, "the database")
        else:
            yield stored_head.key, stored_head, known_head
            stored_head = _next_in_order(stored, stored_head.key, "the store")
            known_head = _next_in_order(known, known_head.key, "the database")


def _next_in_order(listing: Iterator[Listed], previous: str | None, source: str) -> Listed | None:
    item = next(listing, None)
    if item is not None and previous is not None and not item.key > previous:
        raise KeyOrderError(f"{source} listed {item.key!r} after {previous!r}: keys must come in byte order "
                            f"(run `mediahub db upgrade`: the key columns compare bytes from revision 0011)")
    return item
