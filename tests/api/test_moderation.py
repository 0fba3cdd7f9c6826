"""Moderation over HTTP on every database: what the public sees changes only by a moderator's decision.

Unapproved uploads never replace, demote or hide an approved item; a flag is a report that
hides an item only at FLAG_HIDE_THRESHOLD distinct reporters; the queue is paged like every list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Tokens, add_member, assert_problem, upload
from tests.support.corpus import CORPUS_DIR

AVATAR = "/v1/media/users/USR-1/avatar"
GALLERY = "/v1/media/properties/123/photos"
OTHER_PHOTO = CORPUS_DIR / "images/good/webp_flower.webp"


@pytest.fixture
def client(app_factory: AppFactory, migrated_database_url: str) -> Iterator[TestClient]:
    """The app on SQLite, PostgreSQL and MariaDB, hiding at 3 reporters, 5 reports per reporter per hour."""
    app = app_factory(database_url=migrated_database_url, flag_hide_threshold=3, report_rate_limit=5)
    with TestClient(app) as test_client:
        yield test_client


def _stored(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def _public(client: TestClient, entity: str) -> list[tuple[int, bool]]:
    """(id, is_primary) of what an anonymous caller lists."""
    page = client.get(f"/v1/media/entity/{entity}").json()
    return [(item["id"], item["is_primary"]) for item in page["items"]]


def _served(client: TestClient, item: dict[str, Any]) -> bool:
    """Whether the item's plain (unsigned) file URL serves its bytes."""
    return client.get(urlsplit(item["url"]).path).status_code == 200


def _decide(client: TestClient, tokens: Tokens, item: dict[str, Any], status: str) -> dict[str, Any]:
    response = client.post(f"/v1/media/{item['id']}/moderation", headers=tokens.moderator(), json={"status": status})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_pending_avatar_replaces_the_approved_one_only_when_approved(client: TestClient, tokens: Tokens) -> None:
    approved = _stored(upload(client, AVATAR, tokens.header("USR-1", verified=True)))
    pending = _stored(upload(client, AVATAR, tokens.header("USR-1"), file=OTHER_PHOTO))
    assert pending["moderation_status"] == "pending"
    assert _public(client, "user/USR-1") == [(approved["id"], True)]
    assert client.get(f"/v1/media/public/{approved['public_id']}").status_code == 200 and _served(client, approved)

    _decide(client, tokens, pending, "rejected")
    assert _public(client, "user/USR-1") == [(approved["id"], True)] and _served(client, approved)

    replacement = _stored(upload(client, AVATAR, tokens.header("USR-1")))
    assert _public(client, "user/USR-1") == [(approved["id"], True)]
    response = client.patch(f"/v1/media/{replacement['id']}", headers=tokens.moderator(),
                            json={"moderation_status": "approved"})
    assert response.status_code == 200, response.text
    assert _public(client, "user/USR-1") == [(replacement["id"], True)] and _served(client, replacement)
    assert_problem(client.get(f"/v1/media/public/{approved['public_id']}"), 404)
    assert not _served(client, approved), "the replaced item's objects are gone after the approval"


def test_a_pending_primary_never_demotes_the_approved_one(client: TestClient, tokens: Tokens) -> None:
    add_member(client, tokens, "property:123", "USR-OWNER")
    primary = _stored(upload(client, GALLERY, tokens.header("USR-OWNER", verified=True), data={"is_primary": "true"}))
    claim = _stored(upload(client, GALLERY, tokens.owner(), file=OTHER_PHOTO, data={"is_primary": "true"}))
    assert (claim["moderation_status"], claim["is_primary"]) == ("pending", False)
    assert _public(client, "property/123") == [(primary["id"], True)]

    patched = client.patch(f"/v1/media/{claim['id']}", headers=tokens.owner(), json={"is_primary": True})
    assert patched.status_code == 200 and patched.json()["is_primary"] is False  # recorded for its approval
    assert _public(client, "property/123") == [(primary["id"], True)]

    _decide(client, tokens, claim, "approved")  # takes the primary, and with it the first place
    assert _public(client, "property/123") == [(claim["id"], True), (primary["id"], False)]


def test_a_report_hides_nothing_until_distinct_reporters_reach_the_threshold(client: TestClient,
                                                                              tokens: Tokens) -> None:
    item = _stored(upload(client, GALLERY, tokens.header("USR-OWNER", verified=True, grants=("property:123",))))
    public = f"/v1/media/public/{item['public_id']}"
    flag = f"/v1/media/{item['id']}/flag"
    for _ in range(4):  # one user, again and again (also after being told it is reported)
        response = client.post(flag, headers=tokens.user("USR-A"), json={"reason": "spam"})
        assert response.json() == {"id": item["id"], "moderation_status": "approved"}
    client.post(flag, headers=tokens.user("USR-B"), json={})
    assert client.get(public).status_code == 200 and _served(client, item)
    queue = client.get("/v1/media/moderation/queue", headers=tokens.moderator()).json()
    assert [(i["id"], i["open_reports"]) for i in queue["items"]] == [(item["id"], 2)]
    assert [(r["reporter"], r["reason"]) for r in queue["items"][0]["reports"]] == [("USR-A", "spam"), ("USR-B", None)]

    assert client.post(flag, headers=tokens.user("USR-C"), json={}).json()["moderation_status"] == "flagged"
    assert_problem(client.get(public), 404)

    _decide(client, tokens, item, "approved")  # restored: the reports are closed
    for sub in ("USR-A", "USR-B", "USR-C"):  # the same users cannot hide it again
        client.post(flag, headers=tokens.user(sub), json={"reason": "still spam"})
    assert client.get(public).status_code == 200

    dismissed = client.post(f"/v1/media/{item['id']}/reports/dismiss", headers=tokens.moderator())
    assert dismissed.status_code == 200 and dismissed.json()["moderation_status"] == "approved"
    assert client.get("/v1/media/moderation/queue", headers=tokens.moderator()).json()["total"] == 0
    assert_problem(client.post(f"/v1/media/{item['id']}/reports/dismiss", headers=tokens.user("USR-A")), 403)


