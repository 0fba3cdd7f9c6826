"""`mediahub tags`: the backfill needs the classifier, the export writes the moderators' decisions as labels."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mediahub.config import Settings
from mediahub.db import migrate
from mediahub.db.session import Database
from mediahub.media.access import Principal
from mediahub.media.tagging import TagService
from mediahub.runtime import Runtime
from mediahub.storage.local import LocalStorage
from tests.media.helpers import upload
from tests.support.corpus import CORPUS_DIR
from tests.support.taggers import FixedTagger
from tests.test_cli import run

MODERATOR = Principal(sub="MOD-1", roles=frozenset({"user", "moderator"}))


def _decided_library(tmp_path: Path) -> tuple[dict[str, str], str]:
    """A library of one listing photo whose room a moderator corrected; the CLI's environment, and its public id."""
    url = f"sqlite:///{tmp_path / 'mediahub.db'}"
    migrate.upgrade(url)
    database = Database(url)
    settings = Settings(_env_file=None, database_url=url, media_root=tmp_path / "media", temp_dir=tmp_path / "tmp")
    runtime = Runtime.assemble(settings, database, LocalStorage(tmp_path / "media"), tagger=FixedTagger())
    try:
        item = upload(runtime, CORPUS_DIR / "images/good/jpeg_flower.jpg")
        TagService(database).correct_room(item.id, "bedroom", MODERATOR)
    finally:
        runtime.close()
    return {"DATABASE_URL": url, "MEDIA_ROOT": str(tmp_path / "media")}, item.public_id


def test_export_writes_the_decisions_as_json_lines_or_csv(tmp_path: Path):
    env, public_id = _decided_library(tmp_path)
    jsonl = run(tmp_path, "tags", "export", env=env)
    assert jsonl.returncode == 0, jsonl.stderr
    (line,) = [json.loads(text) for text in jsonl.stdout.splitlines()]
    assert (line["media_public_id"], line["label"], line["decision"], line["machine_label"], line["model"]) == (
        public_id, "bedroom", "corrected", "kitchen", "fake-rooms@1")
    assert "1 decisions written" in jsonl.stderr
    target = tmp_path / "labels.csv"
    table = run(tmp_path, "tags", "export", "--format", "csv", "--output", str(target), env=env)
    assert table.returncode == 0, table.stderr
    (row,) = csv.DictReader(io.StringIO(target.read_text()))
    assert (row["label"], row["machine_score"], row["decided_by"]) == ("bedroom", "0.9", "MOD-1")


def test_backfill_without_a_classifier_says_so(tmp_path: Path):
    env, _ = _decided_library(tmp_path)
    result = run(tmp_path, "tags", "backfill", "--limit", "5", env={**env, "TAGGING_ENABLED": "false"})
    assert result.returncode == 2
    assert "tagging is off" in result.stderr
