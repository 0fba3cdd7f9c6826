"""An entity's page in the browser: a stranger's view, uploads by drag-and-drop and by the picker (stored,
duplicate, refused), bulk actions with a result per tile, and the gallery order kept across a reload."""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

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
from tests.support.corpus import CORPUS_DIR

GOOD = CORPUS_DIR / "images/good"
HOPPER, FLOWER = GOOD / "jpeg_hopper.jpg", GOOD / "jpeg_flower.jpg"
HOPPER_PNG = GOOD / "png_hopper.png"  # the same picture as HOPPER: a duplicate once HOPPER is stored
TRUNCATED = CORPUS_DIR / "images/bad/truncated_jpeg.jpg"  # refused: the MANIFEST's verdict
ADMIN = mint("ADM-BROWSER", "user", "admin")


def owned_property(server: ServerProcess, owner: str) -> str:
    """A property of its own for each test, with `owner` as its member."""
    property_id = unique("P")
    answer = api(server, "PUT", f"/v1/media/entities/property/{property_id}/members/{owner}", ADMIN,
                 json={"role": "owner"})
    assert answer.status_code == 200, answer.text
    return property_id


def add_photos(server: ServerProcess, token: str, property_id: str, count: int, **data: str) -> list[dict[str, Any]]:
    return [upload_file(server, token, f"/v1/media/properties/{property_id}/photos", FLOWER if n % 2 else HOPPER,
                        allow_duplicate="true", alt_text=f"Photo {n + 1}", **data)
            for n in range(count)]


def tile_ids(page: Page, field: str = "gallery") -> list[int]:
    return [int(value) for value in page.locator(f"#grid-{field} > .tile").evaluate_all(
        "tiles => tiles.map(tile => tile.dataset.id)")]


def listed_ids(server: ServerProcess, token: str, property_id: str) -> list[int]:
    answer = api(server, "GET", f"/v1/media/entity/property/{property_id}?field=gallery", token)
    return [item["id"] for item in answer.json()["items"]]


def drop_files(page: Page, selector: str, files: list[Path]) -> None:
    """Drag files from the desktop onto `selector`: a DataTransfer made in the page from the files' bytes."""
    payload = [{"name": file.name, "type": mimetypes.guess_type(file.name)[0] or "application/octet-stream",
                "data": base64.b64encode(file.read_bytes()).decode()} for file in files]
    transfer = page.evaluate_handle("""files => {
        const transfer = new DataTransfer();
        for (const file of files) {
            const bytes = Uint8Array.from(atob(file.data), c => c.charCodeAt(0));
            transfer.items.add(new File([bytes], file.name, {type: file.type}));
        }
        return transfer;
    }""", payload)
    for kind in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, kind, {"dataTransfer": transfer})


def upload_row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator("#uploads li.upload", has=page.locator(".name", has_text=name))


def test_a_stranger_sees_the_approved_media_without_controls(page: Page, library_server: ServerProcess) -> None:
    owner = "USR-E-OWNER"
    property_id = owned_property(library_server, owner)
    approved = add_photos(library_server, mint(owner, verified=True), property_id, 2)
    add_photos(library_server, mint(owner), property_id, 1)  # pending: not for strangers
    page.goto(f"/library/property/{property_id}")
    expect(page.get_by_role("heading", name=f"Property {property_id}")).to_be_visible()
    assert tile_ids(page) == [item["id"] for item in approved]
    expect(page.locator("section.field .count")).to_have_text("2 items")
    for selector in ("#bulk", "#dropzone", "input.select", ".move"):
        expect(page.locator(selector)).to_have_count(0)
    first = page.locator(f"#tile-{approved[0]['id']}")
    expect(first.locator(".badge.status")).to_have_text("approved")
    expect(first.locator(".alt")).to_have_text("Photo 1")
    expect(first.get_by_role("link")).to_have_attribute("href", f"/library/media/{approved[0]['id']}")
    image = first.locator("img")
    expect(image).to_have_attribute("loading", "lazy")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0 && !img.dataset.src", arg=image.element_handle())
    assert serious_violations(page) == []
    screenshot(page, "entity-stranger")
    no_script_errors(page)


