"""The three seed examples, verbatim, against a real uvicorn with real clients (curl, requests)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.api.conftest import LiveServer, Tokens
from tests.support.corpus import CORPUS_DIR, manifest

PHOTO = "images/good/gps_nikon_DSCN0010.jpg"  # camera JPEG with GPS, 640x480
AVATAR = "images/good/orient_landscape_6.jpg"  # 1800x1200 stored, EXIF 6: displayed 1200x1800
BATCH = ("images/good/jpeg_flower.jpg", "images/good/jpeg_progressive_peppers.jpg")


def _entry(path: str) -> dict:
    return next(entry for entry in manifest()["files"] if entry["path"] == path)


def _check_item(item: dict, corpus_path: str, base_url: str) -> None:
    """Displayed size from the manifest; the URL serves exactly byte_size bytes of the row's type."""
    entry = _entry(corpus_path)
    assert (item["width"], item["height"]) == (entry["expected_display_width"], entry["expected_display_height"])
    assert item["url"].startswith(base_url + "/v1/media/files/")
    served = requests.get(item["url"], timeout=30)
    assert served.status_code == 200
    assert len(served.content) == item["byte_size"]
    assert served.headers["content-type"] == item["content_type"]
    for formats in item["variants"].values():
        for variant in formats.values():
            assert requests.get(variant["url"], timeout=30).headers["content-length"] == str(variant["size"])


@pytest.mark.skipif(shutil.which("curl") is None, reason="the curl binary is not installed")
def test_curl_community_photo(live_server: LiveServer, tokens: Tokens, tmp_path: Path) -> None:
    shutil.copy(CORPUS_DIR / PHOTO, tmp_path / "photo.jpg")
    token = tokens.mint("USR-7", grants=("community:123",))
    command = (
        f'curl -s -X POST "http://127.0.0.1:{live_server.port}/v1/media/communities/123/photos" '
        f'-H "Authorization: Bearer {token}" -F "file=@photo.jpg" -F "is_primary=true"'
    )
    done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=True)
    item = json.loads(done.stdout)
    assert (item["entity_type"], item["entity_id"], item["entity_field"]) == ("community", "123", "photos")
    assert item["is_primary"] is True
    assert item["moderation_status"] == "pending"  # unverified uploader
    assert item["metadata"]["filename"] == "photo.jpg"
    assert "gps" not in item["metadata"]  # stripped at ingest (STRIP_GPS)
    _check_item(item, PHOTO, live_server.url)


def test_requests_user_avatar(live_server: LiveServer, tokens: Tokens) -> None:
    headers = tokens.header("1", verified=True)
    with open(CORPUS_DIR / AVATAR, "rb") as avatar:  # the seed's open("avatar.jpg", "rb")
        response = requests.post(
            f"{live_server.url}/v1/media/users/1/avatar",
            headers=headers,
            files={"file": avatar},
            data={"alt_text": "My profile photo"},
            timeout=120,
        )
    assert response.status_code == 201, response.text
    item = response.json()
    assert item["alt_text"] == "My profile photo"
    assert item["is_primary"] is True  # single-slot field
    assert item["moderation_status"] == "approved"  # verified uploader, AUTO_APPROVE_VERIFIED
    assert "signature=" not in item["url"]  # approved local items use the unsigned file route
    _check_item(item, AVATAR, live_server.url)


def test_requests_batch_upload(live_server: LiveServer, tokens: Tokens) -> None:
    headers = tokens.header("USR-9", grants=("property:123",))
    with open(CORPUS_DIR / BATCH[0], "rb") as f1, open(CORPUS_DIR / BATCH[1], "rb") as f2:
        response = requests.post(
            f"{live_server.url}/v1/media/batch/upload",
            headers=headers,
            files=[("files", f1), ("files", f2)],
            data={"entity_type": "property", "entity_id": 123, "entity_field": "gallery"},
            timeout=120,
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["stored"], body["failed"]) == (2, 0)
    for result, corpus_path in zip(body["results"], BATCH, strict=True):
        assert result["ok"] is True
        item = result["item"]
        assert (item["entity_type"], item["entity_id"], item["entity_field"]) == ("property", "123", "gallery")
        assert result["filename"] == Path(corpus_path).name
        _check_item(item, corpus_path, live_server.url)
    assert [r["item"]["position"] for r in body["results"]] == [0, 1]
