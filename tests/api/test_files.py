"""The file route: signatures, caching headers, conditional and range requests."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from mediahub.db.models import MediaItem
from mediahub.storage.signing import sign
from tests.api.conftest import JWT_SECRET, Tokens, assert_problem, upload

PUBLIC_CACHE = "public, max-age=3600"  # PUBLIC_CACHE_SECONDS: bounded, never immutable


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _key(url: str) -> str:
    return urlsplit(url).path.removeprefix("/v1/media/files/")


@pytest.fixture
def pending(client: TestClient, tokens: Tokens) -> dict:
    """A pending avatar (unverified uploader): only signed URLs serve it."""
    response = upload(client, "/v1/media/users/USR-1/avatar", tokens.header("USR-1"))
    assert response.json()["moderation_status"] == "pending"
    return response.json()


@pytest.fixture
def approved(client: TestClient, tokens: Tokens) -> dict:
    response = upload(client, "/v1/media/users/USR-2/avatar", tokens.header("USR-2", verified=True))
    assert response.json()["moderation_status"] == "approved"
    return response.json()


def test_signed_url_serves_a_pending_item_privately(client: TestClient, pending: dict) -> None:
    response = client.get(_path(pending["url"]))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == pending["content_type"]
    assert len(response.content) == pending["byte_size"]
    assert response.headers["content-disposition"] == f'inline; filename="{_key(pending["url"]).rsplit("/", 1)[1]}"'


def test_pending_items_unsigned_url_is_404(client: TestClient, pending: dict) -> None:
    assert_problem(client.get(urlsplit(pending["url"]).path), 404, "file_not_found")


@pytest.mark.parametrize("how", ["tampered-signature", "other-key", "extended-expiry", "expired", "missing-expiry"])
def test_bad_signatures_are_refused(client: TestClient, pending: dict, how: str) -> None:
    key = _key(pending["url"])
    query = {k: v[0] for k, v in parse_qs(urlsplit(pending["url"]).query).items()}
    path = f"/v1/media/files/{key}"
    if how == "tampered-signature":
        query["signature"] = ("A" if query["signature"][0] != "A" else "B") + query["signature"][1:]
    elif how == "other-key":
        path = f"/v1/media/files/{pending['variants']['small']['jpeg']['url'].split('/files/')[1].split('?')[0]}"
    elif how == "extended-expiry":
        query["expires"] = str(int(query["expires"]) + 3600)
    elif how == "expired":
        query["expires"] = str(int(time.time()) - 10)
        query["signature"] = sign(key, int(query["expires"]), JWT_SECRET.encode())
    else:
        del query["expires"]
    response = client.get(path, params=query)
    assert_problem(response, 403, "invalid_signature")


def test_approved_items_are_public_and_cacheable(client: TestClient, approved: dict) -> None:
    assert "signature=" not in approved["url"]
    response = client.get(_path(approved["url"]))
    assert response.status_code == 200
    assert response.headers["cache-control"] == PUBLIC_CACHE
    thumbnail = approved["variants"]["thumbnail"]["jpeg"]
    variant = client.get(_path(thumbnail["url"]))
    assert (variant.status_code, variant.headers["content-type"]) == (200, thumbnail["content_type"])
    assert len(variant.content) == thumbnail["size"]


def test_content_type_comes_from_the_row_not_the_name(client: TestClient, approved: dict) -> None:
    runtime = client.app.state.runtime
    with runtime.database.session() as session:
        session.execute(update(MediaItem).where(MediaItem.id == approved["id"]).values(content_type="image/x-test"))
    response = client.get(_path(approved["url"]))  # the key still ends in .jpg
    assert response.headers["content-type"] == "image/x-test"


def test_etag_and_if_none_match(client: TestClient, approved: dict) -> None:
    first = client.get(_path(approved["url"]))
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["last-modified"].endswith("GMT")
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get(_path(approved["url"]), headers={"If-None-Match": header})
        assert (again.status_code, again.content) == (304, b""), header
        assert again.headers["etag"] == etag
    assert client.get(_path(approved["url"]), headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    ("range_header", "expected"),
    [("bytes=0-9", (0, 9)), ("bytes=10-", (10, None)), ("bytes=-5", (-5, None)), ("bytes=5-100000000", (5, None))],
)
def test_ranges(client: TestClient, approved: dict, range_header: str, expected: tuple) -> None:
    whole = client.get(_path(approved["url"])).content
    response = client.get(_path(approved["url"]), headers={"Range": range_header})
    assert response.status_code == 206
    start, end = expected
    part = whole[start:] if end is None else whole[start:end + 1]
    assert response.content == part
    first = len(whole) + start if start < 0 else start
    assert response.headers["content-range"] == f"bytes {first}-{first + len(part) - 1}/{len(whole)}"


def test_unsatisfiable_range_is_416(client: TestClient, approved: dict) -> None:
    size = approved["byte_size"]
    response = client.get(_path(approved["url"]), headers={"Range": f"bytes={size}-"})
    assert_problem(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{size}"


def test_malformed_ranges_are_ignored(client: TestClient, approved: dict) -> None:
    for header in ("bytes=5-1", "items=0-1", "bytes=0-1,4-5"):
        response = client.get(_path(approved["url"]), headers={"Range": header})
        assert (response.status_code, len(response.content)) == (200, approved["byte_size"]), header


@pytest.mark.parametrize("key", ["../etc/passwd", "users/..%2f..%2fsecret", "nothing/here.jpg", "a%00b.jpg"])
def test_unknown_and_hostile_keys_are_404(client: TestClient, key: str) -> None:
    assert_problem(client.get(f"/v1/media/files/{key}"), 404)


def test_deleted_objects_are_gone(client: TestClient, tokens: Tokens, approved: dict) -> None:
    assert client.delete(f"/v1/media/{approved['id']}", headers=tokens.header("USR-2")).status_code == 204
    assert_problem(client.get(_path(approved["url"])), 404)


def test_a_rejected_items_signed_links_die_with_the_decision(app_factory, tokens: Tokens) -> None:
    """Its owner's links were capabilities that could be handed on; after a rejection only bearers read it."""
    with TestClient(app_factory()) as client:
        owner = tokens.header("USR-1")
        item = upload(client, "/v1/media/users/USR-1/avatar", owner).json()
        signed = urlsplit(item["url"])
        signed_path = f"{signed.path}?{signed.query}"
        assert "signature" in signed.query and client.get(signed_path).status_code == 200

        decided = client.post(f"/v1/media/{item['id']}/moderation", headers=tokens.moderator(),
                              json={"status": "rejected", "reason": "not a face"})
        assert decided.status_code == 200, decided.text

        assert_problem(client.get(signed_path), 404, "file_not_found")
        fresh = urlsplit(client.get(f"/v1/media/{item['id']}", headers=owner).json()["url"])
        assert "signature" not in fresh.query, "no link that would work for anyone it is passed to"
        assert_problem(client.get(fresh.path), 404, "file_not_found")
        as_owner = client.get(fresh.path, headers=owner)
        assert as_owner.status_code == 200 and as_owner.headers["cache-control"] == "private, no-store"
