"""The entity page: what each viewer sees matches the list API, pages by cursor, renders in a fixed number of
queries, offers only the controls the services allow; the bulk endpoint it calls answers per item."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from mediahub.db.models import MediaItem, MediaVariant
from mediahub.db.repositories import MediaRepository
from tests.api.conftest import Tokens, add_member, assert_problem, upload
from tests.api.library.conftest import sign_in
from tests.support.audit_guard import unaudited

GALLERY = "/v1/media/properties/P1/photos"
LISTING = "/v1/media/entity/property/P1"
PAGE = "/library/property/P1"
TILE = re.compile(r'<li class="tile[^"]*" id="tile-(\d+)"')
SHOW_MORE = re.compile(r'class="show-more" data-field="gallery" data-next="([^"]+)"')


def tile_ids(html: str) -> list[int]:
    return [int(found) for found in TILE.findall(html)]


def api_ids(client: TestClient, headers: dict[str, str] | None = None, **params: Any) -> list[int]:
    answer = client.get(LISTING, headers=headers or {}, params={"field": "gallery", "limit": 100, **params})
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


def add_rows(app: FastAPI, count: int, **overrides: Any) -> list[int]:
    """Rows straight into the database (a gallery of many items without uploading each)."""
    with app.state.runtime.database.session() as session:
        unaudited(session)
        repo = MediaRepository(session)
        ids = []
        for _ in range(count):
            public_id = secrets.token_urlsafe(12)
            values: dict[str, Any] = {
                "public_id": public_id, "entity_type": "property", "entity_id": "P1", "entity_field": "gallery",
                "media_type": "image", "storage_type": "local", "original_key": f"x/{public_id}.jpg",
                "content_type": "image/jpeg", "byte_size": 100, "width": 300, "height": 200,
                "sha256": secrets.token_hex(32), "md5": "b" * 32, "moderation_status": "approved",
                "uploaded_by": "USR-OWNER",
                "meta": {"placeholders": {"blurhash": "LEHV6nWB2yk8pyo0adR*.7kCMdnj", "thumbhash": "AAAA"}},
                "variants": [MediaVariant(name="thumbnail", format="jpeg", storage_key=f"x/{public_id}_t.jpg",
                                          width=150, height=150, byte_size=10, content_type="image/jpeg")],
                **overrides,
            }
            item = MediaItem(**values)
            ids.append(repo.add(item).id)
        return ids


@contextmanager
def counted_statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app's database runs inside the block."""
    statements: list[str] = []
    engine = app.state.runtime.database.engine

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def world(client: TestClient, tokens: Tokens) -> dict[str, Any]:
    """P1 owned by USR-OWNER: an approved and a pending item of theirs, a pending one by a former member
    (USR-FORMER, who still sees it), and a rejected one."""
    add_member(client, tokens, "property:P1", "USR-OWNER")
    add_member(client, tokens, "property:P1", "USR-FORMER")
    approved = upload(client, GALLERY, tokens.header("USR-OWNER", verified=True)).json()
    pending = upload(client, GALLERY, tokens.owner()).json()
    former = upload(client, GALLERY, tokens.header("USR-FORMER")).json()
    removed = client.delete("/v1/media/entities/property/P1/members/USR-FORMER", headers=tokens.admin())
    assert removed.status_code == 204, removed.text
    rejected = upload(client, GALLERY, tokens.owner()).json()
    decided = client.post(f"/v1/media/{rejected['id']}/moderation", headers=tokens.moderator(),
                          json={"status": "rejected", "reason": "blurred"})
    assert decided.status_code == 200, decided.text
    return {"approved": approved["id"], "pending": pending["id"], "former": former["id"], "rejected": rejected["id"]}


VIEWERS = {
    "anonymous": None,
    "stranger": ("USR-STRANGER", ("user",)),
    "former member": ("USR-FORMER", ("user",)),
    "owner": ("USR-OWNER", ("user",)),
    "moderator": ("MOD-1", ("user", "moderator")),
    "admin": ("ADM-1", ("user", "admin")),
}


@pytest.mark.parametrize("viewer", VIEWERS)
def test_each_viewer_sees_what_the_list_api_shows_them(client: TestClient, tokens: Tokens, world: dict[str, Any],
                                                       viewer: str) -> None:
    who = VIEWERS[viewer]
    headers = {}
    if who is not None:
        sub, roles = who
        headers = tokens.header(sub, roles=roles)
        sign_in(client, tokens.mint(sub, roles=roles))
    page = client.get(PAGE)
    assert page.status_code == 200, page.text
    expected = {
        "anonymous": [world["approved"]],
        "stranger": [world["approved"]],
        "former member": [world["approved"], world["former"]],
    }.get(viewer, [world["approved"], world["pending"], world["former"], world["rejected"]])
    assert tile_ids(page.text) == expected
    client.cookies.clear()
    assert api_ids(client, headers) == expected
    assert f'data-count="{len(expected)}"' in page.text


