"""`mediahub placeholders backfill` as a user runs it: a real subprocess over a library ingested by the CLI."""

from __future__ import annotations

import json
import sqlite3

from tests.support.corpus import CORPUS_DIR
from tests.test_cli import run

GOOD = CORPUS_DIR / "images/good"


def _placeholders(workdir) -> list[str | None]:
    with sqlite3.connect(workdir / "var/mediahub.db") as connection:
        return [row[0] for row in connection.execute(
            "SELECT json_extract(metadata, '$.placeholders.thumbhash') FROM media_items ORDER BY id")]


def test_backfill_fills_rows_without_placeholders_then_has_nothing_to_do(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    ingested = run(tmp_path, "ingest", str(GOOD / "jpeg_flower.jpg"), str(GOOD / "gps_nikon_DSCN0010.jpg"),
                   "--entity", "property:P1", "--field", "gallery", "--json")
    assert ingested.returncode == 0, ingested.stderr
    made = _placeholders(tmp_path)
    assert len(made) == 2 and all(made)
    with sqlite3.connect(tmp_path / "var/mediahub.db") as connection:
        connection.execute("UPDATE media_items SET metadata = json_remove(metadata, '$.placeholders')")
    assert _placeholders(tmp_path) == [None, None]

    result = run(tmp_path, "placeholders", "backfill", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"examined": 2, "filled": 2, "without_rendition": 0, "failed": {}}
    assert all(_placeholders(tmp_path))
    again = run(tmp_path, "placeholders", "backfill")
    assert again.returncode == 0 and "0 rows without placeholders: 0 filled" in again.stdout
