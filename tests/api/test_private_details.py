"""Who uploaded an item, its original filename and its EXIF camera and time are private: shown to
the uploader, the entity's owners and moderators, never to anonymous callers or strangers, on
every endpoint that returns items."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Tokens, add_member, upload
from tests.support.corpus import CORPUS_DIR

CAMERA_PHOTO = CORPUS_DIR / "images/good/gps_nikon_DSCN0010.jpg"  # EXIF make NIKON, a capture time, GPS
FILENAME = "holiday-at-grandmas-2024.jpg"
GALLERY = "/v1/media/properties/123/photos"
UPLOADER = "USR-UPLOADER"  # uploads through a token grant; not a member


def _uploader(tokens: Tokens, **kwargs: Any) -> dict[str, str]:
    return tokens.header(UPLOADER, grants=("property:123",), **kwargs)


def _is_private(item: dict[str, Any]) -> bool:
    """True when the answer carries the private details, False when it carries none of them."""
    shown = [item["uploaded_by"] == UPLOADER, item["metadata"].get("filename") == FILENAME,
             item["metadata"].get("exif", {}).get("make") == "NIKON"]
    if any(shown) and not all(shown):
        pytest.fail(f"some private details shown, some not: {item['uploaded_by']!r} {item['metadata']}")
    if not any(shown):
        assert item["uploaded_by"] is None
        assert not {"filename", "exif", "gps"} & item["metadata"].keys(), item["metadata"]
    return all(shown)


@pytest.fixture
def world(app_factory: AppFactory, tokens: Tokens):
    with TestClient(app_factory(strip_gps=False)) as client:
        add_member(client, tokens, "property:123", "USR-OWNER")
        items = [upload(client, GALLERY, _uploader(tokens), file=CAMERA_PHOTO, filename=FILENAME).json()
                 for _ in range(2)]
        for item in items:
            assert _is_private(item), "the uploader sees their own upload's details"
            decided = client.post(f"/v1/media/{item['id']}/moderation", headers=tokens.moderator(),
                                  json={"status": "approved"})
            assert decided.status_code == 200 and _is_private(decided.json()), "moderators see who uploaded what"
        yield client, items


CALLERS = {
    "anonymous": (lambda tokens: {}, False),
    "stranger": (lambda tokens: tokens.user(), False),
    "uploader": (_uploader, True),
    "owner": (lambda tokens: tokens.owner(), True),
    "moderator": (lambda tokens: tokens.moderator(), True),
}


@pytest.mark.parametrize("caller", CALLERS)
def test_each_endpoint_shows_private_details_to_uploader_owner_and_moderator_only(world, tokens: Tokens,
                                                                                  caller: str) -> None:
    client, (first, second) = world
    headers_of, private = CALLERS[caller]
    headers = headers_of(tokens)
    answers = {
        "get": [client.get(f"/v1/media/{first['id']}", headers=headers).json()],
        "list": client.get("/v1/media/entity/property/123", headers=headers).json()["items"],
        "similar": [match["item"] for match in
                    client.get(f"/v1/media/{first['id']}/similar", headers=headers).json()["items"]],
    }
    assert len(answers["list"]) == 2 and [i["id"] for i in answers["similar"]] == [second["id"]]
    for endpoint, items in answers.items():
        for item in items:
            assert _is_private(item) is private, (endpoint, item["uploaded_by"], item["metadata"])
    # The public-id route is anonymous by nature: nobody's details, whoever asks.
    public = client.get(f"/v1/media/public/{first['public_id']}", headers=headers).json()
    assert _is_private(public) is False


def test_gps_stays_with_the_uploader_and_owners(world, tokens: Tokens) -> None:
    client, (first, _) = world
    for headers, sees in ((_uploader(tokens), True), (tokens.owner(), True), (tokens.moderator(), False),
                          (tokens.user(), False), ({}, False)):
        assert ("gps" in client.get(f"/v1/media/{first['id']}", headers=headers).json()["metadata"]) is sees


def test_batch_upload_and_the_moderation_queue(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory()) as client:
        batch = client.post("/v1/media/batch/upload", headers=_uploader(tokens),
                            files=[("files", (FILENAME, CAMERA_PHOTO.read_bytes(), "image/jpeg"))],
                            data={"entity_type": "property", "entity_id": "123", "entity_field": "gallery"})
        assert batch.status_code == 201, batch.text
        assert _is_private(batch.json()["results"][0]["item"])
        queue = client.get("/v1/media/moderation/queue", headers=tokens.moderator()).json()["items"]
        assert len(queue) == 1 and _is_private(queue[0])
        # A pending item is no stranger's to see at all; once approved, only its public part.
        item_id = queue[0]["id"]
        assert client.get(f"/v1/media/{item_id}", headers=tokens.user()).status_code == 404
        client.post(f"/v1/media/{item_id}/moderation", headers=tokens.moderator(), json={"status": "approved"})
        assert _is_private(client.get(f"/v1/media/{item_id}", headers=tokens.user()).json()) is False