@pytest.mark.parametrize(("viewer", "controls", "absent"), [
    ("anonymous", [], ["id=\"bulk\"", "dropzone", "class=\"select\"", "move-earlier", "uppy.min.js"]),
    ("stranger", [], ["id=\"bulk\"", "dropzone", "class=\"select\"", "move-earlier"]),
    ("former member", [], ["id=\"bulk\"", "dropzone", "class=\"select\"", "move-earlier"]),
    ("owner", ["dropzone", 'data-action="delete"', 'data-action="tag"', "move-earlier", "uppy.min.js"],
     ['data-action="approve"']),
    ("moderator", ['data-action="approve"', 'data-action="reject"', 'class="select"'],
     ["dropzone", 'data-action="delete"', "move-earlier"]),
    ("admin", ["dropzone", 'data-action="approve"', 'data-action="delete"', "move-earlier"], []),
])
def test_controls_are_those_the_services_allow(client: TestClient, tokens: Tokens, world: dict[str, Any], viewer: str,
                                               controls: list[str], absent: list[str]) -> None:
    who = VIEWERS[viewer]
    if who is not None:
        sign_in(client, tokens.mint(who[0], roles=who[1]))
    html = client.get(PAGE).text
    for control in controls:
        assert control in html, control
    for control in absent:
        assert control not in html, control


def test_a_signed_out_stranger_sees_approved_items_with_their_placeholder_and_alt(
        client: TestClient, app: FastAPI) -> None:
    [media_id] = add_rows(app, 1, alt_text="A pool at <dusk>")
    add_rows(app, 1, moderation_status="pending")
    page = client.get(PAGE)
    assert page.status_code == 200 and "content-security-policy" in page.headers
    assert tile_ids(page.text) == [media_id]
    tile = page.text[page.text.index(f'id="tile-{media_id}"'):]
    assert 'loading="lazy"' in tile and 'width="150" height="150"' in tile and "data-src=" in tile
    assert 'alt="A pool at &lt;dusk&gt;"' in tile and "A pool at &lt;dusk&gt;</p>" in tile  # shown, escaped
    assert "background-color: #" in tile  # the blurhash's average colour while the thumbnail loads
    assert f'href="/library/media/{media_id}"' in tile
    assert "Sign in" in page.text


def test_badges_show_status_processing_and_the_primary(client: TestClient, app: FastAPI, tokens: Tokens) -> None:
    [primary] = add_rows(app, 1, is_primary=True)
    [busy] = add_rows(app, 1, processing_status="queued", moderation_status="flagged")
    sign_in(client, tokens.mint("MOD-1", roles=("user", "moderator")))
    html = client.get(PAGE).text
    first = html[html.index(f'id="tile-{primary}"'):html.index(f'id="tile-{busy}"')]
    second = html[html.index(f'id="tile-{busy}"'):]
    assert 'badge primary' in first and "badge status approved" in first
    assert "badge status flagged" in second and '<span class="badge processing">processing</span>' in second


def test_the_page_and_show_more_follow_the_cursor(client: TestClient, app: FastAPI) -> None:
    ids = add_rows(app, 60)
    page = client.get(PAGE).text
    assert tile_ids(page) == ids[:48] and 'data-count="60"' in page
    cursor = SHOW_MORE.search(page).group(1)
    more = client.get(f"{PAGE}/tiles", params={"field": "gallery", "after": cursor})
    assert more.status_code == 200
    assert tile_ids(more.text) == ids[48:] and 'data-next=""' in more.text
    # The API pages the same way, by the cursors it answers.
    seen, after = [], None
    while True:
        answer = client.get(LISTING, params={"limit": 25, **({"after": after} if after else {})}).json()
        seen += [item["id"] for item in answer["items"]]
        after = answer["next"]
        if after is None:
            break
    assert seen == ids


@pytest.mark.parametrize("cursor", ["nope", "!!!", "W10", "WyJnYWxsZXJ5IiwxLDFd" + "A" * 300,
                                    "WyJnYWxsZXJ5IiwiMSIsMV0", "WyJnYWxsZXJ5IiwxLC0xXQ", "eyJhIjoxfQ"])
def test_a_malformed_cursor_is_422_on_the_page_and_the_api(client: TestClient, cursor: str) -> None:
    page = client.get(f"{PAGE}/tiles", params={"field": "gallery", "after": cursor})
    assert page.status_code == 422 and "text/html" in page.headers["content-type"]
    assert "invalid_cursor" in page.text or "validation_error" in page.text
    answer = client.get(LISTING, params={"after": cursor})
    assert answer.status_code == 422 and answer.json()["code"] in ("invalid_cursor", "validation_error")


def test_tiles_of_one_item_are_only_of_this_entity(client: TestClient, app: FastAPI, tokens: Tokens) -> None:
    [media_id] = add_rows(app, 1)
    assert tile_ids(client.get(f"{PAGE}/tiles", params={"field": "gallery", "media_id": media_id}).text) == [media_id]
    assert client.get("/library/property/P2/tiles", params={"field": "gallery", "media_id": media_id}).status_code == 404
    [hidden] = add_rows(app, 1, moderation_status="pending")
    assert client.get(f"{PAGE}/tiles", params={"field": "gallery", "media_id": hidden}).status_code == 404


