"""The item page in the browser: editing its text, the focal point picker re-cropping the thumbnail, copy buttons,
and how it reads (axe-core) on a desktop and a phone."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page, expect

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
from tests.support.corpus import CORPUS_DIR

PHOTO = CORPUS_DIR / "images/good/gps_nikon_DSCN0010.jpg"


def _owner(property_id: str) -> str:
    """An owner by grant, unverified: their uploads wait for a moderator (the owner still sees them)."""
    return mint(f"USR-{property_id}", "user", grants=(f"property:{property_id}",))


def _upload(server: ServerProcess, token: str, property_id: str, file: Path, **data: str) -> dict[str, Any]:
    item = upload_file(server, token, f"/v1/media/properties/{property_id}/photos", file, **data)
    assert item["moderation_status"] == "pending"
    return item


def _pixels(server: ServerProcess, token: str, url: str) -> np.ndarray:
    answer = api(server, "GET", url.removeprefix(server.url), token)
    assert answer.status_code == 200, answer.text
    return np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB")).astype(int)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def test_editing_alt_text_caption_and_tags_shows_errors_in_place_and_persists(
        page: Page, library_server: ServerProcess) -> None:
    property_id = unique("P")
    token = _owner(property_id)
    item = _upload(library_server, token, property_id, PHOTO)
    sign_in(page, token)
    page.goto(f"/library/media/{item['id']}")

    page.get_by_label("Tags", exact=True).fill(f"garden, {'x' * 65}")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#tags-error")).to_be_visible()
    expect(page.get_by_label("Tags", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#text-status")).to_contain_text("Not saved")

    page.get_by_label("Alt text", exact=True).fill("A stone house behind an olive tree")
    page.get_by_label("Caption", exact=True).fill("The garden, late afternoon")
    page.get_by_label("Tags", exact=True).fill("garden, olive , garden, house")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#text-status")).to_have_text("Saved.")
    expect(page.locator("#tags-error")).to_be_hidden()
    expect(page.get_by_label("Tags", exact=True)).to_have_value("garden, olive, house")  # as the API stored them

    page.reload()
    expect(page.get_by_label("Alt text", exact=True)).to_have_value("A stone house behind an olive tree")
    expect(page.get_by_label("Caption", exact=True)).to_have_value("The garden, late afternoon")
    expect(page.locator("#display-image")).to_have_attribute("alt", "A stone house behind an olive tree")
    stored = api(library_server, "GET", f"/v1/media/{item['id']}", token).json()
    assert (stored["alt_text"], stored["caption"], stored["tags"]) == (
        "A stone house behind an olive tree", "The garden, late afternoon", ["garden", "olive", "house"])
    no_script_errors(page)


def test_the_focal_point_picker_moves_the_thumbnail_crop(page: Page, library_server: ServerProcess,
                                                         tmp_path: Path) -> None:
    property_id = unique("P")
    token = _owner(property_id)
    scene = scenes.portrait_at_right()  # a face in the bottom-right corner of a 3:1 picture
    item = _upload(library_server, token, property_id, scenes.save_jpeg(scene, tmp_path / "agent.jpg"))
    face = scenes.right_square(scene, 150)
    sign_in(page, token)
    page.goto(f"/library/media/{item['id']}")
    crop = page.locator('img[data-crop="thumbnail"]')
    first_url = crop.get_attribute("src")
    first = _pixels(library_server, token, first_url)
    assert _distance(first, face) < 8, "the crop starts on the face the upload found"

    picker = page.locator("#focal-picker")
    box = picker.bounding_box()
    picker.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.5})  # the grey, left end
    expect(page.locator("#focal-status")).to_contain_text("centred on the new focal point", timeout=60_000)
    expect(crop).not_to_have_attribute("src", first_url)
    moved_url = crop.get_attribute("src")
    moved = _pixels(library_server, token, moved_url)
    assert _distance(moved, first) > 20 and _distance(moved, face) > 20, "the crop left the face"
    point = api(library_server, "GET", f"/v1/media/{item['id']}", token).json()["focal_point"]
    assert point["source"] == "manual" and point["x"] == pytest.approx(0.1, abs=0.02)

    picker.focus()  # the keyboard: the marker moves, Enter saves
    for _ in range(8):
        page.keyboard.press("Shift+ArrowRight")
    expect(page.locator("#focal-status")).to_contain_text("press Enter to save")
    page.keyboard.press("Enter")
    expect(page.locator("#focal-status")).to_contain_text("centred on the new focal point", timeout=60_000)
    expect(crop).not_to_have_attribute("src", moved_url)
    back = _pixels(library_server, token, crop.get_attribute("src"))
    assert _distance(back, face) < 8, "back on the face"
    no_script_errors(page)


def test_copy_buttons_put_the_url_on_the_clipboard_or_select_it(
        context: BrowserContext, page: Page, library_server: ServerProcess) -> None:
    property_id = unique("P")
    token = _owner(property_id)
    item = _upload(library_server, token, property_id, PHOTO)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=library_server.url)
    sign_in(page, token)
    page.goto(f"/library/media/{item['id']}")
    field = page.locator("#url-original")
    button = page.get_by_role("button", name="Copy Original")
    button.click()
    expect(page.locator('button[data-copy="url-original"]')).to_contain_text("Copied")  # its name, for a while
    assert page.evaluate("navigator.clipboard.readText()") == field.input_value()
    assert field.input_value().split("?")[0] == item["url"].split("?")[0]  # signed anew for each answer

    # Without a clipboard (an insecure origin, an old browser) the text is selected for Ctrl+C instead.
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    page.reload()
    page.get_by_role("button", name="Copy small · jpeg").click()
    selected = page.evaluate("(() => { const f = document.activeElement;"
                             " return [f.id, f.value.substring(f.selectionStart, f.selectionEnd)]; })()")
    assert selected == ["url-small-jpeg", page.locator("#url-small-jpeg").input_value()]
    assert selected[1].split("?")[0] == item["variants"]["small"]["jpeg"]["url"].split("?")[0]
    no_script_errors(page)


def test_the_page_reads_well_for_owners_moderators_and_on_a_phone(
        page: Page, library_server: ServerProcess) -> None:
    property_id = unique("P")
    token = _owner(property_id)
    item = _upload(library_server, token, property_id, PHOTO, alt_text="A stone house", caption="The house")
    moderator = mint("MOD-ITEM", "user", "moderator")
    approved = api(library_server, "POST", f"/v1/media/{item['id']}/moderation", moderator,
                   json={"status": "approved"})
    assert approved.status_code == 200, approved.text
    reported = api(library_server, "POST", f"/v1/media/{item['id']}/flag", mint("USR-REPORTER"),
                   json={"reason": "not this property"})
    assert reported.status_code == 200, reported.text

    sign_in(page, token)
    page.goto(f"/library/media/{item['id']}")
    expect(page.get_by_role("heading", name=f"Image {item['id']}")).to_be_visible()
    assert serious_violations(page) == []
    screenshot(page, "item-owner")
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width} px"
    screenshot(page, "item-owner-phone")

    page.context.clear_cookies()
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, moderator)
    page.goto(f"/library/media/{item['id']}")
    expect(page.locator("#reports")).to_contain_text("not this property")
    assert serious_violations(page) == []
    screenshot(page, "item-moderator")
    no_script_errors(page)


def test_report_decide_and_delete_from_the_page(page: Page, library_server: ServerProcess) -> None:
    property_id = unique("P")
    owner = _owner(property_id)
    item = _upload(library_server, owner, property_id, PHOTO)
    moderator = mint("MOD-ITEM", "user", "moderator")
    api(library_server, "POST", f"/v1/media/{item['id']}/moderation", moderator, json={"status": "approved"})

    sign_in(page, mint("USR-NEIGHBOUR"))
    page.goto(f"/library/media/{item['id']}")
    page.get_by_text("Report this item to the moderators").click()
    page.get_by_label("What is wrong with it?").fill("my house, not theirs")
    page.get_by_role("button", name="Send report").click()
    expect(page.locator("#report-status")).to_have_text("Reported. The moderators will look at it.")

    page.context.clear_cookies()
    sign_in(page, moderator)
    page.goto(f"/library/media/{item['id']}")
    expect(page.locator("#reports")).to_contain_text("my house, not theirs")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#moderate-status")).to_contain_text("Give a reason")
    page.get_by_role("button", name="Not this property").click()
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#status-badge")).to_have_text("rejected")
    expect(page.locator("#reason-text")).to_have_text("Not this property")
    expect(page.locator("#reports")).to_contain_text("rejected")
    shown = api(library_server, "GET", f"/v1/media/{item['id']}", moderator).json()
    assert (shown["moderation_status"], shown["moderation_reason"]) == ("rejected", "Not this property")

    page.context.clear_cookies()
    sign_in(page, owner)
    page.goto(f"/library/media/{item['id']}")
    page.get_by_role("button", name="Delete this item…").click()
    page.get_by_role("button", name="Yes, delete it").click()
    expect(page).to_have_url(f"/library/property/{property_id}")
    assert api(library_server, "GET", f"/v1/media/{item['id']}", owner).status_code == 404
