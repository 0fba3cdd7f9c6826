"""Uploads being ingested in this process, so that background work can wait for a lull in them.

The in-process runner shares the server's cores (and, on SQLite, its one writer) with the uploads: a job
started between two uploads of a batch slows the second. Its threads wait, before they take a job, until no
upload has been ingested for `JOB_LULL_SECONDS`, or until the job has waited `JOB_LULL_WAIT_SECONDS` since it
was dispatched: under a steady stream of uploads jobs run that much later, never fewer of them. The lull is
longer than the gap between two uploads a client sends back to back, which holds the next request's transfer
and spooling as well as the client's own time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class UploadActivity:
    def __init__(self, lull_seconds: float) -> None:
        self.lull_seconds = lull_seconds
        self._ingesting = 0
        self._last_end = float("-inf")
        self._stopped = False
        self._changed = threading.Condition()

    @contextmanager
    def ingesting(self) -> Iterator[None]:
        with self._changed:
            self._ingesting += 1
        try:
            yield
        finally:
            with self._changed:
                self._ingesting -= 1
                self._last_end = time.monotonic()
                self._changed.notify_all()

    def wait_for_lull(self, until: float) -> bool:
        """Block until no upload is being ingested and none ended in the last `lull_seconds`, or until the
        monotonic time `until`, or `stop_waiting`; whether the lull came."""
        with self._changed:
            while True:
                now = time.monotonic()
                if not self._ingesting and now - self._last_end >= self.lull_seconds:
                    return True
                if now >= until or self._stopped:
                    return False
                quiet_at = self._last_end + self.lull_seconds if not self._ingesting else until
                self._changed.wait(max(0.0, min(quiet_at, until) - now))

    def stop_waiting(self) -> None:
        """End every wait at once, and those to come (the process is stopping)."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
