"""The service graph, built once at start-up from the settings and shared by CLI and API.

The one place where the layers are put together: the leaves (settings, database,
storage) first, then the job dispatcher over them, then the use cases that hand
their committed jobs to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from mediahub.config import Settings
from mediahub.db.repositories.job_queue import wait_for_media
from mediahub.db.session import Database
from mediahub.dedup.index import DedupIndex
from mediahub.jobs.context import TaskContext
from mediahub.jobs.runner import Dispatcher, InProcessRunner
from mediahub.jobs.sweeper import Sweeper, audit_retention
from mediahub.media.activity import UploadActivity
from mediahub.media.cdn import CdnPurge
from mediahub.media.checks import ModerationChecks
from mediahub.media.delivery import Delivery
from mediahub.media.ingest import IngestService
from mediahub.errors import DatabaseUnavailable
from mediahub.media.resumable import TusService
from mediahub.media.storage_migration import sources_to_read
from mediahub.media.uploads import UploadService
from mediahub.pipeline.tagger import OFF, OK, build_tagger
from mediahub.pipeline.tagging import Tagger
from mediahub.pipeline.watermark import check_fields
from mediahub.storage.base import Storage
from mediahub.storage.factory import build_staging, build_store, build_storage
from mediahub.storage.fallback import FallbackStorage
from mediahub.storage.staging import Staging

log = logging.getLogger(__name__)

JOB_WAIT_SECONDS = 600.0


@dataclass
class Runtime:
    settings: Settings
    database: Database
    # Reads and deletes: `store`, and during a storage migration the stores rows still record (open_stores).
    storage: Storage
    store: Storage  # the store the settings describe: where new objects are written
    staging: Staging  # bytes of uploads in progress (resumable, direct): the store's, or the temp dir's
    tasks: TaskContext
    jobs: Dispatcher
    # Near-duplicate lookups (uploader and global scopes): the host's shared index file, opened on first use.
    dedup_index: DedupIndex
    ingest: IngestService
    delivery: Delivery  # holds this process's render gate: one per process
    cdn: CdnPurge  # the CDN purges of the services' changes, dispatched to `jobs` after each commit
    uploads: UploadService  # uploads whose bytes arrive apart from their ingest (tus, direct to S3)
    tus: TusService
    checks: ModerationChecks  # MODERATION_CHECKS, which the `moderation_check` jobs of this process run
    tagging: str = OFF  # the tagger's state (pipeline/tagger.py build_tagger: ok, off, model_missing...)
    sweeper: Sweeper | None = None

    @classmethod
    def build(cls, settings: Settings, tagger: Tagger | None = None) -> Runtime:
        """The process's services; its tagger is `tagger` (a test's), else the classifier the settings install."""
        database = Database(settings.database_url)
        store = build_storage(settings)
        tagging = None  # a test's tagger is `ok`: assemble says so
        if tagger is None:
            tagger, tagging = build_tagger(settings)
        return cls.assemble(settings, database, store, source_stores(settings, database, store), tagger=tagger,
                            tagging=tagging)

    @classmethod
    def assemble(cls, settings: Settings, database: Database, store: Storage,
                 sources: Sequence[Storage] = (), checks: ModerationChecks | None = None,
                 tagger: Tagger | None = None, tagging: str | None = None) -> Runtime:
        """The services over a given database and store (and the `sources` it reads from too, during a storage
        migration), with the job dispatcher the settings choose; `checks`: those MODERATION_CHECKS names
        unless given. `tagger`: the classifier of tagging jobs; with one, listing photos get a tagging job after
        upload (`tagging`: its state, when it is the one the settings install)."""
        check_fields(settings.watermarks)
        storage = FallbackStorage(store, sources) if sources else store
        checks = checks if checks is not None else ModerationChecks.from_settings(settings)
        tasks = TaskContext(settings, database, storage, checks, tagger)
        activity = UploadActivity(settings.job_lull_seconds)
        jobs = build_dispatcher(tasks, activity)
        dedup_index = DedupIndex(database, settings.dedup_index_directory, settings.dedup_index_rebuild_seconds)
        ingest = IngestService(settings, database, storage, dispatch=jobs.dispatch, dedup_index=dedup_index,
                               tags_images=tagger is not None, activity=activity)
        delivery = Delivery(settings, database, storage)
        cdn = CdnPurge(settings, storage, dispatch=jobs.dispatch)
        uploads = UploadService(settings, database, ingest)
        staging = build_staging(settings, store)
        tus = TusService(settings, database, uploads, staging)
        return cls(settings, database, storage, store, staging, tasks, jobs, dedup_index, ingest, delivery, cdn,
                   uploads, tus, checks, tagging or (OK if tagger is not None else OFF))

    def start_sweeper(self) -> None:
        """Recover stranded jobs in this process: for the in-process runner (Dramatiq workers sweep themselves)."""
        if self.jobs.runs_here and self.sweeper is None:
            self.sweeper = Sweeper(self.database, self.jobs.dispatch, self.settings.sweep_interval_seconds,
                                   self.storage, self.staging,
                                   audit_retention=audit_retention(self.settings.audit_retention_days)).start()

    def dependency_checks(self, runs_jobs: bool | None = None) -> dict[str, Callable[[], None]]:
        """What any process of the service needs to do its work, by name: each raises Unavailable when its
        service does not answer. The queue broker only when QUEUE_URL is set (else jobs run in process).

        A process that runs jobs (`runs_jobs`; default: whether this one's dispatcher runs them here) also
        needs the moderation checks configured to judge: a missing or altered model is a broken deploy, which
        must stop a rollout before it replaces working workers. Items are safe either way (they wait, flagged)."""
        checks = {"database": self.database.ping, "storage": self.storage.check}
        if self.settings.queue_url:
            checks["queue"] = self.jobs.check
        if self.checks.enabled and (self.jobs.runs_here if runs_jobs is None else runs_jobs):
            checks["moderation_checks"] = self.checks.check
        return checks

    def features(self) -> dict[str, str]:
        """The optional features and their state (`off`, `ok`, or why they cannot work), for /readyz and
        `mediahub ready`: a feature that is off never makes a process unready."""
        return {"moderation_checks": self.checks.status(), "tagging": self.tagging}

    def wait_for_jobs(self, media_ids: Iterable[int], timeout: float = JOB_WAIT_SECONDS) -> bool:
        """Wait for these items' jobs when this process runs them; False when it does not, or on timeout."""
        if not self.jobs.runs_here:
            return False
        return wait_for_media(self.database, media_ids, timeout)

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()
        self.jobs.close()
        self.dedup_index.close()
        self.ingest.pixels.close()
        self.database.dispose()


def open_stores(settings: Settings, database: Database) -> tuple[Storage, Storage]:
    """The store the settings describe, and the storage to read through: that store, or during a storage
    migration that store over the others rows still record (`source_stores`)."""
    store = build_storage(settings)
    sources = source_stores(settings, database, store)
    return store, FallbackStorage(store, sources) if sources else store


def source_stores(settings: Settings, database: Database, store: Storage) -> list[Storage]:
    """The stores besides `store` that objects may still be read from: those some row records, and the sources
    of a storage migration still running (`mediahub storage migrate`), learned once, as the process starts.

    One seek of ix_media_store per store and a read of the running migrations: nothing per read. A process
    started before a migration knows only its own store; the README's "Moving storage" has every process
    restarted with the target's settings before the migration starts. Without a database at hand (it is
    down, or not migrated yet) the process reads from `store` alone, and says so.
    """
    try:
        stores = sources_to_read(database, store)
    except (DatabaseUnavailable, DBAPIError) as exc:
        log.warning("could not read which stores the media rows record (%s): reading from %s only",
                    str(exc).splitlines()[0], store.location)
        return []
    return [build_store(settings, kind, bucket) for kind, bucket in stores]


def build_dispatcher(tasks: TaskContext, uploads: UploadActivity | None = None) -> Dispatcher:
    """Dramatiq when QUEUE_URL names a broker, else this process's thread pool (whose jobs wait for lulls in
    `uploads`, the process's own)."""
    if tasks.settings.queue_url:
        from mediahub.jobs.dramatiq_broker import DramatiqDispatcher  # imports the broker clients

        return DramatiqDispatcher(tasks)
    return InProcessRunner(tasks, tasks.settings.workers, uploads if tasks.settings.job_lull_wait_seconds else None)
