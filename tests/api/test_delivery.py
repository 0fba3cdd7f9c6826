"""How objects reach callers: returned URLs, caching bounds, HEAD and conditional requests, bearer reads."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from mediahub.config import Settings
from tests.api.conftest import HOPPER, AppFactory, LiveServer, Tokens, assert_problem, upload
from tests.support.s3_server import anonymous_get

PUBLIC = "public, max-age=3600"
PRIVATE = "private, no-store"


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _approved(client: TestClient, tokens: Tokens) -> dict:
    response = upload(client, "/v1/media/users/USR-2/avatar", tokens.header("USR-2", verified=True))
    assert response.json()["moderation_status"] == "approved"
    return response.json()


def _pending(client: TestClient, tokens: Tokens, owner: str = "USR-1") -> dict:
    response = upload(client, f"/v1/media/users/{owner}/avatar", tokens.header(owner))
    assert response.json()["moderation_status"] == "pending"
    return response.json()


def _all_urls(item: dict) -> list[str]:
    return [item["url"], *(v["url"] for formats in item["variants"].values() for v in formats.values())]


# Item 18: returned URLs name where the server answers.


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
        return response.status, response.read()


def test_urls_name_the_port_the_server_runs_on(live_server: LiveServer, tokens: Tokens) -> None:
    """No PUBLIC_BASE_URL: every URL of the answer is the live server's, and works there."""
    files = {"file": (HOPPER.name, HOPPER.read_bytes(), "application/octet-stream")}
    with httpx.Client(base_url=live_server.url, trust_env=False) as http:
        approved = http.post("/v1/media/users/USR-2/avatar", files=files,
                             headers=tokens.header("USR-2", verified=True)).json()
        pending = http.post("/v1/media/users/USR-1/avatar", files=files, headers=tokens.header("USR-1")).json()
    for item in (approved, pending):
        for url in _all_urls(item):
            assert url.startswith(f"{live_server.url}/v1/media/files/"), url
            status, body = _get(url)
            assert status == 200 and body
        assert len(_get(item["url"])[1]) == item["byte_size"]


def test_urls_follow_the_host_header(client: TestClient, tokens: Tokens) -> None:
    headers = {**tokens.header("USR-1"), "Host": "media.example.org:8443"}
    item = upload(client, "/v1/media/users/USR-1/avatar", headers).json()
    assert all(url.startswith("http://media.example.org:8443/v1/media/files/") for url in _all_urls(item))


def test_forwarded_headers_are_not_read_by_the_app(client: TestClient, tokens: Tokens) -> None:
    """Only uvicorn's proxy-header handling (trusted proxies) may change the scheme; the app never reads them."""
    headers = {**tokens.header("USR-1"), "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    item = upload(client, "/v1/media/users/USR-1/avatar", headers).json()
    assert item["url"].startswith("http://testserver/v1/media/files/")


def test_public_base_url_wins_over_the_request(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(public_base_url="https://media.example.com/api/")) as client:
        item = upload(client, "/v1/media/users/USR-1/avatar", {**tokens.header("USR-1"), "Host": "other:1"}).json()
        approved = _approved(client, tokens)
    for url in _all_urls(item) + _all_urls(approved):
        assert url.startswith("https://media.example.com/api/v1/media/files/"), url


@pytest.mark.parametrize("host", ["evil.example/path", "a b", "x@evil.example", "evil.example:port"])
def test_a_host_header_that_is_not_a_host_is_refused(client: TestClient, tokens: Tokens, host: str) -> None:
    approved = _approved(client, tokens)
    assert_problem(client.get(f"/v1/media/{approved['id']}", headers={"Host": host}), 400, "invalid_host")


def test_public_base_url_is_optional_and_checked() -> None:
    assert Settings(_env_file=None).public_base_url is None
    assert Settings(_env_file=None, public_base_url=" ").public_base_url is None  # PUBLIC_BASE_URL= in a .env
    for bad in ("ftp://example.com", "example.com", "https://example.com/?x=1", "https://exa mple.com"):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, public_base_url=bad)


# Item 20: public copies expire within a bound.


def test_public_caching_is_bounded_and_never_immutable(client: TestClient, tokens: Tokens) -> None:
    approved = _approved(client, tokens)
    for url in _all_urls(approved):
        assert client.get(_path(url)).headers["cache-control"] == PUBLIC


