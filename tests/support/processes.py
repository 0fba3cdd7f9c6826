"""Child processes the tests start (servers, workers)."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Ask politely (SIGTERM), then insist (SIGKILL) when it does not exit in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
