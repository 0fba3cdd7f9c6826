"""An upload whose variants are left to a job says so, serves nothing it does not have, and becomes ready."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Tokens, upload
from tests.support.corpus import CORPUS_DIR

PNG = CORPUS_DIR / "images/good/png_rgba_transparent.png"


def test_a_png_upload_answers_pending_then_becomes_ready(app_factory: AppFactory, tokens: Tokens) -> None:
    app = app_factory(defer_slow_variants=True, make_webp=True)
    owner = tokens.header("USR-1", verified=True)
    with TestClient(app) as client:
        reply = upload(client, "/v1/media/users/USR-1/avatar", owner, file=PNG)
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["pending"] == ["variants"] and body["processing_status"] in ("queued", "processing", "ready")
        if body["processing_status"] != "ready":  # the in-process runner may be done already
            assert body["variants"] == {}, "nothing pending is listed as if it existed"
            assert "pending" not in body["metadata"]
        deadline = time.monotonic() + 60
        while True:
            item = client.get(f"/v1/media/{body['id']}", headers=owner).json()
            if item["processing_status"] == "ready" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert item["processing_status"] == "ready" and item["pending"] == []
        assert set(item["variants"]) == {"thumbnail", "small"}
        assert {fmt for formats in item["variants"].values() for fmt in formats} == {"png", "webp"}
        small = client.get(item["variants"]["small"]["png"]["url"], headers=owner)
        assert small.status_code == 200 and small.content.startswith(b"\x89PNG")


def test_a_heic_has_no_original_url_until_its_re_encode_is_stored(app_factory: AppFactory, tokens: Tokens) -> None:
    app = app_factory(defer_slow_variants=True)
    owner = tokens.header("USR-1", verified=True)
    with TestClient(app) as client:
        reply = upload(client, "/v1/media/users/USR-1/avatar", owner,
                       file=CORPUS_DIR / "images/good/heic_iphone13_3024x4032.heic")
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["url"] is None and body["metadata"]["original"] == "raw" and body["pending"] == ["variants"]
        deadline = time.monotonic() + 120
        while (item := client.get(f"/v1/media/{body['id']}", headers=owner).json())["processing_status"] != "ready":
            assert time.monotonic() < deadline, item
            time.sleep(0.1)
        assert item["url"] and item["content_type"] == "image/jpeg" and item["metadata"]["original"] == "reencoded"
        original = client.get(item["url"], headers=owner)
        assert original.status_code == 200 and original.content[:2] == b"\xff\xd8"
