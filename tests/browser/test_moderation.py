"""The moderation queue in the browser: a moderator decides from the keyboard, the counter follows, the API agrees.

The tests of this module share one server and so one queue: each leaves it empty for the next.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    PHONE,
    api,
    mint,
    no_script_errors,
    screenshot,
    serious_violations,
    sign_in,
    unique,
    upload_file,
)
from tests.reliability.harness import ServerProcess
from tests.support import scenes

SEEDS = itertools.count(100)
MODERATOR = mint("MOD-QUEUE", "user", "moderator")


def _seed(server: ServerProcess, folder: Path, count: int, *, verified: bool = False) -> list[dict[str, Any]]:
    """`count` pictures, each its own (the server refuses duplicates), each uploaded to a property of its own (the
    duplicate check compares an upload with every picture of its entity): pending unless the uploader is verified."""
    items = []
    for _ in range(count):
        property_id = unique("P")
        owner = mint(f"USR-{property_id}", "user", verified=verified, grants=(f"property:{property_id}",))
        picture = scenes.save_jpeg(_blocks(next(SEEDS)), folder / f"{property_id}.jpg")
        items.append(upload_file(server, owner, f"/v1/media/properties/{property_id}/photos", picture))
    return items


def _blocks(seed: int) -> Image.Image:
    """Large blocks of random colours: pictures far apart to the duplicate check, so each is stored quickly."""
    colours = np.random.default_rng(seed).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    return Image.fromarray(colours, "RGB").resize((240, 160), Image.Resampling.NEAREST)


def _status(server: ServerProcess, item: dict[str, Any]) -> tuple[str, str | None]:
    shown = api(server, "GET", f"/v1/media/{item['id']}", MODERATOR).json()
    return shown["moderation_status"], shown["moderation_reason"]


def _showing(page: Page, item: dict[str, Any]) -> None:
    expect(page.locator("#current-heading")).to_contain_text(f"Picture {item['id']} ")


def test_a_moderator_works_through_the_queue_with_the_keyboard(page: Page, library_server: ServerProcess,
                                                               tmp_path: Path) -> None:
    [reported] = _seed(library_server, tmp_path, 1, verified=True)  # approved; in the queue for its reports
    assert reported["moderation_status"] == "approved"
    for sub, reason in (("USR-R1", "not this property"), ("USR-R2", "shows a neighbour's car")):
        assert api(library_server, "POST", f"/v1/media/{reported['id']}/flag", mint(sub),
                   json={"reason": reason}).status_code == 200
    first, second = _seed(library_server, tmp_path, 2)
    sign_in(page, MODERATOR)
    page.goto("/library/moderation")
    page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page

    remaining = page.locator("#remaining-count")
    expect(remaining).to_have_text("3")
    _showing(page, reported)  # oldest first
    expect(page.locator("#reports-count")).to_have_text("2 open reports.")
    expect(page.locator("#reports-list")).to_contain_text("not this property")
    expect(page.locator("#reports-list")).to_contain_text("shows a neighbour's car")
    expect(page.locator("#strip li")).to_have_count(3)
    assert serious_violations(page) == []
    screenshot(page, "moderation")

    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    assert serious_violations(page) == []
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()

    page.keyboard.press("j")
    _showing(page, first)
    page.keyboard.press("k")
    _showing(page, reported)
    page.keyboard.press("a")  # approve: the reports are closed, and the next waiting item comes up
    expect(remaining).to_have_text("2")
    _showing(page, first)

    page.keyboard.press("j")
    _showing(page, second)
    page.keyboard.press("k")
    _showing(page, first)
    page.keyboard.press("r")  # reject: the reason field takes the keys, so the letters below decide nothing
    reason = page.get_by_label("Reason for rejecting")
    expect(reason).to_be_focused()
    page.get_by_role("button", name="Blurry or too dark").click()  # a quick choice fills the field
    expect(reason).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.type(" (try a jpeg, or ask the agent)")
    expect(reason).to_have_value("Blurry or too dark (try a jpeg, or ask the agent)")
    expect(remaining).to_have_text("2")
    _showing(page, first)
    page.keyboard.press("Enter")
    expect(remaining).to_have_text("1")
    _showing(page, second)

    page.get_by_role("link", name="its entity").focus()  # a focused link is no field: the keys work
    page.keyboard.press("a")
    expect(remaining).to_have_text("0")
    expect(page.get_by_role("heading", name="Nothing left to moderate")).to_be_visible()
    assert page.evaluate("window.stillTheSamePage") is True, "decided without reloading the page"
    assert serious_violations(page) == []
    screenshot(page, "moderation-empty")
    no_script_errors(page)

    assert _status(library_server, reported) == ("approved", None)
    assert _status(library_server, first) == ("rejected", "Blurry or too dark (try a jpeg, or ask the agent)")
    assert _status(library_server, second) == ("approved", None)
    history = api(library_server, "GET", f"/v1/media/{reported['id']}/reports", MODERATOR).json()
    assert {report["resolution"] for report in history["items"]} == {"approved"}
    queue = api(library_server, "GET", "/v1/media/moderation/queue", MODERATOR).json()
    assert queue["total"] == 0


def test_a_long_queue_loads_more_as_the_moderator_nears_its_end(page: Page, library_server: ServerProcess,
                                                                tmp_path: Path) -> None:
    items = _seed(library_server, tmp_path, 52)
    page.set_viewport_size(PHONE)
    sign_in(page, MODERATOR)
    page.goto("/library/moderation")
    expect(page.locator("#remaining-count")).to_have_text("52")
    expect(page.locator("#strip li")).to_have_count(50)  # the page's own first page
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the queue scrolls sideways on a phone: {width} px"
    screenshot(page, "moderation-phone")

    page.locator("#strip button").nth(47).click()  # near the end of what is loaded: the next page comes
    expect(page.locator("#strip li")).to_have_count(52)
    for _ in range(4):
        page.keyboard.press("j")
    _showing(page, items[51])
    page.keyboard.press("a")
    expect(page.locator("#remaining-count")).to_have_text("51")
    no_script_errors(page)

    for item in items[:51]:  # leave the queue empty for the next test of this module
        api(library_server, "POST", f"/v1/media/{item['id']}/moderation", MODERATOR, json={"status": "approved"})
