"""A few threads for the side work of one upload, overlapped with its pixel work.

Byte digests, the metadata strip and the pixel digest do not depend on the
decode, and hashlib, libvips and Pillow release the GIL, so on two cores they
add next to nothing to the client's wait.
Tasks here never wait on other tasks here, so the pool cannot deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREADS = 4
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def submit(function: Callable[..., T], *args: Any) -> Future[T]:
    """Run `function(*args)` on the shared side-work threads (made on first use, so after any fork)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="side-work")
    return _pool.submit(function, *args)
