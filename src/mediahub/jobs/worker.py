"""`mediahub worker`: run background jobs until told to stop.

With QUEUE_URL set it runs Dramatiq worker threads on the configured queue;
without, a poll loop over the jobs table (no broker needed). Either way a
sweeper runs beside it, so a lost message or a killed worker never strands a job
(and uploads that will never finish are removed).
"""

from __future__ import annotations

import logging
import threading

from mediahub.jobs.context import TaskContext
from mediahub.jobs.runner import Dispatcher, execute
from mediahub.jobs.sweeper import Sweeper, audit_retention
from mediahub.storage.staging import Staging

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0


def run_worker(context: TaskContext, dispatcher: Dispatcher, threads: int, stop: threading.Event,
               staging: Staging) -> None:
    """Block until `stop` is set, then finish the running jobs and return. The sweeper beside it also removes
    expired and stray uploads from `staging`."""
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
        stop.wait()
    finally:
        sweeper.stop()
        worker.stop()


def _run_poll_loop(context: TaskContext, threads: int, stop: threading.Event, staging: Staging) -> None:
    # Polling finds due jobs (retries included) by itself; the sweeper only reclaims expired leases.
    sweeper = Sweeper(context.database, None, context.settings.sweep_interval_seconds, context.storage, staging,
                      audit_retention=audit_retention(context.settings.audit_retention_days))
    pollers = [threading.Thread(target=_poll, args=(context, stop), name=f"mediahub-poll-{n}")
               for n in range(threads)]
    sweeper.start()
    for poller in pollers:
        poller.start()
    log.info("worker: %d threads polling the jobs table", threads)
    try:
        stop.wait()
    finally:
        sweeper.stop()
        for poller in pollers:
            poller.join()


def _poll(context: TaskContext, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            job = execute(context)
        except Exception:  # database unavailable: back off and try again
            log.warning("could not claim a job", exc_info=True)
            job = None
        if job is None:
            stop.wait(IDLE_POLL_SECONDS)
