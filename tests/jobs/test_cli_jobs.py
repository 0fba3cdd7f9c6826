"""`mediahub ingest` waits for its in-process jobs; `mediahub reprocess` resumes where it stopped."""

from __future__ import annotations

import json

from tests.support.corpus import CORPUS_DIR
from tests.test_cli import run

NEW_SIZES = {"IMAGE_SIZES": "thumbnail:120x120:crop,small:300"}


def test_ingest_prints_the_finished_item_and_reprocess_follows_image_sizes(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    files = [CORPUS_DIR / "images/good/jpeg_hopper.jpg", CORPUS_DIR / "video/mp4_h264_example_640x480.mp4"]
    ingested = run(tmp_path, "ingest", *map(str, files), "--entity", "post:7", "--field", "media", "--json")
    assert ingested.returncode == 0, ingested.stderr
    photo, video = (json.loads(line)["item"] for line in ingested.stdout.splitlines())
    assert photo["processing_status"] == video["processing_status"] == "ready"
    assert {"large.webp", "thumbnail.webp"} <= set(photo["variants"])
    assert "web.mp4" in video["variants"] and "large.webp" in video["variants"]

    assert run(tmp_path, "reprocess").returncode == 2, "--entity or --all is required"
    first = run(tmp_path, "reprocess", "--all", env=NEW_SIZES)
    assert first.returncode == 0 and "2 items to reprocess: 2 done" in first.stderr, first.stderr
    again = run(tmp_path, "reprocess", "--entity", "post:7", env=NEW_SIZES)
    assert again.returncode == 0 and "0 items to reprocess" in again.stderr, again.stderr
    verify = run(tmp_path, "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["stray"] == []
    assert json.loads(verify.stdout)["objects"] == 11  # 2 originals, 2 sizes x JPEG+WebP each, the web MP4
