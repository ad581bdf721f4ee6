"""The connect pages in Chromium: alice follows the link her application was given, signs in
to bastion, presses the button, signs in at the upstream's provider (node-oidc-provider's
development pages) and consents; bastion registered itself there (RFC 7591). Bob opening
alice's link is told it was made for someone else (MCP 2025-11-25 elicitation "Phishing")."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.async_api import Page, expect

from bastion.authserver.secret_key import cipher_for
from bastion.config import Settings
from bastion.store.schema import upstream_clients, upstream_connect_requests, upstream_connections
from bastion.store.sealed import connection_binding
from tests.e2e.test_browser_flow import page  # noqa: F401  (the fixture)
from tests.support.flow import PASSWORD
from tests.vault.test_connect import _claims, running_vault

pytestmark = pytest.mark.browser


async def _sign_in_to_bastion(tab: Page, username: str) -> None:
    await tab.fill("input[name=username]", username)
    await tab.fill("input[name=password]", PASSWORD)
    await tab.click("form[action$='/signin'] button[type=submit]")


async def test_x09_alice_connects_the_upstream_in_chromium(
    page: Page,  # noqa: F811
    make_settings: Callable[..., Settings],
) -> None:
    async with running_vault(make_settings, pre_registered=False) as vault:
        elicitation = await vault.elicitation("alice")
        link = f"{vault.issuer}/connect/notes?elicitation={elicitation}"
        await page.goto(link)
        await _sign_in_to_bastion(page, "alice")
        await page.wait_for_url(link)
        await expect(page.locator("h1")).to_have_text("Connect notes")
        await page.get_by_role("button", name="Continue to 127.0.0.1").click()
        # node-oidc-provider's development log-in (any name is an account), then its consent.
        await page.fill("input[name=login]", "alice-upstream")
        await page.fill("input[name=password]", "any")
        await page.click("button[type=submit]")
        await expect(page.locator("input[name=login]")).to_have_count(0)  # the consent page
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_have_text("Connected to notes")
        assert page.url.startswith(f"{vault.issuer}/connect/callback?")

        [client] = await vault.rows(upstream_clients)
        assert client["redirect_uri"] == f"{vault.issuer}/connect/callback"
        [row] = await vault.rows(upstream_connections)
        alice = await vault.user_id("alice")
        access = cipher_for(vault.console.settings).decrypt(
            row["access_token_encrypted"], bound_to=connection_binding(alice, "notes", "access")
        )
        assert _claims(access.decode())["sub"] == "alice-upstream"
        assert row["client_id"] == client["client_id"]
        [request] = await vault.rows(upstream_connect_requests)
        assert request["completed_at"] is not None


async def test_x09_bob_is_told_the_link_was_made_for_someone_else(
    page: Page,  # noqa: F811
    make_settings: Callable[..., Settings],
) -> None:
    async with running_vault(make_settings) as vault:
        elicitation = await vault.elicitation("alice")
        await page.goto(f"{vault.issuer}/connect/notes?elicitation={elicitation}")
        await _sign_in_to_bastion(page, "bob")
        await expect(page.locator("h1")).to_have_text("This link was made for another person")
        await expect(page.locator("button")).to_have_count(0)
        assert await vault.rows(upstream_connections) == []
