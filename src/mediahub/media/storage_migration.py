"""Moving every item's objects to another store while the service keeps serving (`mediahub storage migrate`).

The settings describe the target store; each item's source is the store its row records. An item
moves as one: each of its objects (the original and every variant, `MediaItem.keys()`) is streamed
from the source to the target, the target's copy is read back and its size and SHA-256 compared
with the row's (the stored original's digest, a variant's `content_hash`; where none was recorded,
with the digest of the source's bytes as they were read, which is then recorded), and only then is
the row switched to the target, in one transaction that finds it as it was (`switch_store`): an
item deleted meanwhile gets its copies removed, one that changed (a job's new variant) is moved
again. Until its row switches, an item's objects are read from its source (storage/fallback.py).

A journal row per object and item (`storage_migration_objects`) records how far each got, and the
target itself holds what was copied: after a crash at any point, a rerun continues the running
migration towards the same store, keeps every copy it can verify (the journal's digest, or the
row's) and copies the rest. Passes repeat until one finds nothing more to move (rows stored on the
source by processes still on the old settings are picked up by a later pass).

A source's copy is deleted only `delete_source_after` after its item switched, by a later run of the
same command, and only after a second check: the target still holds the object with the journal's
size and digest, and the row still points at the target. A missing source object is reported (the
item stays on its source), never skipped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from mediahub.db.models import MediaItem, MigratedObject
from mediahub.db.repositories import MediaRepository, VariantRepository
from mediahub.db.repositories.media import SWITCH_CHANGED, SWITCH_DONE, SWITCH_GONE
from mediahub.db.repositories.storage_migration import StorageMigrationRepository, Store
from mediahub.db.session import Database
from mediahub.errors import Conflict, MediaHubError, NotFound
from mediahub.media import audit, exposure
from mediahub.media.audit import OPERATOR
from mediahub.storage.base import KeyExists, Storage

log = logging.getLogger(__name__)

PAGE = 100  # items read, and moved, at a time
ITEM_ATTEMPTS = 3  # an item that keeps changing while it moves is left for the next pass
BUFFER = 1024 * 1024  # what a copy reads from its source ahead of the target

# Journal states (db/models.py MigratedObject)
COPIED, VERIFIED, SWITCHED, SOURCE_DELETED = "copied", "verified", "switched", "source_deleted"
MISSING, FAILED, DROPPED = "missing", "failed", "dropped"
RECORDED, FROM_SOURCE = "recorded", "source"

LOCK = "storage-migrate"  # held by the running migration (Database.exclusive)
REFUSED = "refused"  # an object of the item cannot move now: it stays on its source
DELETED_MEANWHILE = "item deleted meanwhile"
CHANGED_MEANWHILE = "item kept changing"


def store_fields(store: Store) -> dict[str, str | None]:
    """A store as the audit trail records where an item's objects are."""
    kind, bucket = store
    return {"storage_type": kind, "bucket_name": bucket}


def store_name(store: Store) -> str:
    kind, bucket = store
    return kind if bucket is None else f"{kind}:{bucket}"


@dataclass(frozen=True)
class StoredObject:
    """One object of an item as its row describes it: what its copy must match."""

    key: str
    size: int
    sha256: str | None  # recorded at write time; None: not recorded
    content_type: str


def objects_of(item: MediaItem) -> list[StoredObject]:
    """The item's objects, once each: its original, then each variant's (rows sharing one carry its values)."""
    found = {item.original_key: StoredObject(item.original_key, item.byte_size, item.stored_sha256,
                                             item.content_type)}
    for variant in item.variants:
        known = found.get(variant.storage_key)
        if known is None:
            found[variant.storage_key] = StoredObject(variant.storage_key, variant.byte_size, variant.content_hash,
                                                      variant.content_type)
        elif known.sha256 is None and variant.content_hash:
            found[variant.storage_key] = replace(known, sha256=variant.content_hash)
    return list(found.values())


@dataclass
class StoreAmounts:
    items: int = 0
    objects: int = 0
    bytes: int = 0


@dataclass
class Plan:
    """What is left to move: per source store, its items, objects and bytes (as the rows record them)."""

    target: Store
    stores: dict[Store, StoreAmounts] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(amounts.bytes for amounts in self.stores.values())

    def as_dict(self) -> dict:
        return {"target": store_name(self.target),
                "sources": {store_name(store): vars(amounts) for store, amounts in self.stores.items()}}