def test_public_cache_seconds_sets_the_bound(app_factory: AppFactory, tokens: Tokens) -> None:
    with TestClient(app_factory(public_cache_seconds=60)) as client:
        approved = _approved(client, tokens)
        assert client.get(_path(approved["url"])).headers["cache-control"] == "public, max-age=60"


def test_rejected_items_stop_being_served(client: TestClient, tokens: Tokens) -> None:
    approved = _approved(client, tokens)
    decided = client.post(f"/v1/media/{approved['id']}/moderation", headers=tokens.moderator(),
                          json={"status": "rejected"})
    assert decided.status_code == 200
    for url in _all_urls(approved):
        assert_problem(client.get(_path(url)), 404, "file_not_found")


# Item 21: HEAD and conditional requests.


def test_head_answers_gets_headers_without_a_body(client: TestClient, tokens: Tokens) -> None:
    approved = _approved(client, tokens)
    got = client.get(_path(approved["url"]))
    head = client.head(_path(approved["url"]))
    assert (head.status_code, head.content) == (200, b"")
    for name in ("content-length", "content-type", "etag", "last-modified", "cache-control", "accept-ranges"):
        assert head.headers[name] == got.headers[name], name
    ranged = client.head(_path(approved["url"]), headers={"Range": "bytes=0-9"})
    assert (ranged.status_code, ranged.headers["content-length"], ranged.content) == (206, "10", b"")


def test_head_follows_the_same_access_rules(client: TestClient, tokens: Tokens) -> None:
    pending = _pending(client, tokens)
    assert client.head(urlsplit(pending["url"]).path).status_code == 404
    signed = client.head(_path(pending["url"]))
    assert (signed.status_code, signed.headers["cache-control"], signed.content) == (200, PRIVATE, b"")


def test_if_range_with_the_current_etag_or_date_gets_the_range(client: TestClient, tokens: Tokens) -> None:
    url = _path(_approved(client, tokens)["url"])
    first = client.get(url)
    for validator in (first.headers["etag"], first.headers["last-modified"]):
        response = client.get(url, headers={"Range": "bytes=0-9", "If-Range": validator})
        assert (response.status_code, response.content) == (206, first.content[:10]), validator


def test_if_range_with_another_validator_gets_the_whole_object(client: TestClient, tokens: Tokens) -> None:
    url = _path(_approved(client, tokens)["url"])
    first = client.get(url)
    earlier = format_datetime(parsedate_to_datetime(first.headers["last-modified"]) - timedelta(seconds=5),
                              usegmt=True)
    for validator in ('"another-version"', f"W/{first.headers['etag']}", earlier, "not a date"):
        response = client.get(url, headers={"Range": "bytes=0-9", "If-Range": validator})
        assert (response.status_code, response.content) == (200, first.content), validator
        assert "content-range" not in response.headers


def test_if_modified_since(client: TestClient, tokens: Tokens) -> None:
    url = _path(_approved(client, tokens)["url"])
    first = client.get(url)
    modified = parsedate_to_datetime(first.headers["last-modified"])
    later = format_datetime(modified + timedelta(seconds=5), usegmt=True)
    earlier = format_datetime(modified - timedelta(seconds=5), usegmt=True)
    for since, status in ((first.headers["last-modified"], 304), (later, 304), (earlier, 200), ("garbage", 200)):
        assert client.get(url, headers={"If-Modified-Since": since}).status_code == status, since
    # If-None-Match decides when both come: a different tag means the copy is stale.
    both = client.get(url, headers={"If-Modified-Since": later, "If-None-Match": '"other"'})
    assert both.status_code == 200


# Item 25: the owner's bearer reads the plain URL of a hidden file.


