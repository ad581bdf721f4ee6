"""The page a person without access sees, in a real browser (Debian's chromium through
Playwright): after signing in, it names the account, the server and permissions asked for, and
whom to ask; "Return to the application" sends the client access_denied with iss (RFC 9207).
A screenshot goes to ``.cache/screenshots/access-denied.png`` for a human to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from playwright.async_api import Page, expect

from bastion.access import admin as access_admin
from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings
from bastion.oauth import pkce
from tests.e2e.test_browser_flow import SCREENSHOTS, page  # noqa: F401  (the fixture)
from tests.support.flow import PASSWORD, add_user, register
from tests.support.live import free_port, serve

pytestmark = pytest.mark.browser
CONTACT = "the finance platform team (#ledger-access)"
CALLBACK = "http://127.0.0.1:53682/callback"


async def test_a_person_without_access_sees_who_they_are_and_whom_to_ask(
    page: Page,  # noqa: F811
    make_settings: Any,
) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    ledger = f"{issuer}/mcp/ledger"
    settings: Settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=ledger, name="Ledger", scopes=["mcp:tools"])],
        access_contact=CONTACT,
    )
    await add_user(settings, "bob", groups=["sales"], name="Bob Builder")
    async with serve(create_app(settings), port=port):
        await access_admin.allow(settings, "Ledger", "group:finance", [])
        async with httpx.AsyncClient(base_url=issuer) as http:
            client_id = (await register(http, client_name="Claude Desktop"))["client_id"]
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": CALLBACK,
            "code_challenge": pkce.s256(pkce.new_verifier()),
            "code_challenge_method": "S256",
            "state": "s-42",
            "resource": ledger,
            "scope": "mcp:tools",
        }
        await page.route(f"{CALLBACK}**", lambda route: route.abort())
        await page.goto(f"{issuer}/authorize?{urlencode(query)}")
        await page.fill("input[name=username]", "bob")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_contain_text("You do not have access to Ledger")
        await expect(page.locator(".signed-in-as")).to_have_text("Bob Builder")
        await expect(page.locator("dl.facts")).to_contain_text(ledger)
        await expect(page.locator("dl.facts")).to_contain_text("Claude Desktop")
        await expect(page.locator("p.contact")).to_contain_text(CONTACT)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SCREENSHOTS) / "access-denied.png"), full_page=True)
        async with page.expect_request(lambda r: r.url.startswith(CALLBACK)) as sent_back:
            await page.click("text=Return to Claude Desktop")
        callback = (await sent_back.value).url
    params = dict(parse_qsl(urlsplit(callback).query))
    assert params["error"] == "access_denied"
    assert params["iss"] == issuer and params["state"] == "s-42"
