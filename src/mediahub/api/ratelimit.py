"""A per-principal sliding-window limit on uploads: in memory (one process), or in Redis (all).

Each principal keeps the times of its uploads within the last window; a hit
beyond the limit is refused with how long until the oldest one leaves it.
With a Redis URL the window lives in Redis, so every server process counts
against the same one; while Redis cannot be reached each process falls back to
its own in-memory window rather than refusing every upload.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import redis

from mediahub.config import Settings
from mediahub.errors import RateLimited, Unavailable

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    limit: int

    def hit(self, key: str) -> None:
        """Count one event of `key`; raise RateLimited when the window is full. May block (network)."""


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
                raise _limited(self.limit, self.window, hits[0] + self.window - now)
            hits.append(now)
            self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop principals with no hit inside the window, so memory follows active callers only."""
        if len(self._hits) > 10_000:
            for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                del self._hits[key]


def _limited(limit: int, window: float, wait: float) -> RateLimited:
    retry_after = max(1, math.ceil(wait))
    return RateLimited(f"at most {limit} uploads per {window:g} s; retry in {retry_after} s",
                       retry_after=retry_after, limit=limit)


# One atomic step on the principal's sorted set of hit times (Redis' own clock, so every process agrees):
# drop hits older than the window, then refuse (answer ms until the oldest leaves) or record this hit (-1).
_HIT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class RedisWindowLimiter:
    """The sliding window in Redis, shared by every process using the same URL and prefix."""

    RETRY_SECONDS = 10.0  # after Redis failed, how long hits stay local before it is tried again

    def __init__(self, url: str, prefix: str, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._client.register_script(_HIT_SCRIPT)
        self._fallback = SlidingWindowLimiter(limit, window)
        self._local_until = 0.0  # while Redis is down, uploads do not each wait for its timeout

    def hit(self, key: str) -> None:
        if not self.limit:
            return
        if time.monotonic() < self._local_until:
            self._fallback.hit(key)
            return
        try:
            wait_ms = int(self._script(keys=[f"{self.prefix}:{key}"],
                                       args=[self.limit, int(self.window * 1000), uuid.uuid4().hex]))
        except redis.RedisError as exc:
            log.warning("rate limit store unavailable (%s); counting in this process for %g s",
                        type(exc).__name__, self.RETRY_SECONDS)
            self._local_until = time.monotonic() + self.RETRY_SECONDS
            self._fallback.hit(key)
            return
        if wait_ms >= 0:
            raise _limited(self.limit, self.window, wait_ms / 1000)

    def check(self) -> None:
        """Redis answers: while it does not, each process counts on its own and the limit is not shared."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise Unavailable(f"the rate limit store does not answer: {type(exc).__name__}",
                              code="rate_limit_unavailable") from exc


def upload_limiter(settings: Settings) -> RateLimiter:
    """UPLOAD_RATE_LIMIT per principal per minute: across processes when a Redis URL is configured."""
    url = settings.rate_limit_redis
    if url and settings.upload_rate_limit:
        return RedisWindowLimiter(url, f"{settings.rate_limit_prefix}:uploads", settings.upload_rate_limit)
    return SlidingWindowLimiter(settings.upload_rate_limit)


class ConcurrencyLimit:
    """At most `limit` operations of one key in flight at once in this process (asyncio callers)."""

    def __init__(self, limit: int, what: str, code: str) -> None:
        self.limit = limit
        self.what = what  # for the message: "batch uploads"
        self.code = code
        self._in_flight: Counter[str] = Counter()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        if self._in_flight[key] >= self.limit:
            raise RateLimited(f"at most {self.limit} {self.what} in flight at once; retry when one has finished",
                              code=self.code, retry_after=1, limit=self.limit)
        self._in_flight[key] += 1
        try:
            yield
        finally:
            self._in_flight[key] -= 1
            if not self._in_flight[key]:
                del self._in_flight[key]