def test_owner_reads_own_pending_file_with_a_bearer(client: TestClient, tokens: Tokens) -> None:
    pending = _pending(client, tokens)
    for url in _all_urls(pending):
        plain = urlsplit(url).path
        for headers in (tokens.header("USR-1"), tokens.moderator()):
            response = client.get(plain, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["cache-control"] == PRIVATE
        assert client.get(plain).status_code == 404


def test_strangers_learn_nothing_but_what_is_needed(client: TestClient, tokens: Tokens) -> None:
    pending = _pending(client, tokens)
    hidden = assert_problem(client.get(urlsplit(pending["url"]).path, headers=tokens.user()), 404, "file_not_found")
    missing = assert_problem(client.get("/v1/media/files/users/avatars/USR-1/2020-01/avatar-none.jpg",
                                        headers=tokens.user()), 404, "file_not_found")
    assert hidden["detail"] == missing["detail"]  # a hidden file and no file answer alike
    assert "signed URL" in hidden["detail"] and "bearer" in hidden["detail"]


def test_a_bad_bearer_on_a_file_url_is_401(client: TestClient, tokens: Tokens) -> None:
    pending = _pending(client, tokens)
    response = client.get(urlsplit(pending["url"]).path, headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401


# Item 19: on S3, approved objects are readable at their public URLs, and nothing else is.


@pytest.fixture
def s3_client(app_factory: AppFactory, s3_server: str, migrated_database_url: str) -> Iterator[TestClient]:
    """The app on every database, storing in a moto bucket whose own URL is the public base."""
    bucket = f"delivery-{uuid.uuid4().hex[:12]}"
    app = app_factory(database_url=migrated_database_url, storage_type="s3", s3_endpoint_url=s3_server,
                      aws_access_key_id="testing", aws_secret_access_key="testing", s3_bucket_name=bucket,
                      s3_public_base_url=f"{s3_server}/{bucket}", make_webp=True)
    with TestClient(app) as client:
        client.app.state.runtime.storage.check()  # creates the bucket, as the first readiness check does
        yield client


def _finished(client: TestClient, item: dict, headers: dict[str, str]) -> dict:
    """The item once its jobs ran (the WebP renditions exist)."""
    assert client.app.state.runtime.wait_for_jobs([item["id"]], timeout=60)
    return client.get(f"/v1/media/{item['id']}", headers=headers).json()


def _statuses(urls: list[str]) -> set[int]:
    return {anonymous_get(url)[0] for url in urls}


@pytest.mark.s3
def test_s3_public_urls_read_approved_objects_only(s3_client: TestClient, tokens: Tokens) -> None:
    client, moderator = s3_client, tokens.moderator()
    item = _finished(client, _approved(client, tokens), {})
    urls = _all_urls(item)
    assert any(url.endswith(".webp") for url in urls), "the job's renditions are covered"
    for url in urls:
        assert "Signature" not in url and "signature" not in url
        status, headers, body = anonymous_get(url)
        assert (status, headers["cache-control"]) == (200, PUBLIC), url
        assert body
    for status, readable in (("rejected", 403), ("approved", 200), ("flagged", 403), ("approved", 200)):
        decided = client.post(f"/v1/media/{item['id']}/moderation", headers=moderator, json={"status": status})
        assert decided.status_code == 200, decided.text
        assert _statuses(urls) == {readable}, status
    patched = client.patch(f"/v1/media/{item['id']}", headers=moderator, json={"moderation_status": "pending"})
    assert patched.status_code == 200, patched.text
    assert _statuses(urls) == {403}
    client.post(f"/v1/media/{item['id']}/moderation", headers=moderator, json={"status": "approved"})
    assert client.delete(f"/v1/media/{item['id']}", headers=tokens.header("USR-2")).status_code == 204
    assert _statuses(urls) <= {403, 404}


@pytest.mark.s3
def test_s3_pending_objects_are_never_anonymously_readable(s3_client: TestClient, tokens: Tokens) -> None:
    client = s3_client
    pending = _finished(client, _pending(client, tokens), tokens.header("USR-1"))
    signed = _all_urls(pending)
    assert any(url.endswith(".webp") or ".webp?" in url for url in signed)
    for url in signed:  # the caller's own signed URLs work, and no shared cache may keep them
        status, headers, _ = anonymous_get(url)
        assert (status, headers["cache-control"]) == (200, PRIVATE)
    base = f"{client.app.state.runtime.settings.s3_public_base_url}/"
    unsigned = [base + urlsplit(url).path.split("/", 2)[2] for url in signed]
    assert _statuses(unsigned) == {403}
    decided = client.post(f"/v1/media/{pending['id']}/moderation", headers=tokens.moderator(),
                          json={"status": "approved"})
    assert decided.status_code == 200
    assert sorted(_all_urls(decided.json())) == sorted(unsigned)
    assert _statuses(unsigned) == {200}
