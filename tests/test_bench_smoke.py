"""`python -m bench --smoke` and `python -m bench scale --smoke` run end to end and print every table
(no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import HOST, SERVERS
from tests.support.services import require_service

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
SCALE_HEADERS = (
    "Scale: the library (PostgreSQL)",
    "Scale: requests through uvicorn",
    "Scale: an upload's duplicate lookup alone",
    "Scale: EXPLAIN of every statement the endpoints ran (PostgreSQL",
    "Scale: EXPLAIN of every statement the endpoints ran (MariaDB",
)
# A row of the latency table for each request the section times.
SCALE_ROWS = ("list: biggest entity, first page, anonymous", "list: a typical gallery", "get one item",
              "public get (anonymous)", "moderation queue, first page", "storage analytics (admin)",
              "/similar of an item", "duplicate lookup, global scope", "server after all the requests")


def _bench(*args: str) -> str:
    # The project root for `bench`, before whatever PYTHONPATH names the package's source (a worktree's own).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_bench_smoke_prints_every_table():
    out = _bench("--smoke")
    for header in HEADERS:
        assert header in out, f"missing table {header!r}:\n{out[-3000:]}"
    assert "Scale:" not in out  # run only when named


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.mariadb
def test_bench_scale_smoke_prints_every_table():
    for server in SERVERS.values():
        require_service(server.name, HOST, server.port)
    out = _bench("scale", "--smoke")
    for text in (*SCALE_HEADERS, *SCALE_ROWS, "bench done in"):
        assert text in out, f"missing {text!r}:\n{out[-5000:]}"
    explained = out[out.index("Scale: EXPLAIN"):]
    for endpoint in ("list big", "list typical", "get", "queue", "analytics", "similar"):
        assert f"\n {endpoint} " in explained, f"no EXPLAIN rows for {endpoint!r}:\n{explained}"
