"""Running one job, and the default runner: a pool of threads inside the process.

`execute` is the one place a job is run, whoever delivers its id (this pool,
a Dramatiq actor, the worker's poll loop): claim it from the table, run its
task, record done, or the error with a retry time. A process that stops before
its claimed jobs finish hands their leases back (`Leases`), so another process
takes them at once instead of after the lease has run out.
"""

from __future__ import annotations

import logging
import os
import queue as queues
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Protocol

from mediahub.db.models import Job, utcnow
from mediahub.db.repositories import job_queue as queue
from mediahub.db.session import Database
from mediahub.jobs.context import TaskContext
from mediahub.jobs.tasks import TASKS
from mediahub.media.activity import UploadActivity
from mediahub.media.job_kinds import Dispatch, dispatch_committed
from mediahub.media.pixels import NICENESS as PIXEL_NICENESS

log = logging.getLogger(__name__)

# Added to the niceness of each thread of the in-process runner, past the pixel processes': on a busy
# server an upload's pixel work (in those processes, or in the request's thread) runs before the jobs
# queued behind earlier uploads (tagging, checks, deferred variants), which answer no request.
JOB_NICENESS = 2 * PIXEL_NICENESS


class Dispatcher(Protocol):
    """Delivers committed job ids to whatever runs them."""

    runs_here: bool  # True when this process runs the jobs itself (so a caller may wait for them)

    def dispatch(self, job_ids: Iterable[int], delay: float = 0.0) -> None: ...

    def check(self) -> None:
        """Readiness: raise Unavailable when the jobs cannot be delivered (the broker does not answer)."""

    def close(self) -> None: ...


class Leases:
    """The jobs this process has claimed and not finished (id -> the attempt its claim counted)."""

    def __init__(self) -> None:
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def holding(self, job: Job) -> Iterator[None]:
        with self._lock:
            self._held[job.id] = job.attempts
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(job.id, None)

    def hand_back(self, database: Database) -> list[int]:
        """Queue the held jobs again at once, lease cleared (the process is stopping); the ids queued again."""
        with self._lock:
            held = dict(self._held)
        returned = queue.hand_back(database, held)
        if returned:
            log.info("handed back the leases of jobs %s", [job.id for job in returned])
        return [job.id for job in returned if job.status == "queued"]


def execute(context: TaskContext, job_id: int | None = None, dispatch: Dispatch | None = None,
            leases: Leases | None = None) -> Job | None:
    """Claim and run that job (or the next due one); None when there was nothing to claim.

    The returned job says what happened: done, failed for good, or queued again
    with `run_after` set for the retry. The jobs the task queued (its follow-ups)
    go to `dispatch` once it is done; without one, they wait for a poll or the sweeper.
    `leases`, when given, holds the claim while the task runs (what a stopping process hands back).
    """
    job = queue.claim(context.database, timedelta(seconds=context.settings.job_lease_seconds), job_id)
    if job is None:
        return None
    with leases.holding(job) if leases is not None else nullcontext():
        return _run(context, job, dispatch)


def _run(context: TaskContext, job: Job, dispatch: Dispatch | None) -> Job:
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
            return queue.fail(session, job, f"{type(exc).__name__}: {exc}", backoff)
    with context.database.session() as session:
        if not queue.complete(session, job):
            log.info("job %s finished after another claim took it over: that run records the outcome", job.id)
    job.status = "done"
    dispatch_committed(dispatch, follow_ups or [])
    return job


def _lower_this_threads_priority(increment: int) -> None:
    """Raise the calling thread's niceness by `increment` (Linux schedules threads one by one; elsewhere the
    call would change the whole process, so it does nothing)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + increment))
    except OSError as exc:  # a sandbox that forbids it: the jobs run at the server's priority
        log.warning("could not lower the priority of job thread %s: %s", thread, exc)


def seconds_until(job: Job) -> float:
    return max(0.0, (job.run_after - utcnow()).total_seconds())


class InProcessRunner:
    """Runs dispatched jobs on threads of this process; retries come back through `dispatch` after their delay.

    The threads are daemons: a process that stops waits SHUTDOWN_GRACE_SECONDS for its running jobs, hands back
    the leases of those still running, and exits without them.
    """

    runs_here = True

    def __init__(self, context: TaskContext, workers: int, uploads: UploadActivity | None = None) -> None:
        self.context = context
        self.leases = Leases()
        self.uploads = uploads  # whose lulls the jobs wait for (JOB_LULL_WAIT_SECONDS at most); None: no wait
        # Job ids to run, each with the latest monotonic time it waits for a lull until.
        self._pending: queues.SimpleQueue[tuple[int, float] | None] = queues.SimpleQueue()
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"mediahub-job-{n}", daemon=True)
                         for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def dispatch(self, job_ids: Iterable[int], delay: float = 0.0) -> None:
        for job_id in job_ids:
            if delay > 0:
                self._later(delay, job_id)
            else:
                self._submit(job_id)

    def check(self) -> None:
        """Nothing outside the process delivers these jobs."""

    def close(self) -> None:
        """Stop taking work; wait up to SHUTDOWN_GRACE_SECONDS for the running jobs, then hand back the leases
        of the rest. Jobs dispatched but not started stay queued in the table."""
        with self._lock:
            self._closed = True
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        if self.uploads is not None:
            self.uploads.stop_waiting()
        for _ in self._threads:
            self._pending.put(None)  # wakes each thread; a closed runner's threads start no job
        deadline = time.monotonic() + self.context.settings.shutdown_grace_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        try:
            self.leases.hand_back(self.context.database)
        except Exception:  # the database is down: the leases run out instead
            log.exception("could not hand back the leases of running jobs")

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
                self._pending.put((job_id, time.monotonic() + self.context.settings.job_lull_wait_seconds))

    def _work(self) -> None:
        _lower_this_threads_priority(JOB_NICENESS)
        while (pending := self._pending.get()) is not None and not self._closed:
            job_id, lull_deadline = pending
            if self.uploads is not None:
                self.uploads.wait_for_lull(lull_deadline)
            if self._closed:
                break  # the job stays queued in the table
            self._run(job_id)

    def _run(self, job_id: int) -> None:
        try:
            job = execute(self.context, job_id, self.dispatch, self.leases)
        except Exception:  # the database is down: the job stays queued for the sweeper
            log.exception("could not run job %s", job_id)
            return
        if job is not None and job.status == "queued":
            self.dispatch([job.id], delay=seconds_until(job))
