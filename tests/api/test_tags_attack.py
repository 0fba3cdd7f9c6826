"""Attacks on the review API of machine tags."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Tokens, add_member, assert_problem, upload
from tests.support.taggers import FixedTagger


@pytest.fixture
def client(app_factory: AppFactory, tokens: Tokens) -> Any:
    with TestClient(app_factory(tagger=FixedTagger())) as test_client:
        add_member(test_client, tokens, "post:9", "USR-OWNER")
        yield test_client


@pytest.mark.parametrize("path", ["/v1/media/users/USR-OWNER/avatar", "/v1/media/posts/9/media"])
def test_a_room_is_named_only_for_the_listing_photos_that_have_rooms(client: TestClient, tokens: Tokens, path: str):
    """The library offers the room form only on room-tagged fields; the API refuses the same: an avatar or a post
    named a kitchen would be a wrong label in the export and a wrong hit of `?tag=`."""
    answer = upload(client, path, tokens.header("USR-OWNER", verified=True))
    assert answer.status_code == 201, answer.text
    item = answer.json()
    assert_problem(client.put(f"/v1/media/{item['id']}/room", json={"label": "kitchen"}, headers=tokens.moderator()),
                   409, "not_room_tagged")
    detail = client.get(f"/v1/media/{item['id']}", headers=tokens.moderator()).json()
    assert detail["machine_tags"] == []
