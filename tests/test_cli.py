"""The `mediahub` command as a user runs it: a real subprocess on a fresh folder."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.corpus import CORPUS_DIR
from tests.support.s3_server import anonymous_get, make_s3_storage
from tests.support.watermarks import mark_file

MEDIAHUB = [sys.executable, "-m", "mediahub.cli"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def run(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "STORAGE_", "MEDIA_"))}
    full_env.update(env or {})
    return subprocess.run([*MEDIAHUB, *args], cwd=workdir, env=full_env, capture_output=True, text=True,
                          timeout=300)


def test_upgrade_then_ingest_good_and_bad_files_as_json_lines(workdir):
    assert run(workdir, "db", "upgrade").returncode == 0
    files = [CORPUS_DIR / "images/good/orient_landscape_6.jpg", CORPUS_DIR / "images/bad/unsupported_svg.svg",
             CORPUS_DIR / "images/good/gps_nikon_DSCN0010.jpg"]
    result = run(workdir, "ingest", *map(str, files), "--entity", "property:123", "--field", "gallery", "--json")
    assert result.returncode == 1, "a failed file makes the exit status non-zero"
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["ok"] for line in lines] == [True, False, True]
    first, refused, camera = lines
    assert (first["item"]["width"], first["item"]["height"]) == (1800, 1200)
    assert first["item"]["original_key"].startswith("properties/photos/123/")
    assert set(first["item"]["variants"]) == {f"{n}.{f}" for n in ("thumbnail", "small", "medium", "large")
                                              for f in ("jpeg", "webp")}
    assert refused["error"]["code"] == "unsupported_type"
    assert camera["item"]["metadata"]["exif"]["make"] == "NIKON"
    assert "gps" not in camera["item"]["metadata"] and camera["item"]["metadata"]["gps_stripped"]
    media_root = workdir / "var" / "media"
    assert (media_root / first["item"]["original_key"]).is_file()

    verify = run(workdir, "verify", "--json")
    assert verify.returncode == 0
    assert json.loads(verify.stdout)["stray"] == []


def test_grant_and_ingest_are_recorded_in_the_audit_trail_as_the_clis(workdir):
    run(workdir, "db", "upgrade")
    assert run(workdir, "grant", "community:C1/amenity:AM-1", "USR-5", "--role", "editor").returncode == 0
    assert run(workdir, "ingest", str(CORPUS_DIR / "images/good/jpeg_hopper.jpg"), "--entity", "property:9",
               "--field", "gallery", "--uploader", "USR-5").returncode == 0
    with sqlite3.connect(workdir / "var" / "mediahub.db") as db:
        rows = db.execute("SELECT action, actor, actor_role, entity_type, parent_id, entity_id, after "
                          "FROM audit_events ORDER BY id").fetchall()
    (grant, created) = rows
    assert grant[:6] == ("member.grant", "mediahub-cli", "operator", "amenity", "C1", "AM-1")
    assert json.loads(grant[6]) == {"subject": "USR-5", "role": "editor"}
    assert created[:6] == ("media.create", "mediahub-cli", "operator", "property", "", "9")
    assert json.loads(created[6])["uploaded_by"] == "USR-5"


def test_all_good_files_exit_zero(workdir):
    run(workdir, "db", "upgrade")
    result = run(workdir, "ingest", str(CORPUS_DIR / "images/good/jpeg_hopper.jpg"), "--entity", "user:USR-123",
                 "--field", "avatar")
    assert result.returncode == 0, result.stderr
    assert "stored" in result.stderr


def test_verify_streams_findings_as_json_lines_then_the_summary_and_repair_removes_them(workdir):
    run(workdir, "db", "upgrade")
    assert run(workdir, "ingest", str(CORPUS_DIR / "images/good/jpeg_hopper.jpg"), "--entity", "property:1",
               "--field", "gallery").returncode == 0
    strays = ["properties/photos/1/2020-01/a-stray.jpg", "properties/photos/1/2020-01/b.stray.jpg"]
    for key in strays:
        (workdir / "var" / "media" / key).parent.mkdir(parents=True, exist_ok=True)
        (workdir / "var" / "media" / key).write_bytes(b"orphan")

    found = run(workdir, "verify", "--json", "--grace-minutes", "0")
    *findings, summary = [json.loads(line) for line in found.stdout.splitlines()]
    assert found.returncode == 1
    assert findings == [{"finding": "stray", "key": key, "media_ids": []} for key in strays]
    assert (summary["stray_count"], summary["missing_count"], summary["stray"]) == (2, 0, strays)
    assert summary["objects"] == summary["keys_in_db"] + 2 and summary["resumed_after"] is None
    assert isinstance(summary["objects_per_second"], float)

    repaired = run(workdir, "verify", "--json", "--grace-minutes", "0", "--repair")
    assert repaired.returncode == 0 and json.loads(repaired.stdout.splitlines()[-1])["removed"] == 2
    clean = run(workdir, "verify", "--grace-minutes", "0", "--resume")
    assert clean.returncode == 0 and "0 stray, 0 missing" in clean.stderr and "objects/s" in clean.stderr


def test_verify_reports_staged_uploads_without_a_row_and_repair_removes_them(workdir):
    run(workdir, "db", "upgrade")
    key = f"incoming/tus/{'0' * 32}"
    staged = workdir / "var" / "staging" / key  # the default staging directory: TEMP_DIR unset
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"half an upload")

    found = run(workdir, "verify", "--json", "--grace-minutes", "0")
    *findings, summary = [json.loads(line) for line in found.stdout.splitlines()]
    assert found.returncode == 1
    assert findings == [{"finding": "stray_upload", "key": key, "media_ids": []}]
    assert (summary["stray_upload_count"], summary["stray_uploads"], summary["stray_count"]) == (1, [key], 0)

    repaired = run(workdir, "verify", "--json", "--grace-minutes", "0", "--repair")
    assert repaired.returncode == 0 and json.loads(repaired.stdout.splitlines()[-1])["uploads_removed"] == 1
    assert not staged.exists()


def test_analytics_recount_finds_the_totals_in_step_after_ingest_and_corrects_drift(workdir):
    run(workdir, "db", "upgrade")
    files = [str(CORPUS_DIR / "images/good" / name) for name in ("jpeg_hopper.jpg", "jpeg_flower.jpg")]
    assert run(workdir, "ingest", *files, "--entity", "property:1", "--field", "gallery").returncode == 0

    clean = run(workdir, "analytics", "recount", "--json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["corrected"] == {}, "ingest and its WebP jobs kept the totals in step"

    with sqlite3.connect(workdir / "var" / "mediahub.db") as connection:
        connection.execute("UPDATE media_usage SET items = items + 2 WHERE group_name = 'entity_type'")
    corrected = json.loads(run(workdir, "analytics", "recount", "--json").stdout)["corrected"]
    assert corrected["entity_type=property"]["kept"]["items"] == corrected["entity_type=property"]["counted"]["items"] + 2
    assert corrected["entity_type=property"]["counted"]["items"] == 2
    assert json.loads(run(workdir, "analytics", "recount", "--json").stdout)["corrected"] == {}


def test_a_bad_setting_stops_the_command_naming_it(workdir):
    result = run(workdir, "db", "upgrade", env={"MAX_IMAGE_SIZE": "huge"})
    assert result.returncode == 2
    assert "MAX_IMAGE_SIZE" in result.stderr


def test_a_watermark_for_no_entity_field_stops_the_command_naming_the_setting(workdir):
    mark = mark_file(workdir)
    result = run(workdir, "db", "upgrade", env={"WATERMARKS": json.dumps({"builder.photos": {"image": str(mark)}})})
    assert result.returncode == 2
    assert "WATERMARKS: no such entity field 'builder.photos'" in result.stderr


def test_unknown_entity_is_refused(workdir):
    result = run(workdir, "ingest", str(CORPUS_DIR / "images/good/jpeg_hopper.jpg"), "--entity", "castle:1",
                 "--field", "photos")
    assert result.returncode == 2 and "unknown_entity_type" in result.stderr


def test_a_field_is_named_by_its_route_word_too_and_nested_entities_by_their_path(workdir):
    run(workdir, "db", "upgrade")
    photo = str(CORPUS_DIR / "images/good/jpeg_hopper.jpg")
    result = run(workdir, "ingest", photo, "--entity", "property:123", "--field", "photos", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["item"]["entity_field"] == "gallery"

    nested = run(workdir, "ingest", photo, "--entity", "community:C1/amenity:AM-1", "--field", "photos", "--json")
    assert nested.returncode == 0, nested.stderr
    assert json.loads(nested.stdout)["item"]["original_key"].startswith("amenities/photos/C1/AM-1/")

    unknown = run(workdir, "ingest", photo, "--entity", "property:123", "--field", "pictures")
    assert unknown.returncode == 2 and "unknown_field" in unknown.stderr and "gallery, photos" in unknown.stderr
    orphan = run(workdir, "ingest", photo, "--entity", "amenity:AM-1", "--field", "photos")
    assert orphan.returncode == 2 and "parent_required" in orphan.stderr


@pytest.mark.s3
def test_sync_public_opens_approved_objects_stored_before_and_closes_the_rest(workdir, s3_server):
    """Objects stored private (as before readability was managed) become readable exactly for approved items."""
    storage = make_s3_storage(s3_server, public_bucket=True)
    bucket = storage.bucket
    env = {"STORAGE_TYPE": "s3", "S3_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "S3_BUCKET_NAME": bucket,
           "S3_PUBLIC_BASE_URL": f"{s3_server}/{bucket}", "MAKE_WEBP": "false"}
    storage.check()
    assert run(workdir, "db", "upgrade", env=env).returncode == 0
    image = str(CORPUS_DIR / "images/good/jpeg_hopper.jpg")
    items = {}
    for verified in (True, False):
        flags = ["--verified"] if verified else []
        result = run(workdir, "ingest", image, "--entity", f"user:USR-{int(verified)}", "--field", "avatar",
                     "--uploader", f"USR-{int(verified)}", "--json", *flags, env=env)
        assert result.returncode == 0, result.stderr
        items[verified] = json.loads(result.stdout.splitlines()[0])["item"]
    approved_keys = [items[True]["original_key"], *items[True]["variants"].values()]
    pending_keys = [items[False]["original_key"], *items[False]["variants"].values()]
    storage.set_public(approved_keys + pending_keys, False)  # as objects stored before this version were
    storage.set_public(pending_keys[:1], True)  # and one a hand-made mistake

    result = run(workdir, "sync-public", env=env)

    assert result.returncode == 0, result.stderr
    assert "1 items public, 1 private" in result.stderr  # the console writes to stderr
    url = f"{s3_server}/{bucket}/"
    assert {anonymous_get(url + key)[0] for key in approved_keys} == {200}
    assert {anonymous_get(url + key)[0] for key in pending_keys} == {403}
