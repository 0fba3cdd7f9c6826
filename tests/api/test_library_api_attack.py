"""Attacks on the public API through the library's session cookie: what a cookie changes that a bearer token did
not, and the API routes the library added."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mediahub.api.schemas import BATCH_IDS_MAX
from mediahub.dedup import policy
from mediahub.media import duplicates
from tests.api.conftest import CORPUS_DIR, HOPPER, Tokens, assert_problem, upload
from tests.api.library.conftest import sign_in

GALLERY = "/v1/media/properties/P1/photos"


@pytest.fixture
def pending(client: TestClient, tokens: Tokens) -> int:
    """A pending item of an unverified uploader: its answers carry private metadata and signed URLs."""
    answer = upload(client, GALLERY, tokens.header("USR-UP", grants=("property:P1",)), HOPPER)
    assert answer.status_code == 201, answer.text
    assert answer.json()["moderation_status"] == "pending"
    return answer.json()["id"]


@pytest.mark.parametrize("path", ["/v1/media/{id}", "/v1/media/entity/property/P1", "/v1/media/{id}/reports",
                                  "/v1/media/moderation/queue", "/v1/media/duplicates", "/v1/media/analytics/storage",
                                  "/v1/media/analytics/uploads", "/v1/media/{id}/similar"])
def test_no_shared_cache_keeps_an_answer_made_for_a_session_cookie(
        client: TestClient, tokens: Tokens, pending: int, path: str) -> None:
    """Shared caches never store an answer to a request with an Authorization header (RFC 9111 3.5), which kept
    the API's answers for one caller out of them; a Cookie has no such rule, and these answers had no
    Cache-Control: a proxy or CDN that caches JSON could hand a moderator's view (private metadata, reporters,
    signed URLs of pending items) to the next caller of the same URL."""
    sign_in(client, tokens.mint("ADM-1", roles=("user", "admin")))
    answer = client.get(path.format(id=pending))
    assert answer.status_code == 200, answer.text
    cache_control = answer.headers.get("cache-control", "")
    assert "private" in cache_control and "no-store" in cache_control, cache_control


def test_public_files_stay_public_for_a_session_cookie(client: TestClient, tokens: Tokens, pending: int) -> None:
    """The library's pages load pictures with the cookie: an approved item's objects are the same for everyone,
    and keep their public caching."""
    admin = tokens.admin()
    assert client.post(f"/v1/media/{pending}/moderation", headers=admin, json={"status": "approved"}).status_code == 200
    url = client.get(f"/v1/media/{pending}").json()["variants"]["thumbnail"]["jpeg"]["url"]
    sign_in(client, tokens.mint("ADM-1", roles=("user", "admin")))
    answer = client.get(url)
    assert answer.status_code == 200 and answer.headers["cache-control"].startswith("public"), answer.headers


def test_a_page_of_look_alikes_never_looks_up_copies_of_an_older_item(
        client: TestClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    """One picture uploaded again and again (a builder's logo on every listing) made each copy a perceptual
    look-up answered by every other copy: a page of look-alikes did copies x copies work before finding that each
    copy is left to the oldest, and 1,900 copies of one small PNG kept GET /v1/media/duplicates?kind=near&limit=1
    busy for minutes. Copies of an older item are now passed over before any look-up."""
    admin = tokens.admin()
    copies = [upload(client, f"/v1/media/properties/LOGO{n}/photos", admin, HOPPER).json()["id"] for n in range(6)]
    other = upload(client, "/v1/media/properties/X/photos", admin, CORPUS_DIR / "images/good/jpeg_flower.jpg")
    assert other.status_code == 201
    looked_up: list[int] = []
    find_similar = policy.find_similar

    def counted(session, probe, *args, **kwargs):  # type: ignore[no-untyped-def]
        looked_up.append(probe.id)
        return find_similar(session, probe, *args, **kwargs)

    monkeypatch.setattr(policy, "find_similar", counted)
    answer = client.get("/v1/media/duplicates", params={"kind": "near"}, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["groups"] == [] and answer.json()["next"] is None
    assert sorted(looked_up) == [copies[0], other.json()["id"]]  # the oldest copy stands for the others


def test_a_group_of_many_copies_lists_a_bounded_part_that_one_request_can_resolve(
        client: TestClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group had every member in every listing: 1,900 copies of one picture were a 2.5 MB page of 600 px
    pictures, and its buttons could not act on what they showed: "keep the chosen one, delete the rest" sent 1,899
    ids where the API takes 100 (422), "keep all" 1,900 where it takes 1,000. A group now lists at most
    MEMBERS_SHOWN members (its first, the one it would keep and its newest among them) and says how many it has."""
    assert duplicates.MEMBERS_SHOWN <= BATCH_IDS_MAX + 1  # the others shown fit one resolve request
    monkeypatch.setattr(duplicates, "MEMBERS_SHOWN", 4)
    admin = tokens.admin()
    copies = [upload(client, f"/v1/media/properties/C{n}/photos", admin, HOPPER,
                     data={"is_primary": "true"} if n == 4 else {}).json()["id"] for n in range(7)]
    (group,) = client.get("/v1/media/duplicates", headers=admin).json()["groups"]
    shown = [member["item"]["id"] for member in group["items"]]
    assert group["size"] == 7 and group["keep"] == copies[4]
    assert shown == [copies[0], copies[1], copies[4], copies[6]]  # in the group's order

    csrf = sign_in(client, tokens.mint("ADM-2", roles=("user", "admin")))
    resolved = client.post("/v1/media/duplicates/resolve", headers={"X-CSRF-Token": csrf}, json={
        "group": group["key"], "keep": copies[4], "delete": [i for i in shown if i != copies[4]]})
    assert resolved.status_code == 200 and all(result["ok"] for result in resolved.json()["results"])
    (rest,) = client.get("/v1/media/duplicates").json()["groups"]  # listed again, with the ones not shown before
    assert rest["size"] == 4 and [member["item"]["id"] for member in rest["items"]] == copies[2:6]
    kept = client.post("/v1/media/duplicates/keep-all", headers={"X-CSRF-Token": csrf},
                       json={"group": rest["key"], "ids": [member["item"]["id"] for member in rest["items"]]})
    assert kept.status_code == 200 and client.get("/v1/media/duplicates").json()["groups"] == []


@pytest.mark.parametrize("sent", ["é" * 64, "0" * 63 + "ÿ"])
def test_a_csrf_header_that_is_not_ascii_is_refused_not_a_500(client: TestClient, tokens: Tokens, sent: str) -> None:
    """A header byte above 127 (read as Latin-1) made hmac.compare_digest raise TypeError: a 500 for every
    state-changing call with the session."""
    sign_in(client, tokens.mint("ADM-1", roles=("user", "admin")))
    answer = client.post("/v1/media/batch/delete", json={"ids": [1]}, headers={"X-CSRF-Token": sent.encode("latin-1")})
    assert_problem(answer, 403, "csrf_failed")