def test_an_items_reports_are_listed_newest_first_with_how_each_was_closed(client: TestClient,
                                                                          tokens: Tokens) -> None:
    item = _stored(upload(client, GALLERY, tokens.header("USR-OWNER", verified=True, grants=("property:123",))))
    flag = f"/v1/media/{item['id']}/flag"
    client.post(flag, headers=tokens.user("USR-A"), json={"reason": "spam"})
    client.post(flag, headers=tokens.user("USR-B"), json={"reason": "not this property"})
    _decide(client, tokens, item, "approved")
    client.post(flag, headers=tokens.user("USR-A"), json={"reason": "still spam"})

    response = client.get(f"/v1/media/{item['id']}/reports", headers=tokens.moderator())

    assert response.status_code == 200, response.text
    history = response.json()
    assert history["total"] == 3
    assert [(r["reporter"], r["reason"], r["resolution"]) for r in history["items"]] == [
        ("USR-A", "still spam", None), ("USR-B", "not this property", "approved"), ("USR-A", "spam", "approved")]
    assert history["items"][0]["closed_at"] is None and history["items"][1]["closed_at"] is not None
    assert_problem(client.get(f"/v1/media/{item['id']}/reports", headers=tokens.user("USR-A")), 403,
                   "moderator_required")


def test_reports_are_rate_limited_and_their_reason_bounded(client: TestClient, tokens: Tokens) -> None:
    owner = tokens.header("USR-OWNER", verified=True, grants=("property:123",))
    items = [_stored(upload(client, GALLERY, owner)) for _ in range(6)]
    reporter = tokens.user("USR-A")
    assert_problem(client.post(f"/v1/media/{items[0]['id']}/flag", headers=reporter, json={"reason": "x" * 501}),
                   422, "validation_error")
    for item in items[:5]:
        assert client.post(f"/v1/media/{item['id']}/flag", headers=reporter, json={}).status_code == 200
    refused = client.post(f"/v1/media/{items[5]['id']}/flag", headers=reporter, json={})
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert client.post(f"/v1/media/{items[5]['id']}/flag", headers=tokens.user("USR-B"), json={}).status_code == 200


def test_the_queue_is_paged_with_its_total(client: TestClient, tokens: Tokens) -> None:
    grantee = tokens.header("USR-G", grants=("property:123",))
    items = [_stored(upload(client, GALLERY, grantee)) for _ in range(3)]
    page = client.get("/v1/media/moderation/queue", headers=tokens.moderator(), params={"offset": 1, "limit": 1})
    assert page.status_code == 200, page.text
    body = page.json()
    assert (body["total"], body["offset"], body["limit"]) == (3, 1, 1)
    assert [i["id"] for i in body["items"]] == [items[1]["id"]]
    assert_problem(client.get("/v1/media/moderation/queue", headers=tokens.moderator(), params={"limit": 101}),
                   422, "validation_error")


def test_new_public_text_from_an_unchecked_uploader_waits_for_a_moderator(client: TestClient, tokens: Tokens) -> None:
    item = _stored(upload(client, AVATAR, tokens.header("USR-1"), data={"caption": "my face"}))
    _decide(client, tokens, item, "approved")

    unchanged = client.patch(f"/v1/media/{item['id']}", headers=tokens.header("USR-1"), json={"caption": "my face"})
    assert unchanged.json()["moderation_status"] == "approved", "the same text is no edit"
    edited = client.patch(f"/v1/media/{item['id']}", headers=tokens.header("USR-1"),
                          json={"caption": "BUY CHEAP PILLS", "tags": ["spam"]})
    assert edited.status_code == 200, edited.text
    assert edited.json()["moderation_status"] == "pending"
    assert_problem(client.get(f"/v1/media/public/{item['public_id']}"), 404)
    queue = client.get("/v1/media/moderation/queue", headers=tokens.moderator()).json()
    assert item["id"] in [entry["id"] for entry in queue["items"]]

    _decide(client, tokens, item, "approved")
    public = client.get(f"/v1/media/public/{item['public_id']}").json()
    assert public["caption"] == "BUY CHEAP PILLS", "a moderator approved it"
    for trusted in (tokens.header("USR-1", verified=True), tokens.admin()):
        kept = client.patch(f"/v1/media/{item['id']}", headers=trusted, json={"alt_text": "a face"})
        assert kept.json()["moderation_status"] == "approved", "edits are judged like uploads"
