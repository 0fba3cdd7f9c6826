"""`python -m bench --smoke` and `python -m bench scale --smoke` run end to end and print every table
(no timing is asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import HOST, SERVERS
from tests.support.services import IN_CI, require_service

ROOT = Path(__file__).resolve().parents[1]
HEADERS = (
    "Pipeline: ms per image",
    "Overhead around the pixels",
    "Memory: peak RSS",
    "Throughput: images/s",
    "HTTP: uploads/s",
    "Phone photos through HTTP",
    "Quality: SSIM",
    "Delivery:",
    "Tagging: room type on the rooms dev set",
    "Tagging: object tags on the rooms dev set",
    "Tagging: ms per image of the tag step",
    "Tagging: RSS the tagger adds",
    "Tagging: what it costs an upload",
    "uploads the tagging server tagged",
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
    assert "Scale:" not in out and "Uploads:" not in out  # run only when named
    # The server that tags did tag every listing photo uploaded to it: the comparison is of real work.
    tagged = re.search(r"uploads the tagging server tagged .*: (\d+) of (\d+)", out)
    assert tagged and tagged[1] == tagged[2] != "0", out[-3000:]


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


# The delivery section's rows in --smoke (MediaHub and bare pyvips only): each label, and the shape of the
# two servers' cells (bare pyvips, MediaHub); "-" where a row does not apply (no result cache).
NUMBERS = r"[\d,.]+ / [\d,.]+"
DELIVERY_ROWS = {
    "cold p50 ms, WebP / JPEG": (NUMBERS, NUMBERS),
    "cold transforms/s, 8 in flight, WebP / JPEG": (NUMBERS, NUMBERS),
    "cached hits/s, 1 core": ("-", r"[\d,.]+"),
    "EXIF 6 photo upright (jpeg-1mp-rot6)": ("yes", "yes"),
    "webp q80: mean KiB @ SSIM": (r"[\d,.]+ @ 0\.\d{4}",) * 2,
    "jpeg q85: mean KiB @ SSIM": (r"[\d,.]+ @ 0\.\d{4}",) * 2,
    "peak PSS MiB, 8 / 16 in flight": (NUMBERS, NUMBERS),
}


@pytest.mark.slow
def test_bench_delivery_smoke_prints_every_row():
    out = _bench("delivery", "--smoke")
    header = next((line for line in out.splitlines() if line.lstrip().startswith("row ")), None)
    assert header is not None and re.split(r"\s{2,}", header.strip())[1:3] == ["bare pyvips", "MediaHub"], out
    for label, shapes in DELIVERY_ROWS.items():
        line = next((line for line in out.splitlines() if line.lstrip().startswith(label)), None)
        assert line is not None, f"missing row {label!r}:\n{out}"
        cells = re.split(r"\s{2,}", line.strip())[1:3]
        for cell, shape in zip(cells, shapes, strict=True):
            assert re.fullmatch(shape, cell), f"{label!r}: {cell!r} is not {shape!r}:\n{line}"


# The uploads section's rows in --smoke: every transport, and the shape of its figures (throughput video, photos;
# share of the form's; CPU ms/MB; share of the form's CPU; CPU before the last request; peak RSS small / large
# video; RSS growth over file growth).
RATE, PAIR, SHARES, BEFORE = r"[\d,.]+", r"[\d,.]+ / [\d,.]+", r"[\d,.]+x / [\d,.]+x", r"[\d,.]+ \([\d,.]+x\)"
PROXIED, STAGED = (RATE, RATE, "-", PAIR, "-", "-", PAIR), (RATE, RATE, SHARES, PAIR, SHARES, BEFORE, PAIR)
UPLOAD_ROWS = {"form": PROXIED, "tus 1 MiB": STAGED, "tus 8 MiB": STAGED, "tus 32 MiB": STAGED,
               "form (S3)": PROXIED, "tus 8 MiB (S3)": STAGED, "direct-to-S3": STAGED}


@pytest.mark.slow
def test_bench_uploads_smoke_prints_every_row():
    out = _bench("uploads", "--smoke")
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in out.splitlines())}
    for label, shapes in UPLOAD_ROWS.items():
        assert label in rows, f"missing row {label!r}:\n{out}"
        cells = rows[label]
        for cell, shape in zip(cells, (*shapes, r"-?[\d.]+ %"), strict=False):
            assert re.fullmatch(shape, cell), f"{label!r}: {cell!r} is not {shape!r}:\n{out}"
        assert cells[-1] in {"met", "NOT met"} or " / " in cells[-1], f"{label!r}: no verdict:\n{out}"


# The library section's rows in --smoke: each request on both databases (p50, p99, the ratio to the API's list),
# and the browser's figures.
LIBRARY_ROWS = ("entity page, owner", "entity page, stranger", "show more, deep cursor", "API list, same items (JSON)")


@pytest.mark.slow
@pytest.mark.postgres
def test_bench_library_smoke_prints_every_row():
    require_service("PostgreSQL", HOST, SERVERS["postgresql"].port)
    if not Path("/usr/bin/chromium").exists():
        (pytest.fail if IN_CI else pytest.skip)("chromium is missing: `make test` installs it")
    out = _bench("library", "--smoke")
    for label in LIBRARY_ROWS:
        for database in ("SQLite", "PostgreSQL"):
            line = next((line for line in out.splitlines() if line.lstrip().startswith(label)
                         and f" {database} " in line), None)
            assert line is not None, f"missing row {label!r} on {database}:\n{out}"
            assert re.search(r"\s[\d.]+\s+[\d.]+\s+[\d.]+x", line), f"{label!r}: no figures:\n{line}"
    for database in ("SQLite", "PostgreSQL"):
        line = next((line for line in out.splitlines() if line.lstrip().startswith(database)
                     and "x" not in line.split(database, 1)[1]), None)
        assert line is not None and re.fullmatch(r"[\d,]+", re.split(r"\s{2,}", line.strip())[3]), \
            f"no browser figures on {database}:\n{out}"
