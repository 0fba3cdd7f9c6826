"""Duplicate review in the browser: keep one (by keyboard), keep all, resolve every exact group after a
confirmation that states the count; each result shown in place. A server of its own per test, whose
DEDUP_POLICY lets duplicates in: the groups are global, so each test starts from an empty library."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    PHONE,
    api,
    mint,
    no_script_errors,
    screenshot,
    serious_violations,
    sign_in,
    upload_file,
)
from tests.reliability.harness import ServerProcess, running, server_env
from tests.support.corpus import CORPUS_DIR

GOOD = CORPUS_DIR / "images/good"
# The same pixels in three files; two files of one picture that differ in pixels (a look-alike pair).
HOPPER = [GOOD / name for name in ("png_hopper.png", "bmp_hopper.bmp", "tiff_hopper.tif")]
LANDSCAPE = [GOOD / name for name in ("orient_landscape_1.jpg", "orient_landscape_3.jpg")]  # 1800 x 1200
PEPPERS = GOOD / "jpeg_progressive_peppers.jpg"
ADMIN = mint("ADM-BROWSER", "user", "admin")


@pytest.fixture
def library_server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(f"sqlite:///{tmp_path / 'media.db'}", media_root=tmp_path / "media", DEDUP_POLICY="allow",
                     IMAGE_SIZES="thumbnail:150x150:crop,small:400,medium:800")
    with running(env, tmp_path) as server:
        yield server


def put(server: ServerProcess, entity_id: str, file: Path, **data: str) -> dict[str, Any]:
    return upload_file(server, ADMIN, f"/v1/media/properties/{entity_id}/photos", file, **data)


def alive(server: ServerProcess, media_id: int) -> bool:
    return api(server, "GET", f"/v1/media/{media_id}", ADMIN).status_code == 200


def test_keep_one_by_keyboard_then_keep_all(page: Page, library_server: ServerProcess) -> None:
    hopper = [put(library_server, str(n), file)["id"] for n, file in enumerate(HOPPER, 1)]
    landscape = [put(library_server, str(n), file)["id"] for n, file in enumerate(LANDSCAPE, 4)]
    sign_in(page, ADMIN)
    page.get_by_role("link", name="Duplicates").first.click()
    expect(page.get_by_role("heading", name="Duplicate review")).to_be_visible()
    group = page.locator("section.dup-group")
    expect(group).to_have_count(1)
    expect(group.locator("li.dup-member")).to_have_count(3)
    expect(page.get_by_label(f"Keep item {hopper[0]}")).to_be_checked()  # the oldest, all being approved
    assert serious_violations(page) == []
    screenshot(page, "duplicates-exact")

    page.get_by_label(f"Keep item {hopper[1]}").focus()
    page.keyboard.press("Space")
    expect(page.get_by_label(f"Keep item {hopper[1]}")).to_be_checked()
    resolve = group.get_by_role("button", name="Keep the chosen one, delete the rest")
    resolve.focus()
    page.keyboard.press("Enter")
    expect(group.get_by_role("status")).to_have_text(f"Kept item {hopper[1]}; deleted 2 items.")
    for media_id in (hopper[0], hopper[2]):
        expect(group.locator(f'li[data-id="{media_id}"] [data-result]')).to_have_text("Deleted")
    assert [alive(library_server, media_id) for media_id in hopper] == [False, True, False]

    page.get_by_role("link", name="Look-alikes").click()
    near = page.locator("section.dup-group")
    expect(near).to_have_count(1)
    images = near.locator("img")
    expect(images).to_have_count(2)
    expect(images.first).to_have_js_property("complete", True)
    # Large enough to judge: the rendition shown is far wider than the 150 px thumbnail.
    assert images.first.evaluate("img => img.naturalWidth") >= 400
    assert images.first.bounding_box()["width"] >= 300
    screenshot(page, "duplicates-near")
    near.get_by_role("button", name="Keep all").click()
    expect(near.get_by_role("status")).to_contain_text("Kept all 2 items")
    page.reload()
    expect(page.get_by_text("No look-alikes to review.")).to_be_visible()
    assert all(alive(library_server, media_id) for media_id in landscape)
    no_script_errors(page)


def test_resolve_all_exact_duplicates_after_a_confirmation(page: Page, library_server: ServerProcess) -> None:
    hopper = [put(library_server, str(n), file)["id"] for n, file in enumerate(HOPPER, 1)]
    peppers = [put(library_server, "4", PEPPERS)["id"], put(library_server, "5", PEPPERS, is_primary="true")["id"]]
    sign_in(page, ADMIN, "/library/duplicates")
    expect(page.locator("section.resolve-all")).to_contain_text("2 groups of exact copies to resolve")

    page.get_by_role("button", name="Resolve all exact duplicates…").click()
    dialog = page.get_by_role("dialog", name="Resolve all exact duplicates?")
    expect(dialog).to_contain_text("This deletes 3 items in 2 groups of exact copies.")
    assert serious_violations(page) == []
    screenshot(page, "duplicates-resolve-all-confirmation")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert all(alive(library_server, media_id) for media_id in [*hopper, *peppers])

    page.get_by_role("button", name="Resolve all exact duplicates…").click()
    dialog.get_by_role("button", name="Delete 3 items").click()
    expect(page.locator("[data-resolve-all-progress]")).to_have_text("Done: 2 groups resolved, 3 items deleted.")
    expect(page.locator("section.dup-group.is-done")).to_have_count(2)
    survivors = {media_id for media_id in [*hopper, *peppers] if alive(library_server, media_id)}
    assert survivors == {hopper[0], peppers[1]}  # the oldest approved; the primary
    page.reload()
    expect(page.get_by_text("No exact copies to review.")).to_be_visible()
    expect(page.get_by_role("button", name="Resolve all exact duplicates…")).to_be_disabled()
    no_script_errors(page)


def test_a_failure_leaves_the_group_with_what_failed(page: Page, library_server: ServerProcess) -> None:
    """A moderator may not delete other people's uploads: the group stays, each item saying why."""
    ids = [put(library_server, str(n), file)["id"] for n, file in enumerate(HOPPER[:2], 1)]
    sign_in(page, mint("MOD-BROWSER", "user", "moderator"), "/library/duplicates")
    group = page.locator("section.dup-group")
    expect(group).to_contain_text("You may not delete this item.")
    group.get_by_role("button", name="Keep the chosen one, delete the rest").click()
    expect(group.locator(f'li[data-id="{ids[1]}"] [data-result]')).to_contain_text("Not deleted:")
    expect(group.get_by_role("status")).to_contain_text("could not be")
    expect(group.get_by_role("button", name="Keep all")).to_be_enabled()  # still there for another decision
    assert all(alive(library_server, media_id) for media_id in ids)
    no_script_errors(page)


def test_duplicate_review_fits_a_phone(page: Page, library_server: ServerProcess) -> None:
    for n, file in enumerate(HOPPER, 1):
        put(library_server, str(n), file)
    page.set_viewport_size(PHONE)
    sign_in(page, ADMIN, "/library/duplicates")
    expect(page.locator("li.dup-member")).to_have_count(3)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width} px"
    assert serious_violations(page) == []
    screenshot(page, "duplicates-phone")
