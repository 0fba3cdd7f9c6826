"""`python -m bench.dedup_lookup --smoke` runs end to end: every process row printed, all agreeing (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dedup_lookup_smoke_prints_first_and_restart_rows():
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    done = subprocess.run([sys.executable, "-m", "bench.dedup_lookup", "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("random", "clustered"))]
    assert {(row[0], row[1], row[2]) for row in rows} == {
        (dist, size, process) for dist in ("random", "clustered") for size in ("1000", "10000")
        for process in ("first", "restart")}