def test_show_more_loads_the_next_pages_by_keyboard(page: Page, library_server: ServerProcess) -> None:
    owner = "USR-E-MORE"
    property_id = owned_property(library_server, owner)
    ids = [item["id"] for item in add_photos(library_server, mint(owner, verified=True), property_id, 5)]
    page.goto(f"/library/property/{property_id}?per_page=2")
    assert tile_ids(page) == ids[:2]
    expect(page.locator("section.field .count")).to_have_text("5 items")
    more = page.get_by_role("button", name="Show more")
    more.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#grid-gallery > .tile")).to_have_count(4)
    expect(page.locator(f"#tile-{ids[2]} a")).to_be_focused()  # on to what was added
    more.click()
    expect(page.locator("#grid-gallery > .tile")).to_have_count(5)
    expect(more).to_have_count(0)  # the last page
    assert tile_ids(page) == ids
    page.locator(f"#tile-{ids[4]} img").scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0 && !img.dataset.src",
                           arg=page.locator(f"#tile-{ids[4]} img").element_handle())
    no_script_errors(page)


def test_upload_by_drop_and_picker_shows_each_result_in_place(page: Page, library_server: ServerProcess) -> None:
    owner = "USR-E-UPLOADER"
    property_id = owned_property(library_server, owner)
    sign_in(page, mint(owner))
    page.goto(f"/library/property/{property_id}")
    expect(page.locator("#grid-gallery > .tile")).to_have_count(0)

    drop_files(page, "#dropzone", [HOPPER, FLOWER, TRUNCATED])
    for name in (HOPPER.name, FLOWER.name):
        expect(upload_row(page, name).locator(".state")).to_have_text("Stored (pending)", timeout=30_000)
        expect(upload_row(page, name).locator(".details img")).to_have_count(1)
    refused = upload_row(page, TRUNCATED.name).locator(".state")
    expect(refused).to_contain_text("Refused: ", timeout=30_000)
    expect(refused).to_have_class("state failed")
    expect(page.locator("#grid-gallery > .tile")).to_have_count(2)  # added without a reload
    expect(page.locator("section.field .count")).to_have_text("2 items")
    # Each file had its progress bar, now full.
    assert page.locator("#uploads progress").evaluate_all("bars => bars.map(bar => bar.value)") == [100, 100, 100]
    stored = {int(value) for value in page.locator("#grid-gallery > .tile").evaluate_all(
        "tiles => tiles.map(tile => tile.dataset.id)")}
    assert stored == set(listed_ids(library_server, mint(owner), property_id))

    page.set_input_files("#file-input", str(HOPPER_PNG))  # the picker: the same picture as one stored
    duplicate = upload_row(page, HOPPER_PNG.name)
    expect(duplicate.locator(".state")).to_contain_text("Duplicate of item ", timeout=30_000)
    existing = int(duplicate.locator(".state").inner_text().rsplit(" ", 1)[1])
    assert existing in stored
    expect(duplicate.locator("img")).to_have_count(2)  # the file dropped and the item it duplicates
    expect(duplicate.get_by_role("link", name=f"See item {existing}")).to_be_visible()
    expect(page.locator("#grid-gallery > .tile")).to_have_count(2)
    assert serious_violations(page) == []
    screenshot(page, "entity-upload")
    no_script_errors(page)


