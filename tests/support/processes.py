"""Child processes the tests start (servers, workers)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Ask politely (SIGTERM), then insist (SIGKILL) when it does not exit in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state; the name may hold spaces


def pixel_worker_pids(parent: int | None = None) -> list[int]:
    """Living children of `parent` (default: this process) started by multiprocessing's spawn, not its
    resource tracker."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if _parent_of(int(entry.name)) != parent:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline and state != "Z":
            found.append(int(entry.name))
    return sorted(found)


def exited(pid: int) -> bool:
    """Whether the process has ended (a zombie, or reaped); a killed one may run on a moment while it exits."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
    except (OSError, IndexError):
        return True
    # The main thread turns zombie first; the process's files close only when its last thread is gone.
    return state in ("Z", "X") and threads <= 1


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
