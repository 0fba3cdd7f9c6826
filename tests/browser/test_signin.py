"""Signing in and out in the browser, and what a signed-out visitor meets."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, mint, no_script_errors, screenshot, serious_violations, sign_in


def test_sign_in_and_sign_out(page: Page) -> None:
    page.goto("/library")
    expect(page).to_have_url("/library/login?next=%2Flibrary")
    assert serious_violations(page) == []
    screenshot(page, "login")
    sign_in(page, mint("USR-BROWSER", "user", "moderator"))
    expect(page.get_by_role("heading", name="Media library")).to_be_visible()
    expect(page.get_by_role("link", name="Moderation queue")).to_be_visible()
    assert serious_violations(page) == []
    screenshot(page, "home")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/library/login")
    page.goto("/library")
    expect(page).to_have_url("/library/login?next=%2Flibrary")
    no_script_errors(page)


def test_a_refused_token_says_why_and_keeps_the_form(page: Page) -> None:
    page.goto("/library/login")
    page.get_by_label("Token").fill(mint("USR-OLD", ttl=-300))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("expired")
    expect(page.get_by_label("Token")).to_be_visible()


def test_the_home_page_fits_a_phone(page: Page) -> None:
    page.set_viewport_size(PHONE)
    sign_in(page, mint("USR-PHONE", "user", "admin"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width} px"
    screenshot(page, "home-phone")
