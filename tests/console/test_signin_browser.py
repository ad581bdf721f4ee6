"""The console's sign-in in Chromium: a person who is not an administrator is refused
``/admin`` and still reaches their account; an administrator lands on the page they asked for;
a stale sign-in is asked to confirm before a destructive action, then the action goes through."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.console.conftest import Console, browser_sign_in
from tests.e2e.test_browser_flow import page  # noqa: F401  (the fixture)
from tests.support.flow import PASSWORD

pytestmark = pytest.mark.browser


async def test_a_person_is_refused_admin_pages_but_reaches_their_account(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    await browser_sign_in(page, console, "bob", "/admin")
    await expect(page.locator("h1")).to_have_text("Administrators only")
    await expect(page.locator("body")).not_to_contain_text("Live grants")
    await page.get_by_role("link", name="Your account").click()
    await expect(page.locator("h1")).to_have_text("Your account")
    await expect(page.locator("nav")).not_to_contain_text("Clients")


async def test_an_administrator_confirms_it_is_them_before_ending_sessions(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    await console.signed_in("bob")
    await browser_sign_in(page, console, "alice", "/admin/people/bob")
    await expect(page.locator("h1")).to_have_text("Bob Builder")
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    await page.click("text=End all sessions")
    await expect(page.locator("h1")).to_have_text("Confirm it is you")
    await expect(page.locator("input[name=username]")).to_have_value("alice")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator(".notice")).to_contain_text("You signed in again")
    await page.click("text=End all sessions")
    await expect(page.locator(".notice")).to_contain_text("Their browser sessions have ended")


async def test_the_layout_can_be_used_with_the_keyboard(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    await browser_sign_in(page, console, "alice", "/admin")
    await page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    await expect(skip).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
