"""The safety net: jobs whose worker died or whose message was lost are run all the same.

Every interval it queues again the jobs whose lease ran out, and (when a
dispatcher is given) re-sends them and the queued jobs that have been due for
longer than REDISPATCH_INTERVALS intervals (a backlog waiting in the broker is
not re-sent every round). A duplicate message is harmless: only one claim wins.
With a store it also retries the queued object deletes, and with a staging it removes
expired uploads and stray staged bytes (media/upload_sweep.py). With a retention it deletes
the audit events older than that, a bounded number per round (media/audit.py `expire`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta

from mediahub.db.models import utcnow
from mediahub.db.repositories import job_queue as queue
from mediahub.db.session import Database
from mediahub.media import audit
from mediahub.media.cleanup import purge_pending_deletes
from mediahub.media.upload_sweep import STRAY_GRACE, sweep_uploads
from mediahub.storage.base import Storage
from mediahub.storage.staging import Staging

log = logging.getLogger(__name__)

Dispatch = Callable[[Iterable[int]], None]
REDISPATCH_INTERVALS = 10


def audit_retention(days: int) -> timedelta | None:
    """AUDIT_RETENTION_DAYS as the sweeper takes it: None (0) keeps every event."""
    return timedelta(days=days) if days else None


def sweep(database: Database, dispatch: Dispatch | None, stale: timedelta) -> list[int]:
    """One pass; the ids it dispatched."""
    requeued = [job.id for job in queue.reclaim_expired(database) if job.status == "queued"]
    if dispatch is None:
        return []
    ids = sorted(set(requeued) | set(queue.due_ids(database, utcnow() - stale)))
    if ids:
        dispatch(ids)
    return ids


class Sweeper:
    """`sweep` on a daemon thread every `interval` seconds until stopped."""

    def __init__(self, database: Database, dispatch: Dispatch | None, interval: float,
                 storage: Storage | None = None, staging: Staging | None = None, *,
                 audit_retention: timedelta | None = None) -> None:
        self.database = database
        self.dispatch = dispatch
        self.storage = storage  # given: also retry the queued object deletes (pending_deletes) each round
        self.staging = staging  # given: also remove expired and stray uploads with their staged bytes
        self.audit_retention = audit_retention  # given: also delete older audit events each round
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mediahub-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _purge(self) -> None:
        try:
            removed = purge_pending_deletes(self.database, self.storage)
            if removed:
                log.info("sweeper removed %d queued objects", removed)
        except Exception:  # database or storage down: the deletes stay queued for the next round
            log.warning("purging pending deletes failed", exc_info=True)

    def _sweep_uploads(self, staging: Staging) -> None:
        try:
            swept = sweep_uploads(self.database, staging, utcnow(), STRAY_GRACE)
            if swept.expired or swept.strays:
                log.info("sweeper removed %d expired uploads and %d stray staged uploads", swept.expired,
                         swept.strays)
        except Exception:  # database or storage down: the uploads stay for the next round
            log.warning("sweeping uploads failed", exc_info=True)

    def _expire_audit(self, retention: timedelta) -> None:
        try:
            removed = audit.expire(self.database, utcnow() - retention)
            if removed:
                log.info("sweeper removed %d audit events older than %s", removed, retention)
        except Exception:  # database down: the events stay for the next round
            log.warning("expiring audit events failed", exc_info=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                swept = sweep(self.database, self.dispatch, timedelta(seconds=self.interval * REDISPATCH_INTERVALS))
                if swept:
                    log.info("sweeper re-dispatched jobs %s", swept)
            except Exception:  # database down for a moment: try again next round
                log.warning("sweep failed", exc_info=True)
            if self.storage is not None:
                self._purge()
            if self.staging is not None:
                self._sweep_uploads(self.staging)
            if self.audit_retention is not None:
                self._expire_audit(self.audit_retention)
            self._stop.wait(self.interval)
