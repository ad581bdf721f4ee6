"""``/admin/clients`` in Chromium, as an administrator uses it: add a machine client and see its
secret once, use it at ``/token`` (real HTTP to the live server), rotate it, remove the client;
add a web application after a mistake, find it by searching, change it; every page fits a
390 px wide screen."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.console.conftest import Console, browser_sign_in
from tests.e2e.test_browser_flow import page  # noqa: F401  (the fixture)
from tests.support.flow import PASSWORD

pytestmark = pytest.mark.browser


async def _token(console: Console, client_id: str, secret: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        return await http.post(
            "/token",
            data={"grant_type": "client_credentials", "resource": console.url("/mcp/notes")},
            auth=(client_id, secret),
        )


async def _fits_a_phone(tab: Page) -> None:
    """No horizontal scrolling of the page at 390 px."""
    await tab.set_viewport_size({"width": 390, "height": 800})
    width = await tab.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{tab.url} is {width}px wide"
    await tab.set_viewport_size({"width": 1280, "height": 800})


async def test_an_administrator_adds_a_machine_client_uses_rotates_and_removes_it(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    await browser_sign_in(page, console, "alice", "/admin/clients")
    await expect(page.locator("h1")).to_have_text("Clients")
    await page.get_by_role("link", name="Add a client").click()
    await expect(page.locator("h1")).to_have_text("Add a client")
    await _fits_a_phone(page)
    await page.get_by_label("Name", exact=True).fill("Nightly report")
    await page.get_by_label("Client id (optional)").fill("nightly")
    await page.get_by_label("A machine client (client credentials, no person)").check()
    await page.locator("input[name=resources][value$='/mcp/notes']").check()
    await page.get_by_role("button", name="Add the client").click()
    await expect(page.locator("h1")).to_have_text("Client added")
    await expect(page.locator(".warning").first).to_contain_text("stored only as a hash")
    secret = (await page.locator("code.secret").inner_text()).strip()
    assert (await _token(console, "nightly", secret)).status_code == 200

    await page.get_by_role("link", name="The client's page").click()
    await expect(page.locator("h1")).to_have_text("Nightly report")
    await _fits_a_phone(page)
    await page.reload()
    await expect(page.locator("body")).not_to_contain_text(secret)
    await expect(page.locator("code.secret")).to_have_count(0)

    await page.get_by_role("button", name="Rotate the secret").click()
    await expect(page.locator("h1")).to_have_text("New secret")
    rotated = (await page.locator("code.secret").inner_text()).strip()
    assert rotated != secret
    old = await _token(console, "nightly", secret)
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    assert (await _token(console, "nightly", rotated)).status_code == 200

    await page.get_by_role("link", name="The client's page").click()
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    await page.get_by_role("button", name="Remove the client").click()
    await expect(page.locator("h1")).to_have_text("Confirm it is you")
    assert (await _token(console, "nightly", rotated)).status_code == 200
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator(".notice")).to_contain_text("You signed in again")
    await page.get_by_role("button", name="Remove the client").click()
    await expect(page.locator(".notice")).to_contain_text("its tokens no longer work")
    await expect(page.locator("table")).to_have_count(0)
    gone = await _token(console, "nightly", rotated)
    assert gone.status_code == 401 and gone.json()["error"] == "invalid_client"


async def test_an_administrator_adds_a_web_application_finds_it_and_changes_it(
    page: Page,  # noqa: F811
    console: Console,
) -> None:
    await browser_sign_in(page, console, "alice", "/admin/clients/new")
    await page.get_by_label("Name", exact=True).fill("Notes web")
    await page.get_by_role("button", name="Add the client").click()
    await expect(page.locator("p.error")).to_contain_text("needs at least one redirect URI")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Notes web")
    await page.get_by_label("Redirect URIs (one a line)").fill("https://notes.example/callback")
    await page.get_by_label("Scopes (space-separated, optional)").fill("mcp:unknown")
    await page.get_by_role("button", name="Add the client").click()
    await expect(page.locator("p.error")).to_contain_text("unknown scope mcp:unknown")
    await page.get_by_label("Scopes (space-separated, optional)").fill("")
    await page.get_by_role("button", name="Add the client").click()
    await expect(page.locator("h1")).to_have_text("Client added")
    await expect(page.locator("code.secret")).to_have_count(1)

    await page.get_by_role("link", name="All clients").click()
    await _fits_a_phone(page)
    await page.get_by_label("Search by name or client id").fill("NOTES")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("caption")).to_contain_text("1 client matching")
    await expect(page.locator("tbody tr")).to_contain_text("web")
    await page.get_by_role("link", name="Notes web").click()
    await expect(page.locator("h1")).to_have_text("Notes web")
    await page.get_by_label("Name").fill("Notes")
    await page.get_by_label("Redirect URIs (one a line)").fill(
        "https://notes.example/callback\nhttps://notes.example/second"
    )
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.locator(".notice")).to_have_text("The client was changed.")
    await expect(page.locator("h1")).to_have_text("Notes")
    await expect(page.locator("dl.facts")).to_contain_text("https://notes.example/second")