@dataclass(frozen=True)
class ObjectProblem:
    media_id: int
    key: str
    store: str
    reason: str


@dataclass
class MigrationReport:
    """The reconciliation of one run of the command."""

    run_id: int
    target: Store
    passes: int = 0
    items_switched: int = 0
    objects: int = 0  # verified on the target in this run, each once
    bytes: int = 0
    copied: int = 0  # of those, written by this run
    already_there: int = 0  # of those, found on the target with the right digest (copied by an earlier run)
    digests_recorded: int = 0  # of those, without a digest of their own: verified against the source's bytes
    skipped: dict[str, int] = field(default_factory=dict)  # why -> items
    # By (item, key), as they stand at the end: an object a later pass moved is no longer one of them.
    missing_objects: dict[tuple[int, str], ObjectProblem] = field(default_factory=dict)  # not on the source
    failed_objects: dict[tuple[int, str], ObjectProblem] = field(default_factory=dict)  # copies refused or wrong,
    # sources not deleted
    recovered: int = 0  # objects that failed or were missing in one pass and moved in a later one
    sources_deleted: int = 0
    sources_waiting: int = 0  # switched objects whose source copy waits for its grace period
    finished: bool = False  # every item moved and every source copy deleted: the migration is over
    _counted: set[tuple[int, str]] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def missing(self) -> list[ObjectProblem]:
        return list(self.missing_objects.values())

    @property
    def failed(self) -> list[ObjectProblem]:
        return list(self.failed_objects.values())

    @property
    def ok(self) -> bool:
        return not self.missing_objects and not self.failed_objects

    def verified(self, media_id: int, obj: StoredObject, *, copied: bool, digest_from: str) -> None:
        with self._lock:
            if (self.missing_objects.pop((media_id, obj.key), None) or
                    self.failed_objects.pop((media_id, obj.key), None)):
                self.recovered += 1
            if (media_id, obj.key) in self._counted:
                return
            self._counted.add((media_id, obj.key))
            self.objects += 1
            self.bytes += obj.size
            self.copied += copied
            self.already_there += not copied
            self.digests_recorded += digest_from == FROM_SOURCE

    def problem(self, kind: str, problem: ObjectProblem) -> None:
        with self._lock:
            (self.missing_objects if kind == MISSING else self.failed_objects)[problem.media_id, problem.key] = problem

    def skip(self, why: str) -> None:
        with self._lock:
            self.skipped[why] = self.skipped.get(why, 0) + 1

    def switched(self) -> None:
        with self._lock:
            self.items_switched += 1

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id, "target": store_name(self.target), "passes": self.passes,
            "items_switched": self.items_switched, "objects": self.objects, "bytes": self.bytes,
            "verified": self.objects, "copied": self.copied, "already_there": self.already_there,
            "digests_recorded": self.digests_recorded, "skipped": dict(self.skipped),
            "missing": [vars(p) for p in self.missing], "failed": [vars(p) for p in self.failed],
            "recovered": self.recovered, "sources_deleted": self.sources_deleted,
            "sources_waiting": self.sources_waiting, "finished": self.finished,
        }


