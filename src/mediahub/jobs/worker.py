"""`mediahub worker`: run background jobs until told to stop.

With QUEUE_URL set it runs Dramatiq worker threads on the configured queue;
without, a poll loop over the jobs table (no broker needed). Either way a
sweeper runs beside it, so a lost message or a killed worker never strands a job
(and uploads that will never finish are removed). Told to stop, it takes no new
job, lets the running ones finish within SHUTDOWN_GRACE_SECONDS, and hands back
the leases of the rest: they are queued again at once (and re-sent to the broker).
"""

from __future__ import annotations

import logging
import threading
import time

from mediahub.jobs.context import TaskContext
from mediahub.jobs.runner import Dispatcher, Leases, execute
from mediahub.jobs.sweeper import Sweeper, audit_retention
from mediahub.storage.staging import Staging

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
SIGNAL_SLICE_SECONDS = 0.5


def run_worker(context: TaskContext, dispatcher: Dispatcher, threads: int, stop: threading.Event,
               staging: Staging) -> None:
    """Block until `stop` is set, then finish the running jobs (within SHUTDOWN_GRACE_SECONDS, handing back
    the rest) and return. The sweeper beside it also removes expired and stray uploads from `staging`."""
    if context.settings.queue_url:
        _run_dramatiq(context, dispatcher, threads, stop, staging)
    else:
        _run_poll_loop(context, threads, stop, staging)


def _run_dramatiq(context: TaskContext, dispatcher: Dispatcher, threads: int, stop: threading.Event,
                  staging: Staging) -> None:
    from mediahub.jobs.dramatiq_broker import DramatiqDispatcher  # imports the broker clients

    if not isinstance(dispatcher, DramatiqDispatcher):
        raise TypeError("QUEUE_URL is set, but the dispatcher is not Dramatiq's")
    worker = dispatcher.worker(threads)
    sweeper = Sweeper(context.database, dispatcher.dispatch, context.settings.sweep_interval_seconds,
                      context.storage, staging, audit_retention=audit_retention(context.settings.audit_retention_days))
    worker.start()
    sweeper.start()
    log.info("worker: %d Dramatiq threads on queue %r", threads, dispatcher.queue_name)
    try:
        _wait_for(stop)
    finally:
        sweeper.stop()
        worker.stop(timeout=int(context.settings.shutdown_grace_seconds * 1000))
        # Worker threads still running are daemons, gone with the process: their jobs go to the other workers now.
        handed_back = _hand_back(context, dispatcher.leases)
        try:
            dispatcher.dispatch(handed_back)
        except Exception:  # the broker is down: the sweepers re-send queued jobs whose message is lost
            log.exception("could not re-send the jobs handed back")


def _run_poll_loop(context: TaskContext, threads: int, stop: threading.Event, staging: Staging) -> None:
    # Polling finds due jobs (retries included) by itself; the sweeper only reclaims expired leases.
    sweeper = Sweeper(context.database, None, context.settings.sweep_interval_seconds, context.storage, staging,
                      audit_retention=audit_retention(context.settings.audit_retention_days))
    leases = Leases()
    # Daemons: a poller still running its job after the grace period goes with the process, its lease handed back.
    pollers = [threading.Thread(target=_poll, args=(context, stop, leases), name=f"mediahub-poll-{n}", daemon=True)
               for n in range(threads)]
    sweeper.start()
    for poller in pollers:
        poller.start()
    log.info("worker: %d threads polling the jobs table", threads)
    try:
        _wait_for(stop)
    finally:
        sweeper.stop()
        deadline = time.monotonic() + context.settings.shutdown_grace_seconds
        for poller in pollers:
            poller.join(max(0.0, deadline - time.monotonic()))
        _hand_back(context, leases)


def _wait_for(stop: threading.Event) -> None:
    """Block until `stop` is set, waking now and then: a signal the kernel delivers to another thread runs its
    Python handler (which sets `stop`) only once the main thread wakes."""
    while not stop.wait(SIGNAL_SLICE_SECONDS):
        pass


def _hand_back(context: TaskContext, leases: Leases) -> list[int]:
    try:
        return leases.hand_back(context.database)
    except Exception:  # the database is down: the leases run out instead, and the sweeper takes the jobs
        log.exception("could not hand back the leases of running jobs")
        return []


def _poll(context: TaskContext, stop: threading.Event, leases: Leases) -> None:
    while not stop.is_set():
        try:
            job = execute(context, leases=leases)
        except Exception:  # database unavailable: back off and try again
            log.warning("could not claim a job", exc_info=True)
            job = None
        if job is None:
            stop.wait(IDLE_POLL_SECONDS)
