"""The overview, registry and audit pages in Chromium, used as an administrator would: read the
warnings, approve an entry, change who sees it, reject another after confirming it is them,
then find their changes in the trail and download it; every page fits a 390 px wide screen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.console.conftest import browser_sign_in
from tests.console.registry_console import (
    ALPHA,
    BETA,
    RegistryConsole,
    registry_console,  # noqa: F401  (the fixture)
)
from tests.e2e.test_browser_flow import page  # noqa: F401  (the fixture)
from tests.support.flow import PASSWORD

pytestmark = pytest.mark.browser


async def _fits(tab: Page) -> None:
    """No horizontal scrolling of the page at the viewport's width."""
    width = await tab.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width


async def test_an_administrator_approves_an_entry_and_narrows_who_sees_it(
    page: Page,  # noqa: F811
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    await page.set_viewport_size({"width": 390, "height": 800})
    await browser_sign_in(page, registry_console, "alice", "/admin")
    await expect(page.locator(".warning")).to_contain_text(["Anyone can register a client"])
    await _fits(page)
    await page.get_by_role("link", name="Registry", exact=True).click()
    await expect(page.locator("h1")).to_have_text("Registry")
    pending = page.locator("section", has=page.locator("#pending"))
    await expect(pending).to_contain_text(ALPHA)
    await _fits(page)
    await page.get_by_role("button", name=f"Approve {ALPHA} 1.0.0").click()
    await expect(page.locator(".notice")).to_contain_text("The entry is approved")
    await expect(pending).not_to_contain_text(ALPHA)
    await page.locator("#entries").locator("..").get_by_role("link", name=ALPHA).click()
    await expect(page.locator("h1")).to_have_text(f"{ALPHA} 1.0.0")
    await _fits(page)
    await page.get_by_label("Groups").fill("team-b")
    await page.get_by_role("button", name="Change who sees it").click()
    await expect(page.locator(".notice")).to_contain_text("Who sees the entry is changed")
    await expect(page.get_by_label("Groups")).to_have_value("team-b")
    assert ALPHA not in await registry_console.seen_by("erin")
    assert ALPHA in await registry_console.seen_by("frank")


async def test_a_rejection_waits_for_a_fresh_sign_in_and_shows_in_the_trail(
    page: Page,  # noqa: F811
    registry_console: RegistryConsole,  # noqa: F811
    tmp_path: Path,
) -> None:
    await page.set_viewport_size({"width": 390, "height": 800})
    await browser_sign_in(page, registry_console, "alice", "/admin/registry")
    registry_console.clock.offset = registry_console.settings.console.fresh_sign_in + 5
    await page.get_by_role("button", name=f"Reject {BETA} 1.0.0").click()
    await expect(page.locator("h1")).to_have_text("Confirm it is you")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator(".notice")).to_contain_text("You signed in again")
    await page.get_by_role("button", name=f"Reject {BETA} 1.0.0").click()
    await expect(page.locator(".notice")).to_contain_text("The entry is rejected")
    assert (await registry_console.entry(BETA)).status == "deleted"

    await page.get_by_role("link", name="Audit", exact=True).click()
    await expect(page.locator("h1")).to_have_text("Audit trail")
    await page.get_by_label("Type").select_option("admin.registry_entry_status_changed")
    await page.get_by_label("Since").fill("1h")
    await page.get_by_role("button", name="Search").click()
    records = page.locator("#records").locator("..")
    await expect(records.locator("tbody tr")).to_have_count(1)
    await expect(records).to_contain_text("console:alice")
    await expect(records).to_contain_text(f"registry_entry:{BETA}@1.0.0")
    await _fits(page)
    async with page.expect_download() as download:
        await page.get_by_role("link", name="Download as JSON lines").click()
    saved = tmp_path / "audit.jsonl"
    await (await download.value).save_as(saved)
    [line] = [json.loads(text) for text in saved.read_text().splitlines()]
    assert line["type"] == "admin.registry_entry_status_changed"
    assert line["actor"] == "console:alice"

    await page.get_by_label("Since").fill("last tuesday")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("alert")).to_contain_text("is neither a duration")
