"""The token vault end to end (issue 18, "Real parts in the tests"): the official ``mcp`` SDK
client through bastion's gateway to an upstream with its own OAuth, a person connecting in
Debian's chromium.

First call -> -32042 (MCP 2025-11-25 client/elicitation, "URL Elicitation Required Error", X09)
with the connect URL -> chromium signs in to bastion as alice, opens the URL, connects at
node-oidc-provider -> the retried call succeeds with alice's upstream identity; bob gets his own
(X11); an expired upstream token is refreshed; a token revoked upstream (RFC 7009) leads back to
the elicitation, and connecting again works.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx2
import pytest
from mcp import MCPError, UrlElicitationRequiredError
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from playwright.async_api import Browser, Page, async_playwright, expect

from bastion.config import Settings
from tests.support.flow import PASSWORD
from tests.vault.gateway_stack import UPSTREAM, VaultStack, vault_stack

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


@pytest.fixture
async def stack(make_settings: Callable[..., Settings]) -> AsyncIterator[VaultStack]:
    async with vault_stack(make_settings) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless chromium; each person gets a context of their own (:func:`connect`)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the browser tests drive Debian's chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def whoami(stack: VaultStack, token: str) -> str:
    """The SDK client's session through the gateway: initialize, then the whoami tool."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        streamable_http_client(stack.url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("whoami", {})
        assert not result.is_error, result
        return str(result.structured_content["result"] if result.structured_content else "")


async def elicited_url(stack: VaultStack, token: str) -> str:
    """The SDK client's first call fails with -32042; the URL it names."""
    with pytest.RaisesGroup(MCPError, flatten_subgroups=True) as raised:
        await whoami(stack, token)
    [error] = [e for e in _leaves(raised.value) if isinstance(e, MCPError)]
    assert error.code == -32042, error
    [elicitation] = UrlElicitationRequiredError.from_error(error.error).elicitations
    assert elicitation.url.startswith(f"{stack.issuer}/connect/{UPSTREAM}?elicitation=")
    assert elicitation.url in error.message
    return elicitation.url


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions of a group, nested groups opened (the SDK's task groups wrap them)."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


async def connect(launched: Browser, url: str, username: str, upstream_login: str) -> None:
    """A person's browser: open the elicitation URL, sign in to bastion, continue to the
    upstream, sign in there and allow; ends on bastion's "Connected" page."""
    context = await launched.new_context()
    try:
        page: Page = await context.new_page()
        page.set_default_timeout(15_000)
        await page.goto(url)
        await page.fill("#username", username)
        await page.fill("#password", PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("button", name="Continue to").click()
        await page.fill("input[name=login]", upstream_login)
        await page.fill("input[name=password]", "any")
        await page.locator("button[type=submit]").first.click()
        await page.locator("button[type=submit]").first.click()  # the provider's consent
        await expect(page.get_by_role("heading", name=f"Connected to {UPSTREAM}")).to_be_visible()
    finally:
        await context.close()


async def test_x09_x11_sdk_client_elicits_connects_in_chromium_and_gets_its_own_identity(
    stack: VaultStack, browser: Browser
) -> None:
    """The whole journey for two people, then expiry (refreshed) and upstream revocation
    (back to the elicitation, and connecting again works)."""
    alice_id, alice = await stack.person("alice")
    bob_id, bob = await stack.person("bob")

    url = await elicited_url(stack, alice)
    assert stack.upstream.authorizations == []
    await connect(browser, url, "alice", "alice-upstream")
    assert await whoami(stack, alice) == "alice-upstream"

    # bob: alice's connection is not his; his own elicitation, his own upstream identity.
    bob_url = await elicited_url(stack, bob)
    assert bob_url != url
    await connect(browser, bob_url, "bob", "bob-upstream")
    assert await whoami(stack, bob) == "bob-upstream"
    assert await whoami(stack, alice) == "alice-upstream"

    # Expiry: the stored token past its refresh point is refreshed on the next call.
    before = stack.open_token(await stack.expire(alice_id))
    assert await whoami(stack, alice) == "alice-upstream"
    refreshed = await stack.connection(alice_id)
    assert refreshed is not None and refreshed.refreshed_at is not None
    after = stack.open_token(refreshed)
    assert after != before

    # Revoked upstream: the upstream refuses, the gateway elicits again, connecting works.
    await stack.revoke_upstream(after)
    again = await elicited_url(stack, alice)
    assert await stack.connection(alice_id) is None
    await connect(browser, again, "alice", "alice-upstream")
    assert await whoami(stack, alice) == "alice-upstream"
    assert await stack.connection(bob_id) is not None
    seen = "\n".join(a or "" for _, a in stack.upstream.seen)
    assert alice not in seen and bob not in seen
