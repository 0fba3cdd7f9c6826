"""Who may do what, over HTTP: nested entities, one ownership rule, duplicate answers, gallery limits, field words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mediahub.db.models import MediaItem
from mediahub.db.repositories import MediaRepository
from mediahub.db.session import Database
from mediahub.entities import KINDS, Target
from mediahub.errors import InvalidInput
from tests.api.conftest import HOPPER, AppFactory, Tokens, add_member, assert_problem, make_settings, upload
from tests.db.test_repositories import make_item
from tests.support.audit_guard import unaudited
from tests.support.corpus import CORPUS_DIR

OTHER_PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"


def amenity(community: str, amenity_id: str = "AM-1") -> str:
    return f"/v1/media/communities/{community}/amenities/{amenity_id}/photos"


def approve(client: TestClient, tokens: Tokens, media_id: int) -> None:
    response = client.post(f"/v1/media/{media_id}/moderation", headers=tokens.moderator(), json={"status": "approved"})
    assert response.status_code == 200, response.text


def listing(client: TestClient, headers: dict[str, str], entity: str, **params: Any) -> list[int]:
    response = client.get(f"/v1/media/entity/{entity}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


# ---------------------------------------------------------------------------- 1: nested entities


@pytest.fixture
def two_communities(client: TestClient, tokens: Tokens) -> tuple[dict[str, str], dict[str, str]]:
    """USR-C1 owns community C1, USR-C2 owns community C2."""
    add_member(client, tokens, "community:C1", "USR-C1")
    add_member(client, tokens, "community:C2", "USR-C2")
    return tokens.header("USR-C1"), tokens.header("USR-C2")


def test_another_communitys_owner_cannot_touch_its_amenity(client: TestClient, tokens: Tokens,
                                                           two_communities) -> None:
    c1, c2 = two_communities
    assert_problem(upload(client, amenity("C1"), c2), 403, "upload_forbidden")
    assert_problem(upload(client, amenity("C1"), c2, data={"is_primary": "true"}), 403, "upload_forbidden")

    mine = upload(client, amenity("C1"), c1, data={"is_primary": "true"})
    assert mine.status_code == 201, mine.text
    mine = mine.json()
    assert (mine["entity_type"], mine["parent_id"], mine["entity_id"]) == ("amenity", "C1", "AM-1")
    assert "/amenities/photos/C1/AM-1/" in mine["url"]  # its own keys too
    approve(client, tokens, mine["id"])

    # C2's owner sees the approved item but may neither change, demote, reorder nor delete it.
    assert_problem(client.patch(f"/v1/media/{mine['id']}", headers=c2, json={"is_primary": False}), 403)
    assert_problem(client.patch(f"/v1/media/{mine['id']}", headers=c2, json={"caption": "mine now"}), 403)
    assert_problem(client.delete(f"/v1/media/{mine['id']}", headers=c2), 403)
    assert_problem(client.put("/v1/media/entity/amenity/AM-1/order", headers=c2, params={"parent_id": "C1"},
                              json={"field": "photos", "ids": [mine["id"]]}), 403)
    assert client.post("/v1/media/batch/delete", headers=c2, json={"ids": [mine["id"]]}).json()["results"][0][
        "ok"] is False

    # The same amenity id under C2 is another entity: its own gallery and its own primary.
    theirs = upload(client, amenity("C2"), c2, file=OTHER_PHOTO, data={"is_primary": "true"}).json()
    assert (theirs["parent_id"], theirs["is_primary"]) == ("C2", True)
    assert listing(client, c1, "amenity/AM-1", parent_id="C1") == [mine["id"]]
    assert listing(client, c2, "amenity/AM-1", parent_id="C2") == [theirs["id"]]
    assert client.get(f"/v1/media/{mine['id']}", headers=c1).json()["is_primary"] is True

    # The real owner still manages their item.
    assert client.patch(f"/v1/media/{mine['id']}", headers=c1, json={"caption": "pool"}).status_code == 200
    assert client.delete(f"/v1/media/{mine['id']}", headers=c1).status_code == 204


def test_a_member_of_one_nested_entity_manages_only_that_one(client: TestClient, tokens: Tokens) -> None:
    response = client.put("/v1/media/entities/amenity/AM-1/members/USR-A", headers=tokens.admin(),
                          params={"parent_id": "C1"}, json={"role": "editor"})
    assert response.json() == {"entity_type": "amenity", "entity_id": "AM-1", "subject": "USR-A", "role": "editor",
                               "parent_id": "C1"}
    member = tokens.header("USR-A")
    assert upload(client, amenity("C1"), member).status_code == 201
    assert_problem(upload(client, amenity("C2"), member), 403, "upload_forbidden")
    assert_problem(upload(client, amenity("C1", "AM-2"), member), 403, "upload_forbidden")
    assert_problem(upload(client, "/v1/media/communities/C1/photos", member), 403, "upload_forbidden")
    assert_problem(client.put("/v1/media/entities/amenity/AM-1/members/USR-A", headers=tokens.admin(),
                              json={"role": "editor"}), 422, "parent_required")


def test_nested_listings_need_the_parent_and_a_community_lists_its_amenities(client: TestClient, tokens: Tokens,
                                                                            two_communities) -> None:
    c1, c2 = two_communities
    own = upload(client, "/v1/media/communities/C1/photos", c1).json()["id"]
    nested = [upload(client, amenity("C1", name), c1).json()["id"] for name in ("AM-1", "AM-2")]
    elsewhere = upload(client, amenity("C2"), c2).json()["id"]

    assert listing(client, c1, "community/C1") == [own]
    assert listing(client, c1, "community/C1", include_nested=True) == [own, *nested]
    assert listing(client, tokens.moderator(), "community/C2", include_nested=True) == [elsewhere]
    assert listing(client, tokens.anonymous(), "community/C1", include_nested=True) == []  # all pending
    approve(client, tokens, nested[1])
    assert listing(client, tokens.anonymous(), "community/C1", include_nested=True) == [nested[1]]
    assert_problem(client.get("/v1/media/entity/amenity/AM-1"), 422, "parent_required")
    assert_problem(client.get("/v1/media/entity/community/C1", params={"parent_id": "X"}), 422, "unexpected_parent")


def test_a_batch_to_a_nested_entity_names_its_parent(client: TestClient, two_communities) -> None:
    c1, c2 = two_communities

    def batch(headers: dict[str, str], **fields: str) -> Any:
        return client.post("/v1/media/batch/upload", headers=headers,
                           data={"entity_type": "amenity", "entity_id": "AM-1", "entity_field": "photos", **fields},
                           files=[("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))])

    stored = batch(c1, parent_id="C1")
    assert stored.status_code == 201, stored.text
    assert stored.json()["results"][0]["item"]["parent_id"] == "C1"
    assert_problem(batch(c2, parent_id="C1"), 403, "upload_forbidden")
    assert_problem(batch(c1), 422, "parent_required")


def test_a_nested_target_names_its_parent() -> None:
    target = Target.parse("amenity", "AM-1", "photos", "C1")
    assert (target.parent_id, target.label) == ("C1", "community:C1/amenity:AM-1:photos")
    with pytest.raises(InvalidInput) as missing:
        Target.parse("amenity", "AM-1", "photos")
    assert missing.value.code == "parent_required"
    with pytest.raises(InvalidInput) as bad:
        Target.parse("amenity", "AM-1", "photos", "../C1")
    assert bad.value.code == "invalid_entity_id"


# ---------------------------------------------------------------------------- 4: one rule


def test_a_grant_lets_its_holder_manage_what_others_uploaded(client: TestClient, tokens: Tokens) -> None:
    add_member(client, tokens, "property:P1", "USR-OWNER")
    owners = upload(client, "/v1/media/properties/P1/photos", tokens.owner()).json()
    grantee = tokens.header("USR-G", grants=("property:P1",))
    mine = upload(client, "/v1/media/properties/P1/photos", grantee, file=OTHER_PHOTO).json()

    assert client.get(f"/v1/media/{owners['id']}", headers=grantee).status_code == 200
    assert client.patch(f"/v1/media/{owners['id']}", headers=grantee, json={"is_primary": True}).status_code == 200
    order = client.put("/v1/media/entity/property/P1/order", headers=grantee,
                       json={"field": "gallery", "ids": [mine["id"], owners["id"]]})
    assert order.status_code == 200, order.text
    assert client.delete(f"/v1/media/{owners['id']}", headers=grantee).status_code == 204
    # ... and nothing of another property.
    other = tokens.header("USR-H", grants=("property:P2",))
    assert_problem(client.delete(f"/v1/media/{mine['id']}", headers=other), 404)


def test_a_parent_grant_covers_its_nested_entities_and_a_nested_grant_only_itself(client: TestClient,
                                                                                  tokens: Tokens) -> None:
    community = tokens.header("USR-G", grants=("community:C1",))
    stored = upload(client, amenity("C1"), community)
    assert stored.status_code == 201, stored.text
    assert client.delete(f"/v1/media/{stored.json()['id']}", headers=community).status_code == 204
    assert_problem(upload(client, amenity("C2"), community), 403, "upload_forbidden")

    nested = tokens.header("USR-N", grants=("communities:C1/amenities:AM-1",))  # plurals are accepted too
    assert upload(client, amenity("C1"), nested).status_code == 201
    assert_problem(upload(client, amenity("C2"), nested), 403, "upload_forbidden")
    assert_problem(upload(client, "/v1/media/communities/C1/photos", nested), 403, "upload_forbidden")
    # A nested grant without its parent names no entity: it grants nothing.
    assert_problem(upload(client, amenity("C1"), tokens.header("USR-X", grants=("amenity:AM-1",))), 403)


def test_admin_and_moderator_uploads_start_approved(client: TestClient, tokens: Tokens) -> None:
    by_admin = upload(client, "/v1/media/properties/P1/photos", tokens.admin()).json()
    assert by_admin["moderation_status"] == "approved"
    moderator = tokens.header("MOD-2", roles=("user", "moderator"), grants=("property:P1",))
    by_moderator = upload(client, "/v1/media/properties/P1/photos", moderator, file=OTHER_PHOTO).json()
    assert by_moderator["moderation_status"] == "approved"
    by_user = upload(client, "/v1/media/properties/P1/photos", tokens.header("USR-1", grants=("property:P1",)))
    assert by_user.json()["moderation_status"] == "pending"
    # A moderator is no owner: no upload without membership or grant.
    assert_problem(upload(client, "/v1/media/properties/P2/photos", tokens.moderator()), 403, "upload_forbidden")


# ---------------------------------------------------------------------------- 6: duplicate answers


@pytest.mark.parametrize("policy", ["reject", "flag"])
def test_a_duplicate_the_uploader_may_not_see_is_not_named(app_factory: AppFactory, tokens: Tokens,
                                                         policy: str) -> None:
    with TestClient(app_factory(dedup_policy=policy, dedup_scope="global")) as client:
        strangers = upload(client, "/v1/media/users/USR-S/avatar", tokens.header("USR-S")).json()
        assert strangers["moderation_status"] == "pending"

        hidden = upload(client, "/v1/media/users/USR-A/avatar", tokens.header("USR-A"))
        assert hidden.status_code == 201, hidden.text
        assert strangers["public_id"] not in hidden.text
        assert not {"duplicate_of", "duplicate_distance", "duplicate_reason"} & set(hidden.json()["metadata"])

        approve(client, tokens, strangers["id"])  # now public: naming it reveals nothing
        shown = upload(client, "/v1/media/users/USR-B/avatar", tokens.header("USR-B")).json()
        assert shown["metadata"]["duplicate_of"] == strangers["public_id"]


def test_own_duplicates_are_still_named(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(dedup_policy="reject", dedup_scope="uploader")) as client:
        headers = tokens.header("USR-1", grants=("property:P1", "property:P2"))
        first = upload(client, "/v1/media/properties/P1/photos", headers).json()
        again = upload(client, "/v1/media/properties/P1/photos", headers)
        problem = assert_problem(again, 409, "duplicate")
        assert (problem["duplicate_of"], problem["duplicate_id"]) == (first["public_id"], first["id"])
        elsewhere = upload(client, "/v1/media/properties/P2/photos", headers).json()
        assert elsewhere["metadata"]["duplicate_of"] == first["public_id"]


def test_a_refusal_over_an_unseen_item_names_nothing() -> None:
    from mediahub.dedup import policy as dedup
    from mediahub.errors import Conflict

    item = make_item(entity_type="property", entity_id="P1", public_id="SECRET")
    match = dedup.Match(item, 0, "sha256")
    entity = dedup.Scope.entity("property", "P1")
    with pytest.raises(Conflict) as refused:
        dedup.decide(match, policy="reject", entity=entity, visible=False)
    assert refused.value.code == "duplicate" and "SECRET" not in str(refused.value.as_dict())
    with pytest.raises(Conflict) as named:
        dedup.decide(match, policy="reject", entity=entity, visible=True)
    assert named.value.as_dict()["duplicate_of"] == "SECRET"


# ---------------------------------------------------------------------------- 7: gallery limits


def _fill(app_database: str, entity_id: str, count: int) -> None:
    database = Database(app_database)
    try:
        with database.session() as session:
            unaudited(session)
            repo = MediaRepository(session)
            for _ in range(count):
                repo.add(make_item(entity_type="post", entity_id=entity_id, entity_field="media"))
    finally:
        database.dispose()


def _post_count(app_database: str, entity_id: str) -> int:
    database = Database(app_database)
    try:
        with database.session() as session:
            return len(session.query(MediaItem).filter_by(entity_type="post", entity_id=entity_id).all())
    finally:
        database.dispose()


def test_a_full_gallery_refuses_uploads_single_and_batch(app_factory: AppFactory, tokens: Tokens,
                                                          tmp_path: Path) -> None:
    app = app_factory()
    url = make_settings(tmp_path).database_url
    limit = next(k for k in KINDS if k.name == "post").field("media").max_items
    headers = tokens.header("USR-1", grants=("post:P1",))
    with TestClient(app) as client:
        _fill(url, "P1", limit - 1)
        assert upload(client, "/v1/media/posts/P1/media", headers).status_code == 201
        body = assert_problem(upload(client, "/v1/media/posts/P1/media", headers, file=OTHER_PHOTO), 409,
                              "gallery_full")
        assert body["limit"] == limit
        batch = client.post("/v1/media/batch/upload", headers=headers,
                            data={"entity_type": "post", "entity_id": "P1", "entity_field": "media"},
                            files=[("files", ("a.jpg", OTHER_PHOTO.read_bytes(), "image/jpeg"))])
        assert_problem(batch, 409, "gallery_full")
        assert _post_count(url, "P1") == limit


# ---------------------------------------------------------------------------- 22: field words


def test_a_field_is_named_by_its_name_or_its_route_word(client: TestClient, tokens: Tokens) -> None:
    assert Target.parse("property", "P1", "photos").field.name == "gallery"
    headers = tokens.header("USR-1", grants=("property:P1",))
    batch = client.post("/v1/media/batch/upload", headers=headers,
                        data={"entity_type": "properties", "entity_id": "P1", "entity_field": "photos"},
                        files=[("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))])
    assert batch.status_code == 201, batch.text
    stored = batch.json()["results"][0]["item"]
    assert stored["entity_field"] == "gallery"
    for word in ("photos", "gallery"):
        assert listing(client, headers, "property/P1", field=word) == [stored["id"]]
    order = client.put("/v1/media/entity/property/P1/order", headers=headers,
                       json={"field": "photos", "ids": [stored["id"]]})
    assert order.status_code == 200, order.text

    body = assert_problem(client.get("/v1/media/entity/property/P1", params={"field": "pictures"}), 422,
                          "unknown_field")
    assert body["allowed"] == ["gallery", "photos"] and "gallery" in body["detail"]
    wrong = client.post("/v1/media/batch/upload", headers=headers,
                        data={"entity_type": "property", "entity_id": "P1", "entity_field": "pictures"},
                        files=[("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))])
    assert assert_problem(wrong, 422, "unknown_field")["allowed"] == ["gallery", "photos"]


def test_no_field_word_names_two_fields_of_a_kind() -> None:
    for kind in KINDS:
        words = [word for spec in kind.fields for word in {spec.name, spec.route}]
        assert len(words) == len(set(words)), kind.name
