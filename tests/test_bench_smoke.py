"""`python -m bench --smoke` runs end to end and prints every table (no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
HEADERS = (
    "Pipeline: ms per image",
    "Overhead around the pixels",
    "Memory: peak RSS",
    "Throughput: images/s",
    "HTTP: uploads/s",
    "Phone photos through HTTP",
    "Quality: SSIM",
    "bench done in",
)


@pytest.mark.slow
def test_bench_smoke_prints_every_table():
    # The project root for `bench`, before whatever PYTHONPATH names the package's source (a worktree's own).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for header in HEADERS:
        assert header in done.stdout, f"missing table {header!r}:\n{done.stdout[-3000:]}"
