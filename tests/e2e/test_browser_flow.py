"""The whole authorization code flow through a real browser (issue 2, "Done when").

Debian's chromium, driven by Playwright, signs a user in and answers the consent page of a live
authorization server; the client's side (registration, callback, token requests) is plain HTTP.
Covered: OAuth 2.1 §4.1 with PKCE, RFC 9207 (``iss``), RFC 9068 (JWT access tokens), refresh
token rotation and reuse detection (RFC 9700 §4.14.2), RFC 7662 introspection, RFC 7009
revocation, and both MCP client registration routes a browser sees: DCR (RFC 7591) and Client ID
Metadata Documents.

Screenshots of the log-in and consent pages go to ``.cache/screenshots/`` for a human to look at.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.async_api import Page, async_playwright, expect

from bastion.authserver.admin import database
from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings
from bastion.oauth import pkce
from bastion.store import users as user_rows
from tests.e2e.loopback_client import CLOSE_WINDOW, LoopbackClient, loopback_client
from tests.support.clients import MachineClient, machine_client
from tests.support.flow import PASSWORD, Authorized, add_user, exchange, register
from tests.support.live import free_port, serve

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".cache" / "screenshots"
USERNAME = "alice"
SCOPE = "mcp:tools"
TOKEN_FIELDS = {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
CLAIMS = {"iss", "sub", "aud", "client_id", "scope", "iat", "exp", "jti", "grant_id"}


# Fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh headless chromium page (one browser per test: the AS fixtures are per test)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's chromium. "
            "`make test` installs it (scripts/test-setup.sh)."
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context()
            tab = await context.new_page()
            tab.set_default_timeout(10_000)
            yield tab
        finally:
            await browser.close()


@pytest.fixture
async def live_as_cimd(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[str, Settings]]:
    """Like ``live_as``, but fetching client metadata documents from loopback over http."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=f"{issuer}/mcp", name="demo", scopes=[SCOPE])],
        cimd={"allow_private_addresses": True},
    )
    async with serve(create_app(settings), port=port) as url:
        assert url == issuer
        yield issuer, settings


# The browser's part -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """What a client remembers while the browser is away: its URL, state, verifier, resource."""

    url: str
    state: str
    verifier: str
    resource: str


def authorization_request(issuer: str, client_id: str, redirect_uri: str) -> Pending:
    """An authorization URL with PKCE S256, state, resource and scope (OAuth 2.1 §4.1.1)."""
    verifier, state = pkce.new_verifier(), secrets.token_urlsafe(16)
    resource = f"{issuer}/mcp"
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
        "state": state,
        "resource": resource,
        "scope": SCOPE,
    }
    return Pending(f"{issuer}/authorize?{urlencode(query)}", state, verifier, resource)


async def sign_in(page: Page, url: str, *, screenshot: str = "") -> None:
    """Open the authorization URL, fill the log-in form and submit it; ends on the consent page."""
    await page.goto(url)
    await expect(page.locator("h1")).to_have_text("Sign in")
    if screenshot:
        await page.screenshot(path=SCREENSHOTS / screenshot, full_page=True)
    await page.get_by_label("User name").fill(USERNAME)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("h1")).to_contain_text("Allow")


async def check_consent_page(page: Page, client_name: str, *, screenshot: str = "") -> None:
    """The consent page names the client and shows where the code goes (MCP security
    considerations; A03: show the redirect host clearly, warn about localhost-only redirects)."""
    await expect(page.locator("h1")).to_have_text(f"Allow {client_name}?")
    host = page.locator(".redirect-host")
    await expect(host).to_be_visible()
    await expect(host).to_have_text("127.0.0.1")
    weight = await host.evaluate("e => Number(getComputedStyle(e).fontWeight)")
    assert weight >= 600, f"the redirect host should stand out; font-weight is {weight}"
    warning = page.get_by_role("note").filter(has_text="this computer")
    await expect(warning).to_be_visible()
    await expect(warning).to_contain_text("127.0.0.1")
    if screenshot:
        await page.screenshot(path=SCREENSHOTS / screenshot, full_page=True)


async def answer_consent(page: Page, client: LoopbackClient, button: str) -> dict[str, str]:
    """Click Allow or Deny; return the query the browser brought back to the callback."""
    await page.get_by_role("button", name=button, exact=True).click()
    return await landed_on_callback(page, client)


async def landed_on_callback(page: Page, client: LoopbackClient) -> dict[str, str]:
    """Wait until the browser is at the client's callback; its query, as the client saw it."""
    await page.wait_for_url(lambda url: url.startswith(client.redirect_uri + "?"))
    await expect(page.locator("body")).to_have_text(CLOSE_WINDOW)
    query = dict(parse_qsl(urlsplit(page.url).query))
    assert client.callbacks[-1] == query
    return query


