"""Machine tags in the browser: an entity's page filtered by tag, and a moderator correcting a photo's room from its
page. The server runs in this process (uvicorn in a thread) with the fake tagger: a classifier the test controls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from mediahub.api.app import create_app
from mediahub.db import migrate
from tests.api.conftest import LiveServer, free_port, make_settings, serving
from tests.browser.conftest import api, mint, no_script_errors, screenshot, serious_violations, sign_in, unique
from tests.reliability.harness import JWT_SECRET
from tests.support.corpus import CORPUS_DIR
from tests.support.taggers import FixedTagger, room

PHOTO = CORPUS_DIR / "images/good/jpeg_flower.jpg"
TAGGER = FixedTagger()


@pytest.fixture(scope="module")
def library_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Replaces the module's `mediahub serve`: the same app, composed with the fake tagger."""
    workdir = tmp_path_factory.mktemp("tags-server")
    settings = make_settings(workdir, jwt_secret=JWT_SECRET)
    migrate.upgrade(settings.database_url)
    with serving(create_app(settings, TAGGER), free_port()) as server:
        yield server


def _tagged_upload(server: LiveServer, token: str, property_id: str) -> dict[str, Any]:
    with PHOTO.open("rb") as handle:
        answer = api(server, "POST", f"/v1/media/properties/{property_id}/photos", token,  # type: ignore[arg-type]
                     files={"file": (PHOTO.name, handle)})
    assert answer.status_code == 201, answer.text
    item = answer.json()
    deadline = time.monotonic() + 30
    while not api(server, "GET", f"/v1/media/{item['id']}", token).json()["machine_tags"]:  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "the tagging job did not run"
        time.sleep(0.1)
    return item


def _tiles(page: Page) -> set[str]:
    return set(page.locator("#grid-gallery > .tile").evaluate_all("tiles => tiles.map(t => t.dataset.id)"))


def test_filter_by_tag_and_correct_a_room(page: Page, library_server: LiveServer) -> None:
    property_id = unique("P")
    moderator, admin = mint("MOD-TAGS", "user", "moderator"), mint("ADM-TAGS", "user", "admin")
    TAGGER.tags = [room("kitchen", 0.9)]
    kitchen = _tagged_upload(library_server, admin, property_id)
    TAGGER.tags = [room("bathroom", 0.8)]
    bathroom = _tagged_upload(library_server, admin, property_id)
    sign_in(page, moderator)

    page.goto(f"/library/property/{property_id}")
    assert _tiles(page) == {str(kitchen["id"]), str(bathroom["id"])}
    page.get_by_label("Tag", exact=True).fill("kitchen")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#grid-gallery > .tile")).to_have_count(1)
    assert _tiles(page) == {str(kitchen["id"])}
    assert "tag=kitchen" in page.url

    page.goto(f"/library/media/{kitchen['id']}")
    table = page.locator("#machine-tag-table")
    expect(table.locator("tr[data-label='kitchen']")).to_contain_text("suggested")
    page.get_by_label("Room", exact=True).select_option("bedroom")
    page.get_by_role("button", name="Set the room").click()
    expect(table.locator("tr[data-label='bedroom']")).to_contain_text("accepted")
    expect(table.locator("tr[data-label='bedroom']")).to_contain_text("moderator")
    expect(table.locator("tr[data-label='kitchen']")).to_contain_text("rejected")
    assert serious_violations(page) == []
    screenshot(page, "item-machine-tags")

    page.goto(f"/library/property/{property_id}?tag=bedroom")
    expect(page.locator("#grid-gallery > .tile")).to_have_count(1)
    assert _tiles(page) == {str(kitchen["id"])}
    page.goto(f"/library/property/{property_id}?tag=kitchen")
    expect(page.locator("#grid-gallery > .tile")).to_have_count(0)
    no_script_errors(page)
    history = api(library_server, "GET", f"/v1/media/{kitchen['id']}/history", moderator).json()  # type: ignore[arg-type]
    assert history["items"][0]["action"] == "tags.correct" and history["items"][0]["actor"] == "MOD-TAGS"
