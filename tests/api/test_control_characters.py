"""Text that would reach the database with a NUL (PostgreSQL refuses it), another control character
or a lone surrogate (no driver encodes it) is a 422 `control_character` on every backend, in JSON
bodies, form fields, path segments and query strings; JSON nested deeper than Python recurses is a
400, never a 500. Nothing stored before changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import HOPPER, AppFactory, Tokens, add_member, assert_problem, upload

GALLERY = "/v1/media/properties/123/photos"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def world(app_factory: AppFactory, migrated_database_url: str, tokens: Tokens) -> Iterator[tuple[TestClient, dict]]:
    with TestClient(app_factory(database_url=migrated_database_url)) as client:
        add_member(client, tokens, "property:123", "USR-OWNER")
        item = upload(client, GALLERY, tokens.owner(), data={"caption": "before", "tags": "kept"}).json()
        yield client, item


def _bad_requests(item: dict[str, Any], tokens: Tokens, bad: str) -> list[tuple[str, str, dict[str, Any]]]:
    """One request per way text reaches the database, with `bad` inside the text."""
    owner, moderator, admin = tokens.owner(), tokens.moderator(), tokens.admin()
    file = {"file": ("a.jpg", HOPPER.read_bytes(), "image/jpeg")}
    batch = [("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))]
    target = {"entity_type": "property", "entity_id": "123", "entity_field": "gallery"}
    media = f"/v1/media/{item['id']}"
    quoted = quote(bad, safe="")
    return [
        ("POST", GALLERY, {"headers": owner, "files": file, "data": {"caption": f"a{bad}b"}}),
        ("POST", GALLERY, {"headers": owner, "files": file, "data": {"alt_text": f"a{bad}b"}}),
        ("POST", GALLERY, {"headers": owner, "files": file, "data": {"tags": f"ok,a{bad}b"}}),
        ("POST", GALLERY, {"headers": owner, "files": file, "data": {"tags": json.dumps([f"a{bad}b"])}}),
        ("POST", "/v1/media/batch/upload", {"headers": admin, "files": batch, "data": {**target, "caption": bad}}),
        ("PATCH", media, {"headers": owner, "json": {"caption": f"a{bad}b"}}),
        ("PATCH", media, {"headers": owner, "json": {"alt_text": f"a{bad}b"}}),
        ("PATCH", media, {"headers": owner, "json": {"tags": [f"a{bad}b"]}}),
        ("POST", f"{media}/flag", {"headers": tokens.user(), "json": {"reason": f"a{bad}b"}}),
        ("POST", f"{media}/moderation", {"headers": moderator, "json": {"status": "rejected", "reason": bad}}),
        ("PUT", "/v1/media/entity/property/123/order", {"headers": owner,
                                                        "json": {"field": f"gallery{bad}", "ids": [item["id"]]}}),
        ("PUT", f"/v1/media/entities/property/123/members/USR{quoted}X", {"headers": admin, "json": {"role": "owner"}}),
        ("DELETE", f"/v1/media/entities/property/123/members/USR{quoted}X", {"headers": admin}),
        ("GET", f"/v1/media/public/{item['public_id'][:5]}{quoted}", {}),
        ("GET", f"/v1/media/entity/property/12{quoted}3", {}),
        ("GET", f"/v1/media/entity/prop{quoted}erty/123", {}),
        ("GET", "/v1/media/entity/property/123", {"params": {"field": f"gallery{bad}"}}),
    ]


# NUL (the 500 on PostgreSQL), other C0 controls, DEL, and a lone surrogate (JSON may escape one).
BAD_TEXT = {"nul": "\x00", "escape": "\x1b", "bell": "\x07", "del": "\x7f"}


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_control_characters_are_refused_everywhere_on_every_database(world, tokens: Tokens, bad: str) -> None:
    client, item = world
    failures = []
    for method, path, kwargs in _bad_requests(item, tokens, bad):
        response = client.request(method, path, **kwargs)
        if response.status_code != 422 or response.json().get("code") != "control_character":
            failures.append((method, path.encode("unicode_escape").decode(), response.status_code, response.text[:200]))
    assert failures == []
    # The batch's target is checked against the kind table before its text fields: refused there.
    refused = client.post("/v1/media/batch/upload", headers=tokens.admin(),
                          files=[("files", ("a.jpg", HOPPER.read_bytes(), "image/jpeg"))],
                          data={"entity_type": "property", "entity_id": "123", "entity_field": f"gallery{bad}"})
    assert refused.status_code == 422, refused.text
    _assert_unchanged(client, tokens, item)


def test_lone_surrogates_in_json_are_refused(world, tokens: Tokens) -> None:
    client, item = world
    for body in ('{"caption": "a\\ud800b"}', '{"tags": ["\\udfff"]}', '{"alt_text": "\\ud83d"}'):
        response = client.patch(f"/v1/media/{item['id']}", headers={**tokens.owner(), **JSON}, content=body)
        assert_problem(response, 422, "control_character")
    _assert_unchanged(client, tokens, item)


def test_free_text_keeps_tabs_and_line_breaks_names_do_not(world, tokens: Tokens) -> None:
    client, item = world
    changed = client.patch(f"/v1/media/{item['id']}", headers=tokens.owner(),
                           json={"caption": "first line\r\nsecond\tline", "tags": ["café", "日本"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["caption"] == "first line\r\nsecond\tline" and changed.json()["tags"] == ["café", "日本"]
    assert_problem(client.patch(f"/v1/media/{item['id']}", headers=tokens.owner(), json={"tags": ["a\nb"]}),
                   422, "control_character")


def test_a_token_subject_with_a_nul_is_refused(world, tokens: Tokens) -> None:
    client, _ = world
    response = upload(client, "/v1/media/users/USR%00X/avatar", tokens.header("USR\x00X"))
    assert_problem(response, 401, "invalid_token")
    assert client.get("/v1/media/entity/user/USR").json()["total"] == 0


@pytest.mark.parametrize("depth", [200, 5_000, 100_000])
def test_deeply_nested_json_is_a_client_error(world, tokens: Tokens, depth: int) -> None:
    client, item = world
    nested = "[" * depth + "]" * depth
    as_json = client.patch(f"/v1/media/{item['id']}", headers={**tokens.owner(), **JSON},
                           content=f'{{"tags": {nested}}}')
    assert as_json.status_code in (400, 422), as_json.text
    assert as_json.json()["code"] in ("malformed_json", "validation_error")
    anonymous = client.post("/v1/media/batch/delete", headers=JSON, content=f'{{"ids": {nested}}}')
    assert anonymous.status_code in (400, 401), anonymous.text
    form_depth = min(depth, 30_000)  # a form field holds 64 KiB
    in_form = upload(client, GALLERY, tokens.owner(), data={"tags": "[" * form_depth + "]" * form_depth})
    assert_problem(in_form, 422, "validation_error")
    _assert_unchanged(client, tokens, item)


def _assert_unchanged(client: TestClient, tokens: Tokens, item: dict[str, Any]) -> None:
    listing = client.get("/v1/media/entity/property/123", headers=tokens.owner()).json()
    assert [(i["id"], i["caption"], i["tags"], i["moderation_status"]) for i in listing["items"]] == [
        (item["id"], "before", ["kept"], "pending")]
    members = client.put("/v1/media/entities/property/123/members/USR-OWNER", headers=tokens.admin(),
                         json={"role": "owner"})
    assert members.status_code == 200
