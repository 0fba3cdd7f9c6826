"""Analytics in the browser: every chart an SVG image drawn on the server with one bar per number of its
table, the numbers behind a disclosure, no serious axe-core violation, desktop and phone widths."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    PHONE,
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
FILES = [GOOD / name for name in ("jpeg_flower.jpg", "jpeg_progressive_peppers.jpg", "png_bigbuckbunny.png")]
CHARTS = ("uploads", "storage-entity-type", "storage-media-type", "storage-moderation-status", "variant-overhead")


def test_charts_render_with_their_numbers(page: Page, library_server: ServerProcess) -> None:
    admin = mint("ADM-CHARTS", "user", "admin")
    owner = unique("USR")
    for file in FILES:
        upload_file(library_server, admin, f"/v1/media/properties/{unique('P')}/photos", file)
    upload_file(library_server, mint(owner), f"/v1/media/users/{owner}/avatar", FILES[0])  # pending, a user's
    sign_in(page, mint("MOD-CHARTS", "user", "moderator"))
    page.get_by_role("link", name="Analytics").first.click()
    expect(page.get_by_role("heading", name="Storage and uploads")).to_be_visible()

    for name in CHARTS:
        chart = page.locator(f'svg[data-chart="{name}"]')
        expect(chart).to_have_attribute("role", "img")
        expect(chart.locator("title").first).not_to_be_empty()
        rows = page.locator(f'table[data-numbers="{name}"] tbody tr').count()
        per_row = 2 if name == "variant-overhead" else 1  # a kind's originals and its variants
        assert rows > 0 and chart.locator("rect.bar").count() == per_row * rows, name
        box = chart.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 40, f"{name} is not drawn: {box}"
    expect(page.locator('table[data-numbers="storage-entity-type"]')).to_be_hidden()
    details = page.locator("section", has=page.locator('svg[data-chart="storage-entity-type"]')).locator("details")
    details.locator("summary").click()
    table = page.locator('table[data-numbers="storage-entity-type"]')
    expect(table).to_be_visible()
    expect(table.locator("tbody tr").first).to_contain_text("property")
    expect(table).to_contain_text("kB")  # bytes for people
    # Today's column stands: this module's server has stored things today.
    assert float(page.locator('svg[data-chart="uploads"] rect.bar').last.get_attribute("height") or 0) > 0
    assert serious_violations(page) == []
    screenshot(page, "analytics")

    page.get_by_role("link", name="Last 12 months").click()
    expect(page.locator('table[data-numbers="uploads"] thead')).to_contain_text("Week")  # drawn again, per week
    assert 52 <= page.locator('svg[data-chart="uploads"] rect.bar').count() <= 54
    no_script_errors(page)


def test_analytics_fits_a_phone(page: Page, library_server: ServerProcess) -> None:
    admin = mint("ADM-PHONE-CHARTS", "user", "admin")
    upload_file(library_server, admin, f"/v1/media/properties/{unique('P')}/photos", FILES[1])
    page.set_viewport_size(PHONE)
    sign_in(page, admin, "/library/analytics?days=90")
    expect(page.locator("svg.chart")).to_have_count(len(CHARTS))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width} px"
    assert serious_violations(page) == []
    screenshot(page, "analytics-phone")


def test_analytics_is_for_moderators(page: Page) -> None:
    sign_in(page, mint(unique("USR"), "user"))
    expect(page.get_by_role("link", name="Analytics")).to_have_count(0)
    page.goto("/library/analytics")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_text("moderator_required")).to_be_visible()
