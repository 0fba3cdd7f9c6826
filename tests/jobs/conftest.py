"""Fixtures of the job tests: runtimes whose jobs the test runs by hand, and subprocess workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media.conftest import make_runtime, runtime  # noqa: F401  (`runtime` is shared as a fixture)


@pytest.fixture
def manual_runtime(sqlite_db, local_storage, tmp_path):
    """SQLite and local disk; jobs stay queued until the test runs them (`execute`)."""
    manual = make_runtime(sqlite_db, local_storage, tmp_path, job_backoff_seconds=0)
    manual.ingest.dispatch = None
    yield manual
    manual.jobs.close()


def worker_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a `mediahub worker` over the test's SQLite file and media folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "STORAGE_", "MEDIA_", "QUEUE_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'mediahub.db'}", "STORAGE_TYPE": "local",
                "MEDIA_ROOT": str(tmp_path / "media"), "TEMP_DIR": str(tmp_path / "worker-tmp"),
                "SWEEP_INTERVAL_SECONDS": "1"})
    env.update({name.upper(): value for name, value in settings.items()})
    return env


def start_worker(tmp_path: Path, log_name: str, **settings: str) -> subprocess.Popen[bytes]:
    """`python -m mediahub.cli worker` as a separate process; its output goes to a log file in tmp_path."""
    with (tmp_path / log_name).open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "mediahub.cli", "worker"], cwd=tmp_path,
                                env=worker_env(tmp_path, **settings), stdout=log, stderr=subprocess.STDOUT)