class Throttle:
    """Bytes per second shared by every copy of a run (None: unlimited)."""

    def __init__(self, bytes_per_second: int | None) -> None:
        self.rate = bytes_per_second
        self._lock = threading.Lock()
        self._free_at = time.monotonic()

    def take(self, size: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            self._free_at = max(now, self._free_at) + size / self.rate
            wait = self._free_at - now
        if wait > 0:
            time.sleep(wait)


class _Hashing(io.RawIOBase):
    """The chunks of a source read as a stream, hashed, counted and throttled as they pass."""

    def __init__(self, chunks: Iterator[bytes], throttle: Throttle, on_bytes: Callable[[int], None]) -> None:
        self._chunks = chunks
        self._throttle = throttle
        self._on_bytes = on_bytes
        self._pending = b""
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._throttle.take(len(chunk))
            self.digest.update(chunk)
            self.size += len(chunk)
            self._on_bytes(len(chunk))
            self._pending = chunk
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


class _Refused(Exception):
    """An object that cannot move now: reported as `kind` (missing, failed), its item left on the source."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class StorageMigrator:
    """One run of `mediahub storage migrate` towards `target`, the store the settings describe."""

    def __init__(self, database: Database, target: Storage, open_store: Callable[[str, str | None], Storage], *,
                 concurrency: int = 4, max_bytes_per_second: int | None = None,
                 delete_source_after: timedelta = timedelta(days=1),
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.database = database
        self.target = target
        self.target_store: Store = (target.kind, target.bucket)
        self._open_store = open_store
        self._stores: dict[Store, Storage] = {}
        self._stores_lock = threading.Lock()
        self.concurrency = concurrency
        self.throttle = Throttle(max_bytes_per_second)
        self.delete_source_after = delete_source_after
        self.on_bytes = on_bytes or (lambda _: None)

    def store(self, store: Store) -> Storage:
        with self._stores_lock:
            if store not in self._stores:
                self._stores[store] = self._open_store(*store)
            return self._stores[store]

    # The plan

    def plan(self) -> Plan:
        """What is left to move, from the rows alone; nothing is read from a store or changed."""
        plan = Plan(self.target_store)
        after = 0
        while True:
            with self.database.session() as session:
                page = StorageMigrationRepository(session).items_off(self.target_store, after, PAGE)
            if not page:
                return plan
            for item in page:
                amounts = plan.stores.setdefault((item.storage_type, item.bucket_name), StoreAmounts())
                objects = objects_of(item)
                amounts.items += 1
                amounts.objects += len(objects)
                amounts.bytes += sum(obj.size for obj in objects)
            after = page[-1].id

    # The run

    def run(self, plan: Plan | None = None) -> MigrationReport:
        """Conflict (`migration_running`) while another run holds the migration lock, on any host: two would
        share the journal, each racing the other's rows."""
        with self.database.exclusive(LOCK) as held:
            if not held:
                raise Conflict("another `mediahub storage migrate` is running: one at a time",
                               code="migration_running")
            return self._run(plan or self.plan())

    def _run(self, plan: Plan) -> MigrationReport:
        with self.database.session() as session:
            run_id = StorageMigrationRepository(session).open_run(self.target_store, plan.stores).id
        report = MigrationReport(run_id, self.target_store)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="migrate") as pool:
            while True:
                report.passes += 1
                seen, moved = self._pass(pool, run_id, report)
                if not seen or not moved:
                    break
        self._settle_copies(run_id)
        self._delete_sources(run_id, report)
        with self.database.session() as session:
            repo = StorageMigrationRepository(session)
            report.sources_waiting = repo.count_in_states(run_id, [SWITCHED])
            if not report.sources_waiting and not repo.any_off(self.target_store) and \
                    not repo.count_in_states(run_id, [COPIED, VERIFIED]):
                repo.finish(run_id)
                report.finished = True
        return report

    def _pass(self, pool: ThreadPoolExecutor, run_id: int, report: MigrationReport) -> tuple[int, int]:
        """Every item off the target, in id order: (items seen, items switched)."""
        seen = moved = 0
        after = 0
        while True:
            with self.database.session() as session:
                ids = StorageMigrationRepository(session).ids_off(self.target_store, after, PAGE)
            if not ids:
                return seen, moved
            after = ids[-1]
            for switched in pool.map(lambda media_id: self._move_item(run_id, media_id, report), ids):
                seen += 1
                moved += switched

    def _move_item(self, run_id: int, media_id: int, report: MigrationReport) -> bool:
        """Copy and verify the item's objects, then switch its row: whether it switched."""
        for _ in range(ITEM_ATTEMPTS):
            with self.database.session() as session:
                item = MediaRepository(session).get(media_id)
                if item is None:
                    return False
                source: Store = (item.storage_type, item.bucket_name)
                if source == self.target_store:
                    return False
                objects = objects_of(item)
                journal = StorageMigrationRepository(session).journal(run_id, media_id)
            digests: dict[str, str] = {}
            refused: dict[str, _Refused] = {}
            for obj in objects:
                try:
                    digests[obj.key] = self._move_object(run_id, media_id, source, obj, journal.get(obj.key), report)
                except _Refused as exc:
                    refused[obj.key] = exc
            outcome = self._refuse(run_id, media_id, source, objects, refused, report) if refused else \
                self._switch(run_id, media_id, source, digests)
            if outcome == SWITCH_DONE:
                report.switched()
                return True
            if outcome == SWITCH_GONE:
                self._drop_copies(run_id, media_id)
                report.skip(DELETED_MEANWHILE)
                return False
            if outcome == REFUSED:
                return False
        report.skip(CHANGED_MEANWHILE)
        return False

    def _refuse(self, run_id: int, media_id: int, source: Store, objects: list[StoredObject],
                refused: dict[str, _Refused], report: MigrationReport) -> str:
        """Report the objects that could not move, if the item is still as they were read from (a source
        object deleted with its item, or replaced by a job, is no loss): REFUSED, or what became of it."""
        with self.database.session() as session:
            item = MediaRepository(session).get(media_id)
            if item is None:
                return SWITCH_GONE
            if (item.storage_type, item.bucket_name) != source or set(item.keys()) != {obj.key for obj in objects}:
                return SWITCH_CHANGED
        for key, exc in refused.items():
            self._journal(run_id, media_id, key, source, state=exc.kind, reason=exc.reason[:500])
            report.problem(exc.kind, ObjectProblem(media_id, key, store_name(source), exc.reason))
        return REFUSED

    def _move_object(self, run_id: int, media_id: int, source: Store, obj: StoredObject,
                     entry: MigratedObject | None, report: MigrationReport) -> str:
        """The object's verified copy on the target (kept, or made): its SHA-256. `_Refused` when it cannot be."""
        if (entry is not None and entry.state == VERIFIED and entry.sha256
                and self._target_size(obj.key) == obj.size):
            report.verified(media_id, obj, copied=False, digest_from=entry.digest_from or RECORDED)
            self.on_bytes(obj.size)
            return entry.sha256
        size = self._target_size(obj.key)
        if size is not None:
            kept = self._keep_present(run_id, media_id, source, obj, size, report)
            if kept is not None:
                return kept
        return self._copy(run_id, media_id, source, obj, report)

    def _keep_present(self, run_id: int, media_id: int, source: Store, obj: StoredObject, size: int,
                      report: MigrationReport) -> str | None:
        """An object the target holds already (a copy of a run that stopped, or written there by a process
        on the new settings): its digest when it is the right one; else it is removed for a new copy."""
        digest = self._digest(self.target, obj.key)
        expected = obj.sha256 or self._source_digest(source, obj)
        if size == obj.size and digest == expected:
            digest_from = RECORDED if obj.sha256 else FROM_SOURCE
            self._journal(run_id, media_id, obj.key, source, state=VERIFIED, byte_size=size, sha256=digest,
                          digest_from=digest_from, reason=None)
            report.verified(media_id, obj, copied=False, digest_from=digest_from)
            self.on_bytes(size)
            return digest
        log.warning("the target's %s differs from its source (%d bytes, %s): copying it again", obj.key, size, digest)
        self._delete_copy(obj.key)
        return None

    def _copy(self, run_id: int, media_id: int, source: Store, obj: StoredObject, report: MigrationReport) -> str:
        store = self.store(source)
        try:
            stream = _Hashing(store.open_range(obj.key), self.throttle, self.on_bytes)
            self.target.put(obj.key, io.BufferedReader(stream, BUFFER), obj.content_type)
        except NotFound as exc:
            raise _Refused(MISSING, f"no object {obj.key} in {store_name(source)}") from exc
        except KeyExists as exc:  # stored meanwhile by a process on the new settings: checked by the next pass
            raise _Refused(FAILED, f"{obj.key} appeared on the target during its copy") from exc
        except MediaHubError as exc:
            raise _Refused(FAILED, f"copy refused: {exc.message}") from exc
        source_digest = stream.digest.hexdigest()
        self._journal(run_id, media_id, obj.key, source, state=COPIED, copied=True, byte_size=stream.size,
                      sha256=source_digest, reason=None)
        if stream.size != obj.size or (obj.sha256 is not None and source_digest != obj.sha256):
            self._delete_copy(obj.key)
            raise _Refused(FAILED, f"the source's bytes ({stream.size}, {source_digest}) are not the row's "
                                   f"({obj.size}, {obj.sha256 or 'no digest'})")
        size = self._target_size(obj.key)
        digest = self._digest(self.target, obj.key)
        if size != obj.size or digest != source_digest:
            self._delete_copy(obj.key)
            raise _Refused(FAILED, f"the target's copy ({size}, {digest}) differs from the source ({source_digest})")
        digest_from = RECORDED if obj.sha256 else FROM_SOURCE
        self._journal(run_id, media_id, obj.key, source, state=VERIFIED, digest_from=digest_from)
        report.verified(media_id, obj, copied=True, digest_from=digest_from)
        return digest

    def _source_digest(self, source: Store, obj: StoredObject) -> str:
        try:
            return self._digest(self.store(source), obj.key)
        except NotFound as exc:
            raise _Refused(MISSING, f"no object {obj.key} in {store_name(source)}, and no digest to verify the "
                                    f"target's copy with") from exc

    def _digest(self, store: Storage, key: str) -> str:
        """SHA-256 of the object's bytes as `store` returns them, streamed."""
        digest = hashlib.sha256()
        try:
            for chunk in store.open_range(key):
                self.throttle.take(len(chunk))
                digest.update(chunk)
        except NotFound:
            raise
        except MediaHubError as exc:
            raise _Refused(FAILED, f"cannot read {key}: {exc.message}") from exc
        return digest.hexdigest()

    def _target_size(self, key: str) -> int | None:
        try:
            return self.target.stat(key).size
        except NotFound:
            return None
        except MediaHubError as exc:
            raise _Refused(FAILED, f"cannot reach the target for {key}: {exc.message}") from exc

    def _delete_copy(self, key: str) -> None:
        try:
            if self.target.delete_many([key]):
                log.warning("could not delete the target's copy of %s", key)
        except MediaHubError:
            log.warning("could not delete the target's copy of %s", key, exc_info=True)

    def _journal(self, run_id: int, media_id: int, key: str, source: Store, **values: object) -> None:
        with self.database.session() as session:
            StorageMigrationRepository(session).record(run_id, media_id, key, source, **values)

    def _switch(self, run_id: int, media_id: int, source: Store, digests: dict[str, str]) -> str:
        """Point the item at the target in one transaction with its journal; its objects readable there as its
        status says. Copies of objects it no longer names are removed."""
        with exposure.following_status(self.target) as sync, self.database.session() as session:
            switched = MediaRepository(session).switch_store(media_id, source, self.target_store, digests, digests)
            if switched.outcome == SWITCH_DONE:
                assert switched.item is not None
                audit.record(session, OPERATOR, "storage.move", switched.item, store_fields(source),
                             after=store_fields(self.target_store), reason=f"storage migration run {run_id}")
                sync(switched.item)
                StorageMigrationRepository(session).set_state(run_id, media_id, switched.keys, SWITCHED,
                                                              switched_at=datetime.now(timezone.utc))
        if switched.outcome == SWITCH_DONE:
            self._remove_unnamed(run_id, media_id, [key for key in digests if key not in switched.keys])
        return switched.outcome

    def _drop_copies(self, run_id: int, media_id: int) -> None:
        """The item is gone: its journal ends, and the copies this run made of its objects (those no row
        names) are removed. Its source objects were queued for deletion with its row."""
        with self.database.session() as session:
            journal = StorageMigrationRepository(session).journal(run_id, media_id).values()
            keys = [row.storage_key for row in journal]
            copied = [row.storage_key for row in journal if row.copied]
        self._remove_unnamed(run_id, media_id, keys, copied)

    def _remove_unnamed(self, run_id: int, media_id: int, keys: list[str], copied: list[str] | None = None) -> None:
        """End the journal of `keys` (objects the item no longer names); delete the copies of those of them
        the run made (`copied`, default all) that no row names."""
        if not keys:
            return
        with self.database.session() as session:
            StorageMigrationRepository(session).set_state(run_id, media_id, keys, DROPPED,
                                                          reason="the item no longer names it")
            candidates = keys if copied is None else copied
            unnamed = sorted(set(candidates) - VariantRepository(session).used_keys(candidates))
        for key in unnamed:
            self._delete_copy(key)

    def _settle_copies(self, run_id: int) -> None:
        """End the journal of the copies no pass will switch: their item was switched by another run, or stopped
        naming them between their copy and its switch (a job replaced them; a crash cut the cleanup short).
        One its item on the target names is its object: switched, so its source is deleted in turn; one no row
        names is deleted if this run made it. Copies of items still off the target wait for a later run."""
        for state in (COPIED, VERIFIED):
            after = 0
            while True:
                with self.database.session() as session:
                    page = StorageMigrationRepository(session).in_state(run_id, state, after, PAGE)
                if not page:
                    break
                after = page[-1].id
                for entry in page:
                    self._settle_copy(run_id, entry)

    def _settle_copy(self, run_id: int, entry: MigratedObject) -> None:
        with self.database.session() as session:
            item = MediaRepository(session).get(entry.media_id)
        if item is not None and (item.storage_type, item.bucket_name) != self.target_store:
            return
        if item is not None and entry.storage_key in item.keys():
            self._journal(run_id, entry.media_id, entry.storage_key, (entry.source_type, entry.source_bucket),
                          state=SWITCHED, switched_at=datetime.now(timezone.utc))
            return
        self._remove_unnamed(run_id, entry.media_id, [entry.storage_key], [entry.storage_key] if entry.copied else [])

    # Deleting the sources

    def _delete_sources(self, run_id: int, report: MigrationReport) -> None:
        """Delete the source copy of each object switched before the grace period, after checking again that
        the target holds it as verified and the row still points there."""
        cutoff = datetime.now(timezone.utc) - self.delete_source_after
        after = 0
        while True:
            with self.database.session() as session:
                due = StorageMigrationRepository(session).in_state(run_id, SWITCHED, after, PAGE, cutoff)
            if not due:
                return
            after = due[-1].id
            for entry in due:
                self._delete_source(run_id, entry, report)

    def _delete_source(self, run_id: int, entry: MigratedObject, report: MigrationReport) -> None:
        source: Store = (entry.source_type, entry.source_bucket)
        with self.database.session() as session:
            item = MediaRepository(session).get(entry.media_id)
            named = VariantRepository(session).used_keys([entry.storage_key])
        problem = ObjectProblem(entry.media_id, entry.storage_key, store_name(source), "")

        def refuse(reason: str) -> None:
            report.problem(FAILED, replace(problem, reason=reason))
        if item is None or entry.storage_key not in item.keys():
            if named:  # another item names the key: not this journal row's to judge
                self._journal(run_id, entry.media_id, entry.storage_key, source, state=DROPPED,
                              reason="another row names it")
                return
            # Deleted, or replaced, after the switch (by a process on the old settings, which left the target's copy).
            stores = [self.target, self.store(source)]
        elif (item.storage_type, item.bucket_name) != self.target_store:
            self._journal(run_id, entry.media_id, entry.storage_key, source, state=DROPPED,
                          reason="the item moved to another store")
            return
        else:
            try:
                size, digest = self._target_size(entry.storage_key), self._digest(self.target, entry.storage_key)
            except NotFound:
                size, digest = None, None
            except _Refused as exc:
                refuse(exc.reason)
                return
            if size != entry.byte_size or digest != entry.sha256:
                reason = f"the target's copy is not the verified one ({size}, {digest}): its source is kept"
                self._journal(run_id, entry.media_id, entry.storage_key, source, reason=reason)
                refuse(reason)
                return
            stores = [self.store(source)]
        try:
            failed = [key for store in stores for key in store.delete_many([entry.storage_key])]
        except MediaHubError as exc:
            failed, why = [entry.storage_key], exc.message
        else:
            why = "the store refused the delete"
        if failed:
            refuse(f"source not deleted: {why}")
            return
        self._journal(run_id, entry.media_id, entry.storage_key, source, state=SOURCE_DELETED)
        report.sources_deleted += 1


def sources_to_read(database: Database, target: Storage) -> list[Store]:
    """The stores besides `target` that reads may need during a migration: those rows record, and the sources
    of migrations still running (their copies may still be read by processes on the old settings)."""
    with database.session() as session:
        repo = StorageMigrationRepository(session)
        stores = [*repo.stores_in_use(), *repo.sources_of_running()]
    return [store for store in dict.fromkeys(stores) if store != (target.kind, target.bucket)]