# The client's part: plain HTTP ------------------------------------------------------------------


async def redeem(
    http: httpx.AsyncClient, client: LoopbackClient, client_id: str, pending: Pending, code: str
) -> dict[str, Any]:
    """Exchange the code (with verifier and resource) and check the token response (RFC 6749
    §5.1: exact fields, no caching)."""
    response = await exchange(
        http,
        client_id,
        Authorized(client.redirect_uri, {"code": code}, pending.verifier),
        redirect_uri=client.redirect_uri,
        resource=pending.resource,
    )
    return token_body(response)


def token_body(response: httpx.Response) -> dict[str, Any]:
    """A successful token response: 200, Cache-Control no-store, exactly the expected fields."""
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert set(body) == TOKEN_FIELDS
    assert body["token_type"] == "Bearer"
    assert body["scope"] == SCOPE
    return body


async def use_refresh_token(
    http: httpx.AsyncClient, client_id: str, refresh_token: str
) -> httpx.Response:
    return await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "invalid_grant"


async def access_token_claims(
    http: httpx.AsyncClient, token: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the access token's signature against the AS's JWKS; its header and claims."""
    response = await http.get("/jwks")
    assert response.status_code == 200
    keys = KeySet.import_key_set(response.json())
    decoded = jwt.decode(token, keys, algorithms=["ES256", "EdDSA", "RS256"])
    jwt.JWTClaimsRegistry(exp={"essential": True}, iat={"essential": True}).validate(decoded.claims)
    return dict(decoded.header), dict(decoded.claims)


async def introspect(http: httpx.AsyncClient, caller: MachineClient, token: str) -> dict[str, Any]:
    """RFC 7662 §2.1, authenticated as a confidential client with client_secret_basic."""
    response = await http.post("/introspect", data={"token": token}, auth=caller.auth)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer: dict[str, Any] = response.json()
    return answer


async def revoke(http: httpx.AsyncClient, client_id: str, token: str) -> None:
    """RFC 7009 §2.1, by the public client that holds the token."""
    response = await http.post("/revoke", data={"token": token, "client_id": client_id})
    assert response.status_code == 200, response.text


async def add_resource_server(settings: Settings) -> MachineClient:
    """A confidential client that may introspect (a resource server)."""
    return await machine_client(settings, name="Resource server", scope=None, introspects=["*"])


async def user_id(settings: Settings, username: str = USERNAME) -> str:
    async with database(settings) as db, db.connect() as conn:
        user = await user_rows.by_username(conn, username)
    assert user is not None
    return user.id


# Scenarios --------------------------------------------------------------------------------------


async def test_a01_a06_dcr_client_signs_in_through_a_browser_and_uses_rotating_tokens(
    live_as: tuple[str, Settings], page: Page
) -> None:
    """OAuth 2.1 §4.1 + RFC 7591 + RFC 9207 + RFC 9068 + RFC 9700 §4.14.2 + RFC 7662 + RFC 7009:
    a DCR native client, a browser log-in and consent, then the tokens' whole life."""
    issuer, settings = live_as
    await add_user(settings, USERNAME)
    subject = await user_id(settings)
    resource_server = await add_resource_server(settings)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with (
        loopback_client("Browser test client") as app,
        httpx.AsyncClient(base_url=issuer) as http,
    ):
        registered = await register(http, client_name=app.name, redirect_uris=[app.redirect_uri])
        client_id = registered["client_id"]

        pending = authorization_request(issuer, client_id, app.redirect_uri)
        await sign_in(page, pending.url, screenshot="login.png")
        await check_consent_page(page, app.name, screenshot="consent.png")
        response = await answer_consent(page, app, "Allow")
        assert set(response) == {"code", "state", "iss"}
        assert response["state"] == pending.state
        assert response["iss"] == issuer

        tokens = await redeem(http, app, client_id, pending, response["code"])
        assert tokens["expires_in"] == settings.tokens.access_token_ttl
        header, claims = await access_token_claims(http, tokens["access_token"])
        assert header["typ"] == "at+jwt"
        assert set(claims) == CLAIMS
        assert claims["iss"] == issuer
        assert claims["aud"] == f"{issuer}/mcp"
        assert claims["client_id"] == client_id
        assert claims["scope"] == SCOPE
        assert claims["sub"] == subject
        assert claims["exp"] - claims["iat"] == settings.tokens.access_token_ttl
        assert claims["jti"]
        assert await introspect(http, resource_server, tokens["access_token"]) == {
            "active": True,
            "token_type": "Bearer",
            **claims,
        }

        # Rotation: a refresh returns a new refresh token; the old one is then spent.
        rotated = token_body(await use_refresh_token(http, client_id, tokens["refresh_token"]))
        assert rotated["refresh_token"] != tokens["refresh_token"]
        assert rotated["access_token"] != tokens["access_token"]
        assert (await introspect(http, resource_server, rotated["access_token"]))["active"]

        # Once the successor has been used too, reuse of the spent token (no longer a repeat
        # within tokens.refresh_reuse_window): refused, and the whole family with it.
        onward = token_body(await use_refresh_token(http, client_id, rotated["refresh_token"]))
        assert_invalid_grant(await use_refresh_token(http, client_id, tokens["refresh_token"]))
        assert_invalid_grant(await use_refresh_token(http, client_id, onward["refresh_token"]))
        inactive = {"active": False}
        assert await introspect(http, resource_server, onward["access_token"]) == inactive

        # A new grant: still signed in, but a public loopback client is asked again (RFC 8252
        # §8.6), then revocation (RFC 7009 §2.1).
        pending = authorization_request(issuer, client_id, app.redirect_uri)
        await page.goto(pending.url)
        await check_consent_page(page, app.name)
        response = await answer_consent(page, app, "Allow")
        assert response["state"] == pending.state
        fresh = await redeem(http, app, client_id, pending, response["code"])
        assert (await introspect(http, resource_server, fresh["access_token"]))["active"]
        await revoke(http, client_id, fresh["refresh_token"])
        assert await introspect(http, resource_server, fresh["access_token"]) == inactive
        assert await introspect(http, resource_server, fresh["refresh_token"]) == inactive
        assert_invalid_grant(await use_refresh_token(http, client_id, fresh["refresh_token"]))


async def test_a03_cimd_client_signs_in_through_a_browser_and_is_asked_again_on_loopback(
    live_as_cimd: tuple[str, Settings], page: Page
) -> None:
    """MCP client registration (Client ID Metadata Documents) + OAuth 2.1 §4.1: the consent page
    says who vouches for the client; a second request keeps the session but asks again, since the
    redirect goes to loopback (RFC 8252 §8.6)."""
    issuer, settings = live_as_cimd
    await add_user(settings, USERNAME)
    resource_server = await add_resource_server(settings)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with (
        loopback_client("Metadata document client") as app,
        httpx.AsyncClient(base_url=issuer) as http,
    ):
        client_id = app.document_url

        pending = authorization_request(issuer, client_id, app.redirect_uri)
        await sign_in(page, pending.url)
        await check_consent_page(page, app.name, screenshot="consent-cimd.png")
        identified_by = page.locator("dt", has_text="Identified by").locator("+ dd")
        await expect(identified_by).to_have_text("a metadata document on 127.0.0.1")
        await expect(page.get_by_text(client_id, exact=True)).to_be_visible()
        response = await answer_consent(page, app, "Allow")
        assert set(response) == {"code", "state", "iss"}
        assert response["state"] == pending.state
        assert response["iss"] == issuer
        tokens = await redeem(http, app, client_id, pending, response["code"])
        _, claims = await access_token_claims(http, tokens["access_token"])
        assert claims["client_id"] == client_id

        # Revoking the access token (RFC 7009 §2.1) makes introspection report it inactive.
        await revoke(http, client_id, tokens["access_token"])
        assert await introspect(http, resource_server, tokens["access_token"]) == {"active": False}

        # Same user, client and scopes: the session is kept (no log-in page), but the consent
        # page shows again, because this public client redirects to loopback, where any local
        # program could present its client_id (RFC 8252 §8.6; MCP: warn on localhost).
        pending = authorization_request(issuer, client_id, app.redirect_uri)
        await page.goto(pending.url)
        await check_consent_page(page, app.name)
        response = await answer_consent(page, app, "Allow")
        assert set(response) == {"code", "state", "iss"}
        assert response["state"] == pending.state
        assert response["iss"] == issuer
        await redeem(http, app, client_id, pending, response["code"])


async def test_a05_denied_consent_returns_access_denied_with_state_and_iss(
    live_as: tuple[str, Settings], page: Page
) -> None:
    """RFC 6749 §4.1.2.1 + RFC 9207 §2: Deny sends the browser back with error=access_denied,
    the client's state and the issuer, and no code."""
    issuer, settings = live_as
    await add_user(settings, USERNAME)
    async with (
        loopback_client("Browser test client") as app,
        httpx.AsyncClient(base_url=issuer) as http,
    ):
        registered = await register(http, client_name=app.name, redirect_uris=[app.redirect_uri])
        pending = authorization_request(issuer, registered["client_id"], app.redirect_uri)
        await sign_in(page, pending.url)
        await check_consent_page(page, app.name)
        response = await answer_consent(page, app, "Deny")
    assert response["error"] == "access_denied"
    assert response["state"] == pending.state
    assert response["iss"] == issuer
    assert set(response) <= {"error", "error_description", "state", "iss"}
