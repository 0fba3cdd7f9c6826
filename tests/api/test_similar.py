"""Duplicates over HTTP: refused within an entity (409), reported across entities by /similar."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import CORPUS_DIR, assert_problem, upload

HOPPER_PNG = CORPUS_DIR / "images/good/png_hopper.png"  # the same picture as the JPEG hopper
FLOWER = CORPUS_DIR / "images/good/jpeg_flower.jpg"  # a different picture


def test_same_picture_twice_on_one_listing_is_a_409_with_the_original(app_factory, tokens):
    with TestClient(app_factory(dedup_policy="reject")) as client:
        admin = tokens.admin()
        first = upload(client, "/v1/media/properties/123/photos", admin)
        assert first.status_code == 201, first.text
        again = upload(client, "/v1/media/properties/123/photos", admin, file=HOPPER_PNG)
        body = assert_problem(again, 409, "duplicate")
        assert body["duplicate_of"] == first.json()["public_id"]
        forced = upload(client, "/v1/media/properties/123/photos", admin, file=HOPPER_PNG,
                        data={"allow_duplicate": "true"})
        assert forced.status_code == 201, forced.text


def test_similar_lists_cross_entity_duplicates_nearest_first_and_only_visible_ones(app_factory, tokens):
    with TestClient(app_factory(dedup_policy="reject", auto_approve_verified=True)) as client:
        verified = tokens.header("ADM-1", roles=("user", "admin"), verified=True)
        original = upload(client, "/v1/media/properties/1/photos", verified).json()
        copy = upload(client, "/v1/media/properties/2/photos", verified, file=HOPPER_PNG)
        assert copy.status_code == 201, "a duplicate on another listing is stored, not refused"
        upload(client, "/v1/media/properties/3/photos", verified, file=FLOWER)
        hidden = upload(client, "/v1/media/properties/4/photos",  # pending: not public
                        tokens.header("USR-4", grants=("property:4",)))
        assert hidden.status_code == 201

        response = client.get(f"/v1/media/{original['id']}/similar")
        assert response.status_code == 200, response.text
        found = response.json()["items"]
        assert [entry["item"]["id"] for entry in found] == [copy.json()["id"]]
        assert found[0]["distance"] <= 2

        as_admin = client.get(f"/v1/media/{original['id']}/similar", headers=tokens.admin()).json()["items"]
        assert {entry["item"]["id"] for entry in as_admin} == {copy.json()["id"], hidden.json()["id"]}

        in_entity = client.get(f"/v1/media/{original['id']}/similar", params={"scope": "entity"}).json()
        assert in_entity["items"] == []


def test_similar_of_an_invisible_item_is_404(app_factory, tokens):
    with TestClient(app_factory()) as client:
        pending = upload(client, "/v1/media/properties/9/photos", tokens.header("USR-9", grants=("property:9",))).json()
        assert_problem(client.get(f"/v1/media/{pending['id']}/similar"), 404)
        assert_problem(client.get(f"/v1/media/{pending['id']}/similar", params={"threshold": 16}), 422)


def test_a_short_page_does_not_betray_a_closer_hidden_item(app_factory, tokens):
    """The hidden exact copy is the closest match: a page of one must still show the visible copy."""
    with TestClient(app_factory(dedup_policy="allow")) as client:
        admin = tokens.admin()
        original = upload(client, "/v1/media/properties/1/photos", admin).json()
        hidden = upload(client, "/v1/media/properties/4/photos", tokens.header("USR-4", grants=("property:4",)))
        assert hidden.json()["moderation_status"] == "pending"
        visible = upload(client, "/v1/media/properties/2/photos", admin, file=HOPPER_PNG).json()

        page = client.get(f"/v1/media/{original['id']}/similar", params={"limit": 1}).json()["items"]

        assert [entry["item"]["id"] for entry in page] == [visible["id"]]


def test_the_uploader_scope_is_only_for_those_who_see_the_uploader(app_factory, tokens):
    with TestClient(app_factory(dedup_policy="allow")) as client:
        admin = tokens.admin()
        original = upload(client, "/v1/media/properties/1/photos", admin).json()
        upload(client, "/v1/media/properties/2/photos", admin, file=HOPPER_PNG)
        for caller in ({}, tokens.header("USR-STRANGER")):
            answer = client.get(f"/v1/media/{original['id']}/similar", params={"scope": "uploader"}, headers=caller)
            assert_problem(answer, 403, "scope_forbidden")
        as_moderator = client.get(f"/v1/media/{original['id']}/similar", params={"scope": "uploader"},
                                  headers=tokens.header("MOD-1", roles=("moderator",)))
        assert len(as_moderator.json()["items"]) == 1
