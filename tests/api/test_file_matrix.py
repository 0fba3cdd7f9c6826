"""Every stored object of an item, in every moderation state, for every kind of caller.

An item's objects are its original, the variants the upload made, and what jobs
derive later (WebP renditions of an image, the web MP4 of a video): each must
follow the item's status the same way, unsigned and signed, with the matching
Cache-Control. One row of expectations per (status, caller).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mediahub.db.models import MediaItem
from mediahub.storage.signing import sign
from tests.api.conftest import HOPPER, JWT_SECRET, AppFactory, Tokens, add_member, upload
from tests.support.corpus import CORPUS_DIR

VIDEO = CORPUS_DIR / "video/mp4_h264_example_640x480.mp4"
PUBLIC = "public, max-age=3600"
PRIVATE = "private, no-store"
STATUSES = ("pending", "approved", "rejected", "flagged")
OWNER = "USR-OWNER"


def _unsigned(tokens: Tokens, who: str) -> Callable[[str], tuple[str, dict[str, str]]]:
    headers = {"anonymous": {}, "stranger": tokens.user(), "owner": tokens.header(OWNER),
               "moderator": tokens.moderator()}[who]
    return lambda key: (f"/v1/media/files/{key}", headers)


def _signed(key: str) -> tuple[str, dict[str, str]]:
    expires = int(time.time()) + 600
    return f"/v1/media/files/{key}?expires={expires}&signature={sign(key, expires, JWT_SECRET.encode())}", {}


CALLERS = ("anonymous", "stranger", "owner", "moderator", "signed")


def expected(status: str, caller: str) -> tuple[int, str | None]:
    """(HTTP status, Cache-Control) the file route must answer."""
    if caller == "signed":
        # A signed URL is one caller's capability, whatever the status, until a moderator rejects
        # the item: then only the bearers who may see it still read its bytes.
        return (404, None) if status == "rejected" else (200, PRIVATE)
    if status == "approved":
        return 200, PUBLIC
    if caller in ("owner", "moderator"):
        return 200, PRIVATE
    return 404, None


def _item_with_all_objects(client: TestClient, tokens: Tokens, media: str) -> MediaItem:
    """A pending item by OWNER whose jobs have run: every object it will ever have exists."""
    if media == "image":
        response = upload(client, f"/v1/media/users/{OWNER}/avatar", tokens.header(OWNER), HOPPER)
    else:
        add_member(client, tokens, "property:PROP-M", OWNER)
        response = upload(client, "/v1/media/properties/PROP-M/photos", tokens.header(OWNER), VIDEO)
    assert response.status_code == 201, response.text
    assert response.json()["moderation_status"] == "pending"
    runtime = client.app.state.runtime
    assert runtime.wait_for_jobs([response.json()["id"]], timeout=120)
    with runtime.database.session() as session:
        return session.get(MediaItem, response.json()["id"])


def _derived_formats(item: MediaItem) -> set[tuple[str, str]]:
    return {(v.name, v.format) for v in item.variants}


@pytest.mark.parametrize("media", ["image", "video"])
@pytest.mark.parametrize("status", STATUSES)
def test_every_object_follows_its_items_status(app_factory: AppFactory, tokens: Tokens, media: str,
                                               status: str) -> None:
    app = app_factory(make_webp=True, video_transcode=True)
    with TestClient(app) as client:
        item = _item_with_all_objects(client, tokens, media)
        derived = _derived_formats(item)
        # The matrix covers what the jobs add later, not only what the upload stored.
        assert ("small", "webp") in derived if media == "image" else ("web", "mp4") in derived, derived
        if status != "pending":
            decided = client.post(f"/v1/media/{item.id}/moderation", headers=tokens.moderator(),
                                  json={"status": status})
            assert decided.json()["moderation_status"] == status, decided.text
        wrong: list[str] = []
        for caller in CALLERS:
            url_of = _signed if caller == "signed" else _unsigned(tokens, caller)
            want_status, want_cache = expected(status, caller)
            for key in item.keys():
                path, headers = url_of(key)
                got = client.get(path, headers=headers)
                got_cache = got.headers.get("cache-control") if got.status_code == 200 else None
                if (got.status_code, got_cache) != (want_status, want_cache):
                    wrong.append(f"{caller} {Path(key).name}: {got.status_code} {got_cache!r}, "
                                 f"expected {want_status} {want_cache!r}")
                elif want_status == 404:
                    assert got.json()["code"] == "file_not_found"
        assert not wrong, "\n".join(wrong)
