"""The list API's cursor (`after` / `next`), partial reorders, and one action on many items (POST /v1/media/batch)."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Tokens, add_member, assert_problem, upload

GALLERY = "/v1/media/properties/123/photos"
LISTING = "/v1/media/entity/property/123"


@pytest.fixture
def owner(client: TestClient, tokens: Tokens) -> dict[str, str]:
    add_member(client, tokens, "property:123", "USR-OWNER")
    return tokens.owner()


def _items(client: TestClient, headers: dict[str, str], count: int) -> list[int]:
    ids = []
    for _ in range(count):
        answer = upload(client, GALLERY, headers)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def _cursor(key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def test_pages_follow_next_until_it_is_null(client: TestClient, owner: dict[str, str]) -> None:
    ids = _items(client, owner, 5)
    seen, after, pages = [], None, 0
    while True:
        page = client.get(LISTING, headers=owner, params={"limit": 2, **({"after": after} if after else {})}).json()
        assert page["total"] == 5 and page["offset"] == 0
        seen += [item["id"] for item in page["items"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert (seen, pages) == (ids, 3)
    # A page that ends exactly at the last item has no next.
    assert client.get(LISTING, headers=owner, params={"limit": 5}).json()["next"] is None
    # Offsets still work, and answer a cursor for the page after them.
    by_offset = client.get(LISTING, headers=owner, params={"offset": 2, "limit": 2}).json()
    assert [item["id"] for item in by_offset["items"]] == ids[2:4]
    rest = client.get(LISTING, headers=owner, params={"after": by_offset["next"]}).json()
    assert [item["id"] for item in rest["items"]] == ids[4:]


def test_a_cursor_pages_what_the_caller_may_see(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    ids = _items(client, owner, 4)
    for media_id in ids[::2]:
        client.post(f"/v1/media/{media_id}/moderation", headers=tokens.moderator(), json={"status": "approved"})
    first = client.get(LISTING, params={"limit": 1}).json()
    assert [item["id"] for item in first["items"]] == [ids[0]] and first["total"] == 2
    second = client.get(LISTING, params={"limit": 1, "after": first["next"]}).json()
    assert [item["id"] for item in second["items"]] == [ids[2]] and second["next"] is None


def test_a_cursor_survives_items_added_and_removed_before_it(client: TestClient, owner: dict[str, str]) -> None:
    ids = _items(client, owner, 4)
    first = client.get(LISTING, headers=owner, params={"limit": 2}).json()
    assert client.delete(f"/v1/media/{ids[0]}", headers=owner).status_code == 204
    later = _items(client, owner, 1)
    rest = client.get(LISTING, headers=owner, params={"after": first["next"]}).json()
    assert [item["id"] for item in rest["items"]] == ids[2:] + later


@pytest.mark.parametrize("cursor", [
    "x", "%%%", "é", _cursor(["gallery", 1]), _cursor(["gallery", "1", 2]), _cursor(["gallery", 1.5, 2]),
    _cursor(["gallery", 2**40, 2]), _cursor(["gallery", 1, -5]), _cursor(["gallery", 1, 2**64]),
    _cursor(["g" * 40, 1, 2]), _cursor({"field": "gallery"}), _cursor(["gallery", True, 2]), "[" * 150,
])
def test_a_malformed_cursor_is_422_invalid_cursor(client: TestClient, cursor: str) -> None:
    assert_problem(client.get(LISTING, params={"after": cursor}), 422, "invalid_cursor")
    assert_problem(client.get(LISTING, params={"after": cursor, "field": "gallery"}), 422, "invalid_cursor")


def test_a_cursor_too_long_is_a_validation_error(client: TestClient) -> None:
    assert_problem(client.get(LISTING, params={"after": "A" * 201}), 422, "validation_error")


def test_a_cursor_does_not_mix_with_an_offset_nested_listings_or_another_field(
        client: TestClient, owner: dict[str, str]) -> None:
    _items(client, owner, 2)
    cursor = client.get(LISTING, headers=owner, params={"limit": 1}).json()["next"]
    assert_problem(client.get(LISTING, params={"after": cursor, "offset": 1}), 422, "cursor_with_offset")
    assert_problem(client.get("/v1/media/entity/community/C1", params={"after": cursor, "include_nested": True}),
                   422, "cursor_unsupported")
    assert client.get("/v1/media/entity/community/C1", params={"include_nested": True}).json()["next"] is None
    assert_problem(client.get("/v1/media/entity/builder/B1", params={"after": cursor, "field": "logo"}),
                   422, "invalid_cursor")


def test_a_partial_reorder_keeps_the_items_it_does_not_name(client: TestClient, owner: dict[str, str]) -> None:
    a, b, c, d = _items(client, owner, 4)
    answer = client.put(f"{LISTING}/order", headers=owner, json={"field": "gallery", "ids": [b, a], "partial": True})
    assert answer.status_code == 200, answer.text
    assert [(item["id"], item["position"]) for item in answer.json()["items"]] == [(b, 0), (a, 1)]
    listed = client.get(LISTING, headers=owner).json()["items"]
    assert [item["id"] for item in listed] == [b, a, c, d]
    whole = client.put(f"{LISTING}/order", headers=owner, json={"field": "gallery", "ids": [b, a]})
    assert_problem(whole, 409, "order_mismatch")
    repeated = client.put(f"{LISTING}/order", headers=owner, json={"field": "gallery", "ids": [b, b], "partial": True})
    assert_problem(repeated, 409, "order_mismatch")


def test_batch_moderation_answers_per_item(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    a, b = _items(client, owner, 2)
    answer = client.post("/v1/media/batch", headers=tokens.moderator(),
                         json={"action": "approve", "ids": [a, 999_999, b]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["action"], body["succeeded"], body["failed"]) == ("approve", 2, 1)
    assert [(r["id"], r["ok"]) for r in body["results"]] == [(a, True), (999_999, False), (b, True)]
    assert body["results"][0]["item"]["moderation_status"] == "approved"
    assert body["results"][1]["error"]["code"] == "media_not_found"
    rejected = client.post("/v1/media/batch", headers=tokens.moderator(),
                           json={"action": "reject", "ids": [a], "reason": "a licence plate"}).json()
    assert rejected["results"][0]["item"]["moderation_reason"] == "a licence plate", rejected
    assert client.get(f"/v1/media/{a}", headers=owner).json()["moderation_status"] == "rejected"
    # The owner is no moderator: each item says so, none changes.
    refused = client.post("/v1/media/batch", headers=owner, json={"action": "approve", "ids": [a]}).json()
    assert refused["results"][0]["error"]["code"] == "moderator_required"


def test_batch_delete_tag_and_primary(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    a, b, c = _items(client, owner, 3)
    others = tokens.header("USR-ELSE", grants=("property:999",))
    [foreign] = [upload(client, "/v1/media/properties/999/photos", others).json()["id"]]
    tagged = client.post("/v1/media/batch", headers=owner,
                         json={"action": "tag", "ids": [a, foreign], "tags": ["pool", "pool", "dusk"]}).json()
    assert tagged["results"][0]["item"]["tags"] == ["pool", "dusk"]
    assert tagged["results"][1]["error"]["code"] == "media_not_found"  # pending, and not theirs: unseen
    again = client.post("/v1/media/batch", headers=owner, json={"action": "tag", "ids": [a], "tags": "dusk,roof"})
    assert again.json()["results"][0]["item"]["tags"] == ["pool", "dusk", "roof"]
    primary = client.post("/v1/media/batch", headers=owner, json={"action": "set_primary", "ids": [c]}).json()
    assert primary["results"][0]["ok"]
    assert [item["id"] for item in client.get(LISTING, headers=owner).json()["items"]] == [c, a, b]
    deleted = client.post("/v1/media/batch", headers=owner, json={"action": "delete", "ids": [b, b]}).json()
    assert [(r["ok"], r["error"] and r["error"]["code"]) for r in deleted["results"]] == [
        (True, None), (False, "media_not_found")]
    assert deleted["results"][0]["item"] is None
    # The older endpoint still deletes.
    old = client.post("/v1/media/batch/delete", headers=owner, json={"ids": [a]}).json()
    assert old["results"] == [{"id": a, "ok": True, "error": None}]


def test_batch_tags_stop_at_the_limit(client: TestClient, owner: dict[str, str]) -> None:
    [a] = _items(client, owner, 1)
    for start in (0, 30):
        tags = [f"t{n}" for n in range(start, start + 30)]
        answer = client.post("/v1/media/batch", headers=owner, json={"action": "tag", "ids": [a], "tags": tags})
    result = answer.json()["results"][0]
    assert result["error"]["code"] == "too_many_tags"
    assert len(client.get(f"/v1/media/{a}", headers=owner).json()["tags"]) == 30


@pytest.mark.parametrize("body", [
    {"action": "approve", "ids": list(range(1, 102))},
    {"action": "approve", "ids": []},
    {"action": "reject", "ids": [1]},
    {"action": "reject", "ids": [1], "reason": "   "},
    {"action": "tag", "ids": [1]},
    {"action": "tag", "ids": [1], "tags": ""},
    {"action": "launch", "ids": [1]},
    {"action": "approve", "ids": [0]},
    {"action": "approve", "ids": [2**63]},
    {"action": "approve", "ids": [1], "extra": True},
    {"action": "reject", "ids": [1], "reason": "x" * 501},
    {"action": "reject", "ids": [1], "reason": "a\x00b"},
])
def test_batch_refuses_bad_requests_whole(client: TestClient, tokens: Tokens, body: dict[str, object]) -> None:
    assert_problem(client.post("/v1/media/batch", headers=tokens.moderator(), json=body), 422)


def test_batch_needs_a_caller(client: TestClient) -> None:
    assert_problem(client.post("/v1/media/batch", json={"action": "approve", "ids": [1]}), 401)
