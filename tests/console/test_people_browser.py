"""The people and groups pages in Chromium, used as an administrator would: add a person who
then signs in, disable and enable them, reset their password, change their groups, remove
them; the groups pages with their members and rules; bastion keeps its last administrator."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from bastion.access.admin import allow
from tests.console.accounts import NEW_PASSWORD, can_sign_in, grant, refresh_works
from tests.console.conftest import Console, browser_sign_in
from tests.e2e.test_browser_flow import page  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser


async def _fits(tab: Page) -> None:
    """The page needs no sideways scrolling."""
    wide = await tab.evaluate("document.documentElement.scrollWidth")
    assert wide <= 390, await tab.title()


async def test_an_administrator_adds_a_person_then_disables_resets_regroups_and_removes_them(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    await browser_sign_in(page, console, "alice", "/admin/people")
    await page.get_by_role("link", name="Add a person").click()
    await page.get_by_label("User name").fill("dave")
    await page.get_by_label("Name", exact=True).fill("Dave Data")
    await page.get_by_label("E-mail").fill("dave@example.com")
    await page.get_by_label("Groups").fill("research, ops")
    await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Add the person").click()
    await expect(page.locator(".notice")).to_contain_text("They were added")
    await expect(page.locator("h1")).to_have_text("Dave Data")
    dave = await console.signed_in("dave", NEW_PASSWORD)  # real HTTP, at /signin
    refresh = await grant(console, "dave", NEW_PASSWORD)

    await page.get_by_role("button", name="Disable").click()
    await expect(page.locator(".notice")).to_contain_text("They are disabled")
    assert (await dave.get("/account")).status_code == 303  # their session ended
    assert not await can_sign_in(console, "dave", NEW_PASSWORD)
    await page.get_by_role("button", name="Enable").click()
    await expect(page.locator(".notice")).to_contain_text("They are enabled")
    assert await can_sign_in(console, "dave", NEW_PASSWORD)
    assert not await refresh_works(console, refresh)  # disabling revoked the grant

    refresh = await grant(console, "dave", NEW_PASSWORD)
    await expect(page.locator("#reset-hint")).to_contain_text("revokes every grant they gave")
    await page.get_by_role("button", name="Reset the password").click()
    await expect(page.locator(".warning")).to_contain_text("Shown once")
    generated = (await page.locator("#password").text_content() or "").strip()
    assert not await can_sign_in(console, "dave", NEW_PASSWORD)
    assert await can_sign_in(console, "dave", generated)
    assert not await refresh_works(console, refresh)
    await page.get_by_role("link", name="Go to their page").click()
    await expect(page.locator("body")).not_to_contain_text(generated)

    await page.get_by_label("Add groups").fill("sales")
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.locator(".notice")).to_have_text("Their groups were changed.")
    await page.get_by_role("button", name="Remove group ops").click()
    await expect(page.locator(".notice")).to_contain_text("every grant they gave was revoked")
    await expect(page.locator("dl.facts")).to_contain_text("research")
    await expect(page.locator("dl.facts")).not_to_contain_text("ops")

    await page.get_by_role("button", name="Remove dave").click()
    await expect(page.locator("h1")).to_have_text("People")
    await expect(page.locator(".notice")).to_contain_text("They were removed")
    await expect(page.locator("table")).not_to_contain_text("dave")
    assert not await can_sign_in(console, "dave", generated)


async def test_the_groups_pages_show_members_and_rules_and_the_last_administrator_stays(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    await allow(console.settings, "notes", "group:sales", ["mcp:tools"])
    await page.set_viewport_size({"width": 390, "height": 800})
    await browser_sign_in(page, console, "alice", "/admin/people")
    await page.get_by_label("Search by user name, name or e-mail").fill("builder")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody")).to_contain_text("Bob Builder")
    await _fits(page)

    await page.get_by_role("link", name="Groups", exact=True).click()
    row = page.locator("tr", has_text="sales")
    await expect(row).to_contain_text("bob")
    await expect(row).to_contain_text("notes: mcp:tools")
    await expect(page.locator("tr", has_text="platform-admins")).to_contain_text("yes")
    await _fits(page)
    await page.get_by_role("link", name="sales", exact=True).click()
    await expect(page.locator("h1")).to_have_text("Group sales")
    await page.get_by_label("Add a person by user name").fill("alice")
    await page.get_by_role("button", name="Add to the group").click()
    await expect(page.locator(".notice")).to_contain_text("They were added to the group")
    await expect(page.locator("table").last).to_contain_text("Alice Admin")
    await _fits(page)

    await page.goto(console.url("/admin/groups/platform-admins"))
    await expect(page.locator("main")).to_contain_text("administer bastion")
    await page.get_by_role("button", name="Remove carol from platform-admins").click()
    await expect(page.locator(".notice")).to_contain_text("They were removed from the group")

    await page.goto(console.url("/admin/people/alice"))
    await _fits(page)
    await page.get_by_role("button", name="No longer an administrator").click()
    await expect(page.locator(".error")).to_contain_text("bastion would have no administrator left")
    await page.get_by_role("button", name="Disable").click()
    await expect(page.locator(".error")).to_contain_text("bastion would have no administrator left")
    await expect(page.locator("dl.facts")).to_contain_text("active")
    await expect(page.locator("dl.facts")).to_contain_text("administrator")
