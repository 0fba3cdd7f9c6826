"""CDN_BASE_URL and the purge hook over HTTP: the URLs the API answers with, and the purges its changes send
to a real HTTP server standing in for the CDN (the app's own job runner makes the calls)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mediahub.db.models import Job
from mediahub.media.job_kinds import CDN_PURGE
from tests.api.conftest import AppFactory, Tokens, add_member, upload
from tests.support.cdn import FakeCdn
from tests.support.corpus import CORPUS_DIR

CDN = "https://cdn.example.net"
TOKEN = "a-purge-token-for-these-tests"
GALLERY = "/v1/media/properties/123/photos"
OTHER_PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"
JOBS_TIMEOUT = 60.0  # a bound on a wait for the app's own runner, not a measurement


@pytest.fixture
def client(app_factory: AppFactory, fake_cdn: FakeCdn, tokens: Tokens) -> Iterator[TestClient]:
    """USR-1 owns property 123."""
    app = app_factory(cdn_base_url=CDN, cdn_purge_url=fake_cdn.url, cdn_purge_token=TOKEN, job_backoff_seconds=0)
    with TestClient(app) as test_client:
        add_member(test_client, tokens, "property:123", "USR-1")
        yield test_client


def _stored(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def _file_urls(item: dict[str, Any]) -> set[str]:
    return {item["url"], *(v["url"] for formats in item["variants"].values() for v in formats.values())}


def _purged_when_done(client: TestClient, cdn: FakeCdn) -> list[dict[str, Any]]:
    """The bodies purged, once every purge job the app queued has finished."""
    database = client.app.state.runtime.database
    deadline = time.monotonic() + JOBS_TIMEOUT
    while True:
        with database.session() as session:
            statuses = set(session.scalars(select(Job.status).where(Job.kind == CDN_PURGE)))
        if statuses and statuses <= {"done", "failed"}:
            return cdn.bodies
        assert time.monotonic() < deadline, f"purge jobs unfinished: {statuses}"
        time.sleep(0.05)


def test_approved_items_are_answered_with_cdn_urls_and_pending_ones_with_signed_api_urls(
        client: TestClient, tokens: Tokens) -> None:
    approved = _stored(upload(client, GALLERY, tokens.header("USR-1", verified=True)))
    pending = _stored(upload(client, GALLERY, tokens.header("USR-1"), file=OTHER_PHOTO))

    assert approved["moderation_status"] == "approved" and len(_file_urls(approved)) > 1
    for url in _file_urls(approved):
        assert url.startswith(f"{CDN}/v1/media/files/") and "?" not in url, url
        assert client.get(urlsplit(url).path).status_code == 200, "the CDN's origin, the API, serves its path"
    assert pending["moderation_status"] == "pending"
    for url in _file_urls(pending):
        assert url.startswith("http://testserver/v1/media/files/") and "signature=" in url, url


def test_a_reject_over_http_purges_the_urls_the_api_had_answered_with(
        client: TestClient, tokens: Tokens, fake_cdn: FakeCdn) -> None:
    item = _stored(upload(client, GALLERY, tokens.header("USR-1", verified=True)))

    response = client.post(f"/v1/media/{item['id']}/moderation", headers=tokens.moderator(),
                           json={"status": "rejected"})

    assert response.status_code == 200, response.text
    assert not response.json()["url"].startswith(CDN), "a rejected item's URL points at the API"
    purged = _purged_when_done(client, fake_cdn)
    assert {body["reason"] for body in purged} == {"reject"}
    urls = {body["url"] for body in purged if "url" in body}
    assert {url for url in urls if "/v1/media/files/" in url} == _file_urls(item)
    assert f"{CDN}/v1/images/{item['public_id']}/small.webp" in urls
    assert [body["prefix"] for body in purged if "prefix" in body] == [f"{CDN}/v1/images/{item['public_id']}/t/"]
    assert {call.headers["authorization"] for call in fake_cdn.calls} == {f"Bearer {TOKEN}"}


def test_a_delete_over_http_purges(client: TestClient, tokens: Tokens, fake_cdn: FakeCdn) -> None:
    item = _stored(upload(client, GALLERY, tokens.header("USR-1", verified=True)))

    assert client.delete(f"/v1/media/{item['id']}", headers=tokens.header("USR-1")).status_code == 204

    purged = _purged_when_done(client, fake_cdn)
    assert {body["reason"] for body in purged} == {"delete"}
    assert _file_urls(item) <= {body.get("url") for body in purged}
