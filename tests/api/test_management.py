"""Listing, reading, changing, deleting, reordering, usage, moderation and members over HTTP."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Tokens, add_member, assert_problem, upload
from tests.support.concurrency import run_together
from tests.support.corpus import CORPUS_DIR

GALLERY = "/v1/media/properties/123/photos"
LISTING = "/v1/media/entity/property/123"
GPS_PHOTO = CORPUS_DIR / "images/good/gps_kodak_cx7530_small.jpg"


@pytest.fixture
def owner(client: TestClient, tokens: Tokens) -> dict[str, str]:
    add_member(client, tokens, "property:123", "USR-OWNER")
    return tokens.owner()


def _upload_many(client: TestClient, headers: dict[str, str], count: int) -> list[dict]:
    items = []
    for _ in range(count):
        response = upload(client, GALLERY, headers)
        assert response.status_code == 201, response.text
        items.append(response.json())
    return items


def _approve(client: TestClient, tokens: Tokens, media_id: int) -> None:
    response = client.post(f"/v1/media/{media_id}/moderation", headers=tokens.moderator(), json={"status": "approved"})
    assert response.status_code == 200, response.text


def test_listing_pages_filters_and_visibility(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    items = _upload_many(client, owner, 3)
    _approve(client, tokens, items[1]["id"])

    page = client.get(LISTING, headers=owner, params={"offset": 1, "limit": 1}).json()
    assert (page["total"], [i["id"] for i in page["items"]]) == (3, [items[1]["id"]])
    strangers_view = client.get(LISTING).json()
    assert (strangers_view["total"], [i["id"] for i in strangers_view["items"]]) == (1, [items[1]["id"]])
    pending = client.get(LISTING, headers=owner, params={"moderation_status": "pending"}).json()
    assert {i["id"] for i in pending["items"]} == {items[0]["id"], items[2]["id"]}
    assert client.get(LISTING, params={"moderation_status": "pending"}).json()["total"] == 0
    assert client.get(LISTING, headers=tokens.moderator()).json()["total"] == 3
    assert client.get(LISTING, headers=owner, params={"field": "gallery", "is_primary": True}).json()["total"] == 0
    assert_problem(client.get(LISTING, params={"field": "nope"}), 422, "unknown_field")
    assert_problem(client.get("/v1/media/entity/planet/1"), 404, "unknown_entity_type")
    assert_problem(client.get(LISTING, params={"limit": 1000}), 422, "validation_error")


def test_uploader_without_membership_sees_own_pending_items(client: TestClient, tokens: Tokens) -> None:
    grantee = tokens.header("USR-G", grants=("property:123",))
    mine = _upload_many(client, grantee, 1)[0]
    assert [i["id"] for i in client.get(LISTING, headers=grantee).json()["items"]] == [mine["id"]]
    assert client.get(LISTING, headers=tokens.user()).json()["total"] == 0


def test_get_and_public_get(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    item = _upload_many(client, owner, 1)[0]
    assert client.get(f"/v1/media/{item['id']}", headers=owner).json()["public_id"] == item["public_id"]
    assert_problem(client.get(f"/v1/media/{item['id']}"), 404, "media_not_found")
    assert_problem(client.get(f"/v1/media/public/{item['public_id']}"), 404, "media_not_found")
    _approve(client, tokens, item["id"])
    public = client.get(f"/v1/media/public/{item['public_id']}").json()
    assert public["id"] == item["id"] and "signature=" not in public["url"]
    assert_problem(client.get("/v1/media/999999"), 404)
    assert_problem(client.get(f"/v1/media/{2**64}"), 422, "validation_error")


def test_gps_is_shown_to_the_uploader_only(app_factory, tokens: Tokens) -> None:
    with TestClient(app_factory(strip_gps=False)) as client:
        add_member(client, tokens, "property:123", "USR-OWNER")
        item = upload(client, GALLERY, tokens.owner(), file=GPS_PHOTO).json()
        assert "gps" in item["metadata"]
        _approve(client, tokens, item["id"])
        assert "gps" in client.get(f"/v1/media/{item['id']}", headers=tokens.owner()).json()["metadata"]
        for headers in ({}, tokens.user(), tokens.moderator()):
            assert "gps" not in client.get(f"/v1/media/{item['id']}", headers=headers).json()["metadata"]


def test_patch_fields_and_primary_moves(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    first, second = _upload_many(client, owner, 2)
    changed = client.patch(f"/v1/media/{first['id']}", headers=owner,
                           json={"is_primary": True, "tags": "a,b", "caption": "c", "alt_text": "d"}).json()
    assert (changed["is_primary"], changed["tags"], changed["caption"], changed["alt_text"]) == (
        True, ["a", "b"], "c", "d")
    client.patch(f"/v1/media/{second['id']}", headers=owner, json={"is_primary": True})
    primaries = client.get(LISTING, headers=owner, params={"is_primary": True}).json()["items"]
    assert [i["id"] for i in primaries] == [second["id"]]
    cleared = client.patch(f"/v1/media/{second['id']}", headers=owner, json={"is_primary": False, "caption": None})
    assert (cleared.json()["is_primary"], cleared.json()["caption"]) == (False, None)
    assert_problem(client.patch(f"/v1/media/{first['id']}", headers=owner, json={"moderation_status": "approved"}),
                   403, "moderator_required")
    assert_problem(client.patch(f"/v1/media/{first['id']}", headers=owner, json={"unknown": 1}), 422)
    broken = client.patch(f"/v1/media/{first['id']}", headers={**owner, "Content-Type": "application/json"},
                          content=b"{not json")
    assert_problem(broken, 400, "malformed_json")


def test_single_slot_item_stays_primary(client: TestClient, tokens: Tokens) -> None:
    item = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1")).json()
    response = client.patch(f"/v1/media/{item['id']}", headers=tokens.header("USR-1"), json={"is_primary": False})
    assert_problem(response, 409, "single_slot_primary")


def test_concurrent_primary_patches_leave_one_primary(client: TestClient, tokens: Tokens,
                                                      owner: dict[str, str]) -> None:
    items = _upload_many(client, owner, 4)
    barrier = threading.Barrier(len(items))
    statuses: list[int] = []

    def make_primary(media_id: int) -> None:
        barrier.wait()
        statuses.append(client.patch(f"/v1/media/{media_id}", headers=owner, json={"is_primary": True}).status_code)

    run_together([lambda media_id=item["id"]: make_primary(media_id) for item in items])
    assert statuses == [200] * len(items)
    assert client.get(LISTING, headers=owner, params={"is_primary": True}).json()["total"] == 1


def _objects(item: dict) -> dict[str, int]:
    """Each stored object of an item (path of its URL -> bytes): renditions may share one, or the original."""
    found = {urlsplit(item["url"]).path: item["byte_size"]}
    found.update((urlsplit(v["url"]).path, v["size"]) for f in item["variants"].values() for v in f.values())
    return found


def _stored_files(media_root: Path) -> set[str]:
    return {p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file()}


def test_delete_removes_row_and_every_object(client: TestClient, tokens: Tokens, owner: dict[str, str],
                                             tmp_path: Path) -> None:
    keep, doomed = _upload_many(client, owner, 2)
    before = _stored_files(tmp_path / "media")
    doomed_files = {f for f in before if doomed["url"].split("/files/")[1].split("?")[0].rsplit(".", 1)[0] in f}
    assert len(doomed_files) == len(_objects(doomed)), "renditions that share an object are one file"
    response = client.delete(f"/v1/media/{doomed['id']}", headers=owner)
    assert response.status_code == 204
    assert _stored_files(tmp_path / "media") == before - doomed_files
    assert_problem(client.get(f"/v1/media/{doomed['id']}", headers=owner), 404)
    assert client.get(f"/v1/media/{keep['id']}", headers=owner).status_code == 200


def test_batch_delete_reports_each_id(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    mine = _upload_many(client, owner, 2)
    other = upload(client, "/v1/media/users/USR-2/avatar", tokens.header("USR-2")).json()
    _approve(client, tokens, other["id"])
    ids = [mine[0]["id"], 999999, other["id"], mine[1]["id"]]
    results = client.post("/v1/media/batch/delete", headers=owner, json={"ids": ids}).json()["results"]
    assert [(r["id"], r["ok"], (r["error"] or {}).get("code")) for r in results] == [
        (mine[0]["id"], True, None), (999999, False, "media_not_found"), (other["id"], False, "forbidden"),
        (mine[1]["id"], True, None),
    ]
    assert_problem(client.post("/v1/media/batch/delete", headers=owner, json={"ids": []}), 422)


def test_reorder(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    ids = [item["id"] for item in _upload_many(client, owner, 3)]
    new_order = [ids[2], ids[0], ids[1]]
    response = client.put(f"{LISTING}/order", headers=owner, json={"field": "gallery", "ids": new_order})
    assert [i["id"] for i in response.json()["items"]] == new_order
    assert [i["id"] for i in client.get(LISTING, headers=owner).json()["items"]] == new_order
    body = assert_problem(client.put(f"{LISTING}/order", headers=owner, json={"field": "gallery", "ids": ids[:2]}),
                          409, "order_mismatch")
    assert body["expected"] == sorted(ids)
    assert_problem(client.put(f"{LISTING}/order", headers=tokens.user(), json={"field": "gallery", "ids": ids}),
                   403)


def test_storage_analytics_match_the_uploads(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    items = _upload_many(client, owner, 2)
    avatar = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1", verified=True)).json()
    stats = client.get("/v1/media/analytics/storage", headers=tokens.admin()).json()
    total = sum(i["byte_size"] for i in [*items, avatar])
    assert stats["by_storage_type"] == {"local": {"count": 3, "bytes": total}}
    assert stats["by_entity_type"]["property"] == {"count": 2, "bytes": items[0]["byte_size"] + items[1]["byte_size"]}
    assert stats["by_moderation_status"]["approved"] == {"count": 1, "bytes": avatar["byte_size"]}
    assert stats["by_media_type"] == {"image": {"count": 3, "bytes": total}}
    objects = {path: size for i in [*items, avatar] for path, size in _objects(i).items()}
    assert stats["storage"] == {"objects": len(objects), "bytes": sum(objects.values())}


def test_moderation_queue_decisions_and_reports(client: TestClient, tokens: Tokens, owner: dict[str, str]) -> None:
    first, second = _upload_many(client, owner, 2)
    queue = client.get("/v1/media/moderation/queue", headers=tokens.moderator()).json()
    assert [i["id"] for i in queue["items"]] == [first["id"], second["id"]]
    assert (queue["total"], queue["offset"], queue["limit"]) == (2, 0, 50)
    decided = client.post(f"/v1/media/{first['id']}/moderation", headers=tokens.moderator(),
                          json={"status": "rejected", "reason": "blurry"}).json()
    assert (decided["moderation_status"], decided["moderation_reason"]) == ("rejected", "blurry")
    _approve(client, tokens, second["id"])
    assert client.get("/v1/media/moderation/queue", headers=tokens.moderator()).json()["items"] == []
    reported = client.post(f"/v1/media/{second['id']}/flag", headers=tokens.user(), json={"reason": "wrong house"})
    assert reported.json() == {"id": second["id"], "moderation_status": "approved"}  # a report hides nothing alone
    entries = client.get("/v1/media/moderation/queue", headers=tokens.admin()).json()["items"]
    assert [(i["id"], i["open_reports"]) for i in entries] == [(second["id"], 1)]
    assert [(r["reporter"], r["reason"]) for r in entries[0]["reports"]] == [("USR-STRANGER", "wrong house")]
    assert client.get(f"/v1/media/public/{second['public_id']}").status_code == 200  # still in public view
    assert_problem(client.post(f"/v1/media/{first['id']}/flag", headers=tokens.user(), json={}), 404)
    assert_problem(client.post(f"/v1/media/{first['id']}/moderation", headers=tokens.moderator(),
                               json={"status": "deleted"}), 422, "validation_error")


def test_members_grant_upload_rights_and_can_be_removed(client: TestClient, tokens: Tokens) -> None:
    member = "/v1/media/entities/community/55/members/USR-5"
    assert upload(client, "/v1/media/communities/55/photos", tokens.header("USR-5")).status_code == 403
    put = client.put(member, headers=tokens.admin(), json={"role": "editor"})
    assert put.json() == {"entity_type": "community", "entity_id": "55", "subject": "USR-5", "role": "editor",
                          "parent_id": None}
    assert upload(client, "/v1/media/communities/55/photos", tokens.header("USR-5")).status_code == 201
    # Community members own the community's amenities too.
    assert upload(client, "/v1/media/communities/55/amenities/9/photos", tokens.header("USR-5")).status_code == 201
    assert client.delete(member, headers=tokens.admin()).status_code == 204
    assert_problem(client.delete(member, headers=tokens.admin()), 404, "member_not_found")
    assert upload(client, "/v1/media/communities/55/photos", tokens.header("USR-5")).status_code == 403
    assert_problem(client.put(member, headers=tokens.admin(), json={"role": "king"}), 422)
    assert_problem(client.put("/v1/media/entities/planet/1/members/USR-5", headers=tokens.admin(), json={}), 404)


def test_readyz_reports_a_broken_storage(app_factory, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the media root should be")
    with TestClient(app_factory(media_root=blocker)) as client:
        body = assert_problem(client.get("/readyz"), 503, "storage_unavailable")
        assert body["checks"] == {"database": "ok", "storage": "storage_unavailable", "pixels": "ok"}
        assert client.get("/healthz").status_code == 200