@pytest.mark.parametrize("viewer", ["anonymous", "stranger", "owner", "moderator"])
def test_a_page_costs_the_same_queries_for_5_items_as_for_60(client: TestClient, app: FastAPI, tokens: Tokens,
                                                             viewer: str) -> None:
    """No query per item: the statements of one render do not grow with the items shown."""
    add_member(client, tokens, "property:P1", "USR-OWNER")
    if viewer != "anonymous":
        sub, roles = {"stranger": ("USR-S", ("user",)), "owner": ("USR-OWNER", ("user",)),
                      "moderator": ("MOD-1", ("user", "moderator"))}[viewer]
        sign_in(client, tokens.mint(sub, roles=roles))
    ids = add_rows(app, 5) + add_rows(app, 2, moderation_status="pending", uploaded_by="USR-S")
    counts = []
    for more in (0, 55):
        ids += add_rows(app, more)
        with counted_statements(app) as statements:
            page = client.get(PAGE)
        assert page.status_code == 200
        assert len(tile_ids(page.text)) == (7 if more == 0 else 48) - (2 if viewer == "anonymous" and not more else 0)
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


def test_bulk_actions_answer_per_item_through_the_session(client: TestClient, app: FastAPI, tokens: Tokens) -> None:
    """What the page's script sends: one request, a result per item; a forbidden and a missing item fail alone."""
    add_member(client, tokens, "property:P1", "USR-OWNER")
    mine = add_rows(app, 2)
    [elsewhere] = add_rows(app, 1, entity_id="P2", uploaded_by="USR-OTHER")
    csrf = sign_in(client, tokens.mint("USR-OWNER"))
    ids = [mine[0], elsewhere, 987654, mine[1]]
    answer = client.post("/v1/media/batch", json={"action": "tag", "ids": ids, "tags": "pool, summer"},
                         headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["succeeded"], body["failed"]) == (2, 2)
    results = {result["id"]: result for result in body["results"]}
    assert [result["id"] for result in body["results"]] == ids
    assert results[mine[0]]["ok"] and results[mine[0]]["item"]["tags"] == ["pool", "summer"]
    assert results[elsewhere]["error"]["code"] == "forbidden"
    assert results[987654]["error"] == {"code": "media_not_found", "message": "no such media item"}
    approve = client.post("/v1/media/batch", json={"action": "approve", "ids": mine}, headers={"X-CSRF-Token": csrf})
    assert {result["error"]["code"] for result in approve.json()["results"]} == {"moderator_required"}
    refused = client.post("/v1/media/batch", json={"action": "delete", "ids": mine})
    assert_problem(refused, 403, "csrf_failed")


def test_the_primary_is_first_on_the_page_and_in_the_api(client: TestClient, app: FastAPI, tokens: Tokens) -> None:
    add_member(client, tokens, "property:P1", "USR-OWNER")
    first, second, third = add_rows(app, 3)
    owner = tokens.owner()
    made = client.post("/v1/media/batch", json={"action": "set_primary", "ids": [third]}, headers=owner)
    assert made.json()["results"][0]["item"]["is_primary"] is True
    assert api_ids(client) == [third, first, second]
    assert tile_ids(client.get(PAGE).text) == [third, first, second]
    # A reorder of what a page shows that puts the primary elsewhere keeps it first.
    order = client.put(f"{LISTING}/order", json={"field": "gallery", "ids": [second, third], "partial": True},
                       headers=owner)
    assert order.status_code == 200, order.text
    assert api_ids(client) == [third, second, first]
    order = client.put(f"{LISTING}/order", json={"field": "gallery", "ids": [first, second], "partial": True},
                       headers=owner)
    assert [item["id"] for item in order.json()["items"]] == [first, second]
    assert api_ids(client) == [third, first, second]
    listed = client.get(LISTING, params={"field": "gallery"}).json()["items"]
    assert [item["position"] for item in listed] == [0, 1, 2]


def test_kinds_by_name_or_plural_and_nested_kinds_by_their_parent(client: TestClient, tokens: Tokens) -> None:
    assert client.get("/library/properties/P1").status_code == 200
    amenity = client.get("/library/amenity/A1", params={"parent_id": "C1"})
    assert amenity.status_code == 200 and 'href="/library/community/C1">community C1</a>' in amenity.text
    assert 'data-parent-id="C1"' in amenity.text
    for path, params, status in (("/library/amenity/A1", {}, 422), ("/library/planet/P1", {}, 404),
                                 ("/library/property/bad!id", {}, 422), ("/library/property/P1", {"per_page": 0}, 422),
                                 ("/library/property/P1/tiles", {"field": "attic"}, 422),
                                 ("/library/property/P1", {"parent_id": "C1"}, 422)):
        answer = client.get(path, params=params)
        assert answer.status_code == status, (path, answer.text)
        assert "text/html" in answer.headers["content-type"]


def test_sign_in_from_the_page_comes_back_to_it(client: TestClient, tokens: Tokens) -> None:
    page = client.get("/library/amenity/A1", params={"parent_id": "C1"}).text
    assert 'href="/library/login?next=/library/amenity/A1%3Fparent_id%3DC1">Sign in</a>' in page
