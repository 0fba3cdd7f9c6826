"""The moderation queue page (`/library/moderation`): the API's queue, rendered into the page for moderators and
admins; everyone else meets the API's own refusal."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mediahub.api.library.pages.moderation import FIRST_PAGE
from tests.api.conftest import Tokens, assert_problem, upload
from tests.api.library.conftest import sign_in

GALLERY = "/v1/media/properties/123/photos"
QUEUE_DATA = re.compile(r'<script type="application/json" id="queue-data">(.*?)</script>', re.S)


def _queue_on_page(text: str) -> dict[str, Any]:
    found = QUEUE_DATA.search(text)
    assert found, "the queue's first page is in the page"
    return json.loads(found.group(1))


def _comparable(queue: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a moderator decides on; not the URLs, which a pending item's signature makes differ by the second."""
    return [(i["id"], i["moderation_status"], i["uploaded_by"], i["open_reports"],
             [(r["reporter"], r["reason"]) for r in i["reports"]]) for i in queue["items"]]


def test_anyone_but_moderators_and_admins_gets_the_apis_refusal(client: TestClient, tokens: Tokens) -> None:
    assert client.get("/library/moderation", follow_redirects=False).headers["location"] == \
        "/library/login?next=%2Flibrary%2Fmoderation"
    api = assert_problem(client.get("/v1/media/moderation/queue", headers=tokens.user()), 403)
    sign_in(client, tokens.mint("USR-STRANGER"))
    page = client.get("/library/moderation")
    assert page.status_code == 403 and api["code"] in page.text
    assert "queue-data" not in page.text


@pytest.mark.parametrize("roles", [("user", "moderator"), ("user", "admin")])
def test_the_page_carries_the_apis_queue_with_the_reports_and_their_reasons(
        client: TestClient, tokens: Tokens, roles: tuple[str, ...]) -> None:
    grantee = tokens.header("USR-G", grants=("property:123",))
    pending = [upload(client, GALLERY, grantee).json() for _ in range(2)]
    reported = upload(client, GALLERY, tokens.header("USR-G", verified=True, grants=("property:123",))).json()
    for sub, reason in (("USR-A", "not this property"), ("USR-B", "shows <b>a face</b>")):
        client.post(f"/v1/media/{reported['id']}/flag", headers=tokens.user(sub), json={"reason": reason})
    headers = tokens.header("MOD-X", roles=roles)
    api = client.get("/v1/media/moderation/queue", headers=headers, params={"limit": FIRST_PAGE}).json()

    sign_in(client, tokens.mint("MOD-X", roles=roles))
    page = client.get("/library/moderation")

    assert page.status_code == 200, page.text
    shown = _queue_on_page(page.text)
    assert _comparable(shown) == _comparable(api)
    assert [i["id"] for i in shown["items"]] == [pending[0]["id"], pending[1]["id"], reported["id"]], "oldest first"
    assert shown["items"][2]["open_reports"] == 2
    assert [r["reason"] for r in shown["items"][2]["reports"]] == ["not this property", "shows <b>a face</b>"]
    assert "<b>a face</b>" not in page.text, "a reason is data in the page, never markup"
    assert re.search(r'<strong id="remaining-count">3</strong> left', page.text)
    assert re.search(r'<div id="workspace" class="workspace"\s*>', page.text) and \
        re.search(r'<section id="empty"[^>]*hidden', page.text)


def test_the_page_renders_the_first_page_and_the_total(client: TestClient, tokens: Tokens) -> None:
    grantee = tokens.header("USR-G", grants=("property:123",))
    for _ in range(FIRST_PAGE + 1):
        assert upload(client, GALLERY, grantee).status_code == 201
    sign_in(client, tokens.mint("MOD-1", roles=("user", "moderator")))
    shown = _queue_on_page(client.get("/library/moderation").text)
    assert (len(shown["items"]), shown["total"], shown["offset"], shown["limit"]) == (FIRST_PAGE, FIRST_PAGE + 1, 0,
                                                                                      FIRST_PAGE)


def test_an_empty_queue_says_so(client: TestClient, tokens: Tokens) -> None:
    sign_in(client, tokens.mint("MOD-1", roles=("user", "moderator")))
    page = html.unescape(client.get("/library/moderation").text)
    assert "Nothing left to moderate" in page
    assert re.search(r'<section id="empty"[^>]*>', page).group(0).count("hidden") == 0
    assert re.search(r'<div id="workspace" class="workspace"\s*hidden>', page)
    assert _queue_on_page(page) == {"items": [], "total": 0, "offset": 0, "limit": FIRST_PAGE}