def test_bulk_actions_show_a_result_per_tile_and_keep_failures_selected(
        page: Page, library_server: ServerProcess) -> None:
    owner = "USR-E-BULK"
    property_id = owned_property(library_server, owner)
    items = [item["id"] for item in add_photos(library_server, mint(owner), property_id, 5)]
    sign_in(page, ADMIN)  # an admin manages and moderates
    page.goto(f"/library/property/{property_id}")
    expect(page.locator("#grid-gallery > .tile")).to_have_count(5)

    # Select the first three: a click, then a shift-click on the third selects the range.
    page.locator(f"#select-{items[0]}").click()
    page.locator(f"#select-{items[2]}").click(modifiers=["Shift"])
    expect(page.locator("#selected-count")).to_have_text("3 selected")
    page.get_by_role("button", name="Approve").click()
    for media_id in items[:3]:
        tile = page.locator(f"#tile-{media_id}")
        expect(tile.locator(".result")).to_have_text("Approved")
        expect(tile.locator(".badge.status")).to_have_text("approved")
    expect(page.locator("#selected-count")).to_have_text("0 selected")

    # Reject two, one of which is deleted behind the page's back: it fails alone and stays selected.
    page.locator(f"#select-{items[3]}").check()
    page.locator(f"#select-{items[4]}").check()
    gone = api(library_server, "DELETE", f"/v1/media/{items[4]}", ADMIN)
    assert gone.status_code == 204, gone.text
    page.get_by_role("button", name="Reject…").click()
    dialog = page.locator("#reject-dialog")
    expect(dialog.get_by_role("heading")).to_have_text("Reject 2 items")
    dialog.get_by_label("Reason").fill("shows a licence plate")
    dialog.get_by_role("button", name="Reject").click()
    expect(page.locator(f"#tile-{items[3]} .result")).to_have_text("Rejected")
    expect(page.locator(f"#tile-{items[3]} .badge.status")).to_have_text("rejected")
    failed = page.locator(f"#tile-{items[4]} .result")
    expect(failed).to_have_text("no such media item")
    expect(failed).to_have_class("result failed")
    expect(page.locator(f"#select-{items[4]}")).to_be_checked()
    expect(page.locator(f"#select-{items[3]}")).not_to_be_checked()
    expect(page.locator("#selected-count")).to_have_text("1 selected")
    page.get_by_role("button", name="Clear selection").click()

    # Delete, after a confirmation that states the count.
    page.locator(f"#select-{items[0]}").check()
    page.locator(f"#select-{items[1]}").check()
    page.get_by_role("button", name="Delete…").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog.get_by_role("heading")).to_have_text("Delete 2 items?")
    dialog.get_by_role("button", name="Delete").click()
    for media_id in items[:2]:
        expect(page.locator(f"#tile-{media_id} .result")).to_have_text("Deleted")
        expect(page.locator(f"#tile-{media_id}")).to_have_class("tile is-deleted")
    expect(page.locator("section.field .count")).to_have_text("3 items")
    assert sorted(listed_ids(library_server, ADMIN, property_id)) == sorted([items[2], items[3]])
    assert serious_violations(page) == []
    screenshot(page, "entity-bulk")
    no_script_errors(page)


def test_the_order_set_by_drag_and_by_keyboard_survives_a_reload(page: Page, library_server: ServerProcess) -> None:
    owner = "USR-E-ORDER"
    property_id = owned_property(library_server, owner)
    a, b, c, d = (item["id"] for item in add_photos(library_server, mint(owner), property_id, 4))
    sign_in(page, mint(owner))
    page.goto(f"/library/property/{property_id}")
    assert tile_ids(page) == [a, b, c, d]

    page.locator(f"#tile-{d} img").drag_to(page.locator(f"#tile-{a} img"))
    expect(page.locator(".order-status")).to_have_text("Order saved")
    assert tile_ids(page) == [d, a, b, c]
    page.reload()
    assert tile_ids(page) == [d, a, b, c] == listed_ids(library_server, mint(owner), property_id)

    later = page.get_by_role("button", name=f"Move item {a} later")
    later.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".order-status")).to_have_text("Order saved")
    expect(later).to_be_focused()
    page.reload()
    assert tile_ids(page) == [d, b, a, c]

    # The primary goes first and stays there.
    made = api(library_server, "POST", "/v1/media/batch", mint(owner), json={"action": "set_primary", "ids": [c]})
    assert made.json()["succeeded"] == 1
    page.reload()
    assert tile_ids(page) == [c, d, b, a]
    expect(page.get_by_role("button", name=f"Move item {c} later")).to_be_disabled()
    page.get_by_role("button", name=f"Move item {d} earlier").click()
    assert tile_ids(page) == [c, d, b, a]
    no_script_errors(page)


def test_the_owner_page_is_accessible_and_fits_a_phone(page: Page, library_server: ServerProcess) -> None:
    owner = "USR-E-PHONE"
    property_id = owned_property(library_server, owner)
    add_photos(library_server, mint(owner, verified=True), property_id, 3)
    add_photos(library_server, mint(owner), property_id, 2)
    sign_in(page, mint(owner, "user", "moderator"))
    page.goto(f"/library/property/{property_id}")
    page.locator("#grid-gallery img").first.wait_for()
    assert serious_violations(page) == []
    screenshot(page, "entity-desktop")
    page.set_viewport_size(PHONE)
    page.reload()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width} px"
    assert serious_violations(page) == []
    screenshot(page, "entity-phone")
    no_script_errors(page)
