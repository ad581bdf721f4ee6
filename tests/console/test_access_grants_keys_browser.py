"""The access, grants and keys pages in Chromium, used as an administrator would, with a real
gateway in front of the demo MCP server: add a rule and check a person against a tool, revoke a
person's grant (the gateway refuses its access token right after), rotate the signing key (the
JWKS has it at once); each page fits a 390 px wide screen."""

from __future__ import annotations

import asyncio
import time

import pytest
from playwright.async_api import Page, expect

from bastion.authserver.admin import list_keys
from tests.console.conftest import browser_sign_in
from tests.console.gated import Gated, gated, person_tokens  # noqa: F401  (the fixture)
from tests.e2e.test_browser_flow import page  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser

REFUSED_WITHIN = 2.0


async def _fits_a_phone(tab: Page) -> None:
    await tab.set_viewport_size({"width": 390, "height": 800})
    width = await tab.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    await tab.set_viewport_size({"width": 1280, "height": 800})


async def test_an_administrator_adds_a_rule_and_checks_a_person_against_a_tool(
    page: Page,  # noqa: F811
    gated: Gated,  # noqa: F811
) -> None:
    await browser_sign_in(page, gated.console, "alice", "/admin/access")
    await expect(page.locator("h1")).to_have_text("Access")
    notes = page.locator("section", has=page.get_by_role("heading", name="notes", exact=True))
    await expect(notes).to_contain_text("Open to every signed-in person")
    await notes.get_by_text("Add a rule to notes").click()
    await notes.get_by_label("Who").select_option("group")
    await notes.get_by_label("Name, domain or client id").fill("editors")
    await notes.get_by_label("mcp:tools").check()
    await notes.get_by_role("button", name="Add the rule").click()
    await expect(page.locator(".notice").first).to_contain_text("The rule was added.")
    await expect(notes).to_contain_text("group:editors")
    await expect(notes).to_contain_text("Only the people these rules admit get in")
    tools = page.locator(
        "section", has=page.get_by_role("heading", name="Tools behind the gateway")
    )
    await expect(tools).to_contain_text("add_note")
    await _fits_a_phone(page)

    await page.get_by_label("Person (user name)").fill("dana")
    await page.get_by_label("Resource", exact=True).select_option(label="notes")
    await page.get_by_label("Tool (optional)").fill("add_note")
    await page.get_by_role("button", name="Check").click()
    await expect(page.locator("h2#answer")).to_have_text("No: dana cannot call add_note")
    await expect(page.locator(".reasons")).to_contain_text("missing: notes:write")
    await expect(page.locator(".reasons")).to_contain_text("dana is.")
    await _fits_a_phone(page)

    await page.goto(gated.console.url("/admin/access"))
    await page.get_by_role("button", name="Remove the rule for group:editors on notes").click()
    await expect(page.locator(".notice").first).to_contain_text("The rule was removed.")
    await expect(notes).to_contain_text("Open to every signed-in person")


async def test_a_grant_revoked_in_the_console_is_refused_at_the_gateway_right_after(
    page: Page,  # noqa: F811
    gated: Gated,  # noqa: F811
) -> None:
    _, tokens = await person_tokens(gated.console, "dana", gated.notes)
    token = tokens["access_token"]
    works = await gated.call(token)
    assert works.status_code == 200, works.text
    assert "bastion-demo" in works.text
    await browser_sign_in(page, gated.console, "alice", "/admin/grants")
    await expect(page.locator("h1")).to_have_text("Grants")
    await page.get_by_role("link", name="dana").click()
    await expect(page.get_by_label("Person (user name)")).to_have_value("dana")
    await _fits_a_phone(page)
    await page.get_by_role("button", name="Revoke the grant of dana to Test client").click()
    await expect(page.locator(".notice")).to_contain_text("its tokens no longer work")
    await expect(page.locator("section", has_text="Live grants")).to_contain_text(
        "No live grant matches the filter"
    )
    deadline = time.monotonic() + REFUSED_WITHIN
    answer = await gated.call(token)
    while answer.status_code != 401 and time.monotonic() < deadline:
        answer = await gated.call(token)
    assert answer.status_code == 401, answer.text
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


async def _past_the_last_activation(gated: Gated) -> None:  # noqa: F811
    """Activation times strictly increase (KeyManager.rotate: at least the newest one + 1 s),
    so a key made "now" within the second its predecessor activated signs one second later and
    is listed as next until then. Rotate once that second is over (bounded wait)."""
    latest = max(k.activates_at for k in await list_keys(gated.console.settings))
    deadline = time.monotonic() + 3
    while gated.console.clock() <= latest and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert gated.console.clock() > latest


async def test_an_administrator_rotates_the_signing_key_and_the_jwks_has_it_at_once(
    page: Page,  # noqa: F811
    gated: Gated,  # noqa: F811
) -> None:
    await browser_sign_in(page, gated.console, "alice", "/admin/keys")
    await expect(page.locator("h1")).to_have_text("Signing keys")
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(1)
    await _past_the_last_activation(gated)
    await page.get_by_label("Algorithm").select_option("Ed25519")
    await page.get_by_label("Sign with it now").check()
    await page.get_by_role("button", name="Rotate the signing key").click()
    await expect(page.locator(".notice")).to_contain_text("signs from now on")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("Ed25519")
    await expect(rows.first).to_contain_text("active")
    await expect(rows.nth(1)).to_contain_text("retiring")
    new = (await rows.first.locator("code").text_content() or "").strip()
    await _fits_a_phone(page)
    jwks = await page.request.get(gated.console.url("/jwks"))
    assert new in {k["kid"] for k in (await jwks.json())["keys"]}
