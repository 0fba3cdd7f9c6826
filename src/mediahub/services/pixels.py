"""Where the pixel work of an upload runs: the calling thread, or a pool of processes.

In a server, decoding and resizing in threads competes with the event loop for
the GIL, so `/healthz` and small requests wait behind big photos. With
`PIXEL_WORKERS` > 0 the pipeline steps run in that many worker processes
instead; their inputs (a spooled file's path, options) and results (encoded
bytes, sizes, hashes) are plain picklable values.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def _worker_setup() -> None:
    # One libvips thread per worker process: the processes already use every core.
    os.environ["VIPS_CONCURRENCY"] = "1"


class PixelWorkers:
    def __init__(self, processes: int) -> None:
        self._pool = (
            ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_setup)
            if processes > 0 else None
        )

    @property
    def in_process(self) -> bool:
        """Whether `run` calls in this process (so arguments may be callables and need not pickle)."""
        return self._pool is None

    def run(self, function: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            return function(*args)
        return self._pool.submit(function, *args).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
