"""Running one job, and the default runner: a thread pool inside the process.

`execute` is the one place a job is run, whoever delivers its id (this pool,
a Dramatiq actor, the worker's poll loop): claim it from the table, run its
task, record done, or the error with a retry time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Protocol

from mediahub.db.models import Job, utcnow
from mediahub.db.repositories import job_queue as queue
from mediahub.jobs.context import TaskContext
from mediahub.jobs.tasks import TASKS
from mediahub.media.job_kinds import Dispatch, dispatch_committed

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Delivers committed job ids to whatever runs them."""

    runs_here: bool  # True when this process runs the jobs itself (so a caller may wait for them)

    def dispatch(self, job_ids: Iterable[int], delay: float = 0.0) -> None: ...

    def close(self) -> None: ...


def execute(context: TaskContext, job_id: int | None = None, dispatch: Dispatch | None = None) -> Job | None:
    """Claim and run that job (or the next due one); None when there was nothing to claim.

    The returned job says what happened: done, failed for good, or queued again
    with `run_after` set for the retry. The jobs the task queued (its follow-ups)
    go to `dispatch` once it is done; without one, they wait for a poll or the sweeper.
    """
    job = queue.claim(context.database, timedelta(seconds=context.settings.job_lease_seconds), job_id)
    if job is None:
        return None
    try:
        task = TASKS.get(job.kind)
        if task is None:
            raise LookupError(f"unknown job kind {job.kind!r}")
        follow_ups = task(context, job)
    except Exception as exc:  # any failure of the task is recorded on the job, then retried
        log.warning("job %s (%s, media #%s) attempt %s failed: %s", job.id, job.kind, job.media_id, job.attempts,
                    exc, exc_info=True)
        backoff = timedelta(seconds=context.settings.job_backoff_seconds)
        with context.database.session() as session:
            return queue.fail(session, job.id, f"{type(exc).__name__}: {exc}", backoff)
    with context.database.session() as session:
        queue.complete(session, job)
    job.status = "done"
    dispatch_committed(dispatch, follow_ups or [])
    return job


def seconds_until(job: Job) -> float:
    return max(0.0, (job.run_after - utcnow()).total_seconds())


class InProcessRunner:
    """Runs dispatched jobs on a thread pool; retries come back through `dispatch` after their delay."""

    runs_here = True

    def __init__(self, context: TaskContext, workers: int) -> None:
        self.context = context
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mediahub-job")
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    def dispatch(self, job_ids: Iterable[int], delay: float = 0.0) -> None:
        for job_id in job_ids:
            if delay > 0:
                self._later(delay, job_id)
            else:
                self._submit(job_id)

    def close(self) -> None:
        """Stop taking work and wait for running jobs; queued ones stay in the table for next time."""
        with self._lock:
            self._closed = True
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _later(self, delay: float, job_id: int) -> None:
        timer = threading.Timer(delay, self._fire, (job_id,))
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def _fire(self, job_id: int) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
        self._submit(job_id)

    def _submit(self, job_id: int) -> None:
        with self._lock:
            if not self._closed:
                self._pool.submit(self._run, job_id)

    def _run(self, job_id: int) -> None:
        try:
            job = execute(self.context, job_id, self.dispatch)
        except Exception:  # the database is down: the job stays queued for the sweeper
            log.exception("could not run job %s", job_id)
            return
        if job is not None and job.status == "queued":
            self.dispatch([job.id], delay=seconds_until(job))

