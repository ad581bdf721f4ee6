"""``/account`` in Chromium, as a person uses it: they see the application they allowed with its
server and scopes and revoke it (its refresh token is refused afterwards); they sign out of
every other browser and stay signed in in this one; the page fits a 390 px wide screen."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.console.conftest import Console, browser_sign_in
from tests.console.test_account import allow_application, refresh
from tests.e2e.test_browser_flow import page  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser


async def test_a_person_revokes_an_application_they_allowed(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    allowed = await allow_application(console, "bob", name="Sketch pad")
    await page.set_viewport_size({"width": 390, "height": 800})
    await browser_sign_in(page, console, "bob", "/account")
    row = page.locator("#applications ~ .table tbody tr", has_text="Sketch pad")
    await expect(row).to_contain_text(allowed.client_id)
    await expect(row).to_contain_text("notes")
    await expect(row).to_contain_text("mcp:tools")
    await expect(page.locator("#sign-ins ~ .table tbody tr")).to_have_count(2)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    await row.get_by_role("button", name="Revoke Sketch pad").click()
    await expect(page.locator(".notice")).to_contain_text("no longer has access")
    await expect(page.locator("#applications").locator("..")).to_contain_text(
        "You have not allowed any application"
    )
    assert (await refresh(console, allowed)).json()["error"] == "invalid_grant"


async def test_a_person_signs_out_everywhere_else_and_stays_signed_in_here(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    elsewhere = await console.signed_in("bob")
    await browser_sign_in(page, console, "bob", "/account")
    await page.get_by_role("button", name="Sign out everywhere else").click()
    await expect(page.locator(".notice")).to_contain_text("signed out of every other browser")
    assert (await elsewhere.get("/account")).status_code == 303
    await page.reload()
    await expect(page.locator("h1")).to_have_text("Your account")
