"""Running calls at the same time, for tests of races."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_together(calls: list[Callable[[], object]], timeout: float = 120.0) -> None:
    """Start every call on its own thread, then wait for all; a call still running after `timeout` fails the test."""
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a racing call did not finish"
