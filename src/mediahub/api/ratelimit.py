"""A per-principal sliding-window limit on uploads, in memory (one process).

Each principal keeps the times of its uploads within the last window; a hit
beyond the limit is refused with how long until the oldest one leaves it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from mediahub.errors import RateLimited


class SlidingWindowLimiter:
    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit  # 0 = no limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        if not self.limit:
            return
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                retry_after = max(1, math.ceil(hits[0] + self.window - now))
                raise RateLimited(
                    f"at most {self.limit} uploads per {self.window:g} s; retry in {retry_after} s",
                    retry_after=retry_after,
                    limit=self.limit,
                )
            hits.append(now)
            self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop principals with no hit inside the window, so memory follows active callers only."""
        if len(self._hits) > 10_000:
            for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                del self._hits[key]
