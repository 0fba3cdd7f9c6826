"""`mediahub dedup scan` and `dedup backfill` as a user runs them: a real subprocess over a library ingested by the CLI."""

from __future__ import annotations

import json
import sqlite3

from tests.support.corpus import CORPUS_DIR
from tests.test_cli import run

GOOD = CORPUS_DIR / "images/good"


def _ingest(workdir, entity, *names, env=None):
    result = run(workdir, "ingest", *(str(GOOD / n) for n in names), "--entity", entity, "--field", "gallery",
                 "--json", env=env)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_scan_reports_groups_across_entities(tmp_path):
    env = {"DEDUP_POLICY": "allow"}
    assert run(tmp_path, "db", "upgrade").returncode == 0
    first = _ingest(tmp_path, "property:P1", "jpeg_hopper.jpg", "jpeg_flower.jpg", env=env)
    second = _ingest(tmp_path, "property:P2", "png_hopper.png", "webp_flower.webp", "gps_nikon_DSCN0010.jpg",
                     env=env)
    assert all(line["ok"] for line in first + second)
    ids = {line["file"].rsplit("/", 1)[-1]: line["item"]["id"] for line in first + second}

    result = run(tmp_path, "dedup", "scan", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["items"] == 5 and report["threshold"] == 14
    groups = sorted(sorted(m["id"] for m in group) for group in report["groups"])
    assert groups == sorted([sorted([ids["jpeg_hopper.jpg"], ids["png_hopper.png"]]),
                             sorted([ids["jpeg_flower.jpg"], ids["webp_flower.webp"]])])
    first_members = [group[0] for group in report["groups"]]
    assert all(m["reason"] == "first" for m in first_members)

    text = run(tmp_path, "dedup", "scan", "--threshold", "0")
    assert text.returncode == 0
    assert "5 items scanned, 2 duplicate groups (2 duplicates) at threshold 0" in text.stdout
    assert "pixels" in text.stdout or "perceptual" in text.stdout


def test_ingest_refuses_a_duplicate_by_default(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    lines = _ingest(tmp_path, "property:P1", "jpeg_hopper.jpg", "png_hopper.png")
    assert [line["ok"] for line in lines] == [True, False]
    assert lines[1]["error"]["code"] == "duplicate"
    assert lines[1]["error"]["duplicate_of"] == lines[0]["item"]["public_id"]


def test_backfill_fills_rows_without_fingerprints_then_has_nothing_to_do(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    lines = _ingest(tmp_path, "property:P1", "jpeg_hopper.jpg", "jpeg_flower.jpg")
    assert all(line["ok"] for line in lines)
    bands = ", ".join(f"hash_{k}{b} = NULL" for k in "wc" for b in range(4))
    with sqlite3.connect(tmp_path / "var/mediahub.db") as connection:
        connection.execute(f"UPDATE media_items SET pixel_sha256 = NULL, dedup_thumb = NULL, {bands}")

    result = run(tmp_path, "dedup", "backfill", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"examined": 2, "filled": 2, "from_variant": 0, "failed": {}}
    again = run(tmp_path, "dedup", "backfill")
    assert again.returncode == 0 and "0 image rows without fingerprints: 0 filled" in again.stdout
    # And the library is whole again: the same picture once more is refused.
    refused = _ingest(tmp_path, "property:P1", "png_hopper.png")
    assert refused[0]["error"]["code"] == "duplicate"
