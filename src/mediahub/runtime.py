"""The service graph, built once at start-up from the settings and shared by CLI and API.

The one place where the layers are put together: the leaves (settings, database,
storage) first, then the job dispatcher over them, then the use cases that hand
their committed jobs to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mediahub.config import Settings
from mediahub.db.repositories.job_queue import wait_for_media
from mediahub.db.session import Database
from mediahub.dedup.index import DedupIndex
from mediahub.jobs.context import TaskContext
from mediahub.jobs.runner import Dispatcher, InProcessRunner
from mediahub.jobs.sweeper import Sweeper, audit_retention
from mediahub.media.cdn import CdnPurge
from mediahub.media.delivery import Delivery
from mediahub.media.ingest import IngestService
from mediahub.media.resumable import TusService
from mediahub.media.uploads import UploadService
from mediahub.pipeline.watermark import check_fields
from mediahub.storage.base import Storage
from mediahub.storage.factory import build_staging, build_storage
from mediahub.storage.staging import Staging

JOB_WAIT_SECONDS = 600.0


@dataclass
class Runtime:
    settings: Settings
    database: Database
    storage: Storage
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
    sweeper: Sweeper | None = None

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        return cls.assemble(settings, Database(settings.database_url), build_storage(settings))

    @classmethod
    def assemble(cls, settings: Settings, database: Database, storage: Storage) -> Runtime:
        """The services over a given database and store, with the job dispatcher the settings choose."""
        check_fields(settings.watermarks)
        tasks = TaskContext(settings, database, storage)
        jobs = build_dispatcher(tasks)
        dedup_index = DedupIndex(database, settings.dedup_index_directory, settings.dedup_index_rebuild_seconds)
        ingest = IngestService(settings, database, storage, dispatch=jobs.dispatch, dedup_index=dedup_index)
        delivery = Delivery(settings, database, storage)
        cdn = CdnPurge(settings, storage, dispatch=jobs.dispatch)
        uploads = UploadService(settings, database, ingest)
        staging = build_staging(settings, storage)
        tus = TusService(settings, database, uploads, staging)
        return cls(settings, database, storage, staging, tasks, jobs, dedup_index, ingest, delivery, cdn, uploads,
                   tus)

    def start_sweeper(self) -> None:
        """Recover stranded jobs in this process: for the in-process runner (Dramatiq workers sweep themselves)."""
        if self.jobs.runs_here and self.sweeper is None:
            self.sweeper = Sweeper(self.database, self.jobs.dispatch, self.settings.sweep_interval_seconds,
                                   self.storage, self.staging,
                                   audit_retention=audit_retention(self.settings.audit_retention_days)).start()

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


def build_dispatcher(tasks: TaskContext) -> Dispatcher:
    """Dramatiq when QUEUE_URL names a broker, else this process's thread pool."""
    if tasks.settings.queue_url:
        from mediahub.jobs.dramatiq_broker import DramatiqDispatcher  # imports the broker clients

        return DramatiqDispatcher(tasks)
    return InProcessRunner(tasks, tasks.settings.workers)
