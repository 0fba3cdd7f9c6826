"""Jobs over Dramatiq, when QUEUE_URL names a broker: redis://... or amqp://...

Messages carry only a job id; the actor `run_job` claims that job from the
table and runs it, so a duplicate or late message is harmless and the table,
not the broker, holds retries (Dramatiq's own are off). The table is the
outbox: messages are sent only after the transaction that made the jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import dramatiq
import pika
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from mediahub.errors import Unavailable
from mediahub.jobs.context import TaskContext
from mediahub.jobs.runner import Leases, execute, seconds_until

log = logging.getLogger(__name__)

ACTOR_NAME = "run_job"
CHECK_TIMEOUT_SECONDS = 3.0  # readiness: how long the broker may take to answer


def build_broker(url: str) -> dramatiq.Broker:
    if url.startswith(("redis://", "rediss://")):
        return RedisBroker(url=url)
    if url.startswith(("amqp://", "amqps://")):
        return RabbitmqBroker(url=url)
    raise ValueError(f"QUEUE_URL must start with redis:// or amqp://, not {url.split(':', 1)[0]!r}")


class DramatiqDispatcher:
    """Sends job ids to the broker; `actor` is what a worker process runs for each."""

    runs_here = False

    def __init__(self, context: TaskContext) -> None:
        settings = context.settings
        if not settings.queue_url:
            raise ValueError("DramatiqDispatcher needs QUEUE_URL")
        self.url = settings.queue_url
        self.broker = build_broker(settings.queue_url)
        self.queue_name = settings.queue_name
        self.leases = Leases()  # the jobs this process's worker threads are running

        def run_job(job_id: int) -> None:
            job = execute(context, job_id, self.dispatch, self.leases)
            if job is not None and job.status == "queued":
                self.dispatch([job.id], delay=seconds_until(job))

        # The time limit follows the lease: a job is not cut short while its claim still holds.
        self.actor = dramatiq.actor(run_job, actor_name=ACTOR_NAME, queue_name=self.queue_name, broker=self.broker,
                                    max_retries=0, time_limit=int(settings.job_lease_seconds * 1000))

    def dispatch(self, job_ids: Iterable[int], delay: float = 0.0) -> None:
        for job_id in job_ids:
            self.actor.send_with_options(args=(job_id,), delay=int(delay * 1000) or None)

    def check(self) -> None:
        """Readiness: a connection of its own to the broker (the broker's connections belong to its threads)."""
        try:
            if self.url.startswith(("redis://", "rediss://")):
                client = redis.Redis.from_url(self.url, socket_timeout=CHECK_TIMEOUT_SECONDS,
                                              socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
                try:
                    client.ping()
                finally:
                    client.close()
            else:
                parameters = pika.URLParameters(self.url)
                parameters.connection_attempts = 1
                parameters.socket_timeout = parameters.stack_timeout = CHECK_TIMEOUT_SECONDS
                pika.BlockingConnection(parameters).close()
        except (redis.RedisError, pika.exceptions.AMQPError, OSError) as exc:
            raise Unavailable(f"the queue broker does not answer: {type(exc).__name__}",
                              code="queue_unavailable") from exc

    def worker(self, threads: int) -> dramatiq.Worker:
        """A Dramatiq worker consuming this queue (not started)."""
        return dramatiq.Worker(self.broker, queues={self.queue_name}, worker_threads=threads)

    def close(self) -> None:
        self.broker.close()
