"""Federation in a real browser with a real OpenID provider (issue 6, "Done when" 1).

The upstream is node-oidc-provider (tests/support/oidc_provider.py) configured like an
enterprise identity provider: no Dynamic Client Registration, one confidential client for
bastion (client_secret_basic) whose only redirect URI is bastion's callback. An MCP client
registers at bastion (DCR), sends the browser (Debian's chromium, via Playwright) to bastion's
/authorize with PKCE; the person picks the provider on bastion's log-in page, signs in on the
provider's own pages (login form, then its consent "Continue"), comes back to bastion's consent
page, allows; the client redeems the code and calls a protected MCP endpoint through
bastion.resource.ResourceServerMiddleware with bastion's token, which carries the mapped subject,
e-mail and groups.

Needs Node 22 (BASTION_NODE) and /usr/bin/chromium.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.async_api import Page, async_playwright, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.config import Settings
from bastion.oauth import pkce
from bastion.resource import JwtVerifier, ResourceServerMiddleware, ScopePolicy
from bastion.store.schema import linked_accounts, users
from tests.e2e.loopback_client import CLOSE_WINDOW, LoopbackClient, loopback_client
from tests.federation.support import Bastion, nothing_created, rows, running_bastion
from tests.support.flow import register
from tests.support.live import free_port, serve
from tests.support.oidc_provider import OidcProvider, oidc_provider

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
NAME = "corp"
LABEL = "Corp SSO"
SCOPE = "mcp:tools"
ACCOUNT = {"email": "alice@corp.example", "name": "Alice Corp", "groups": ["mcp-users", "eng"]}


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh headless chromium page; requests off loopback are cut (the provider's
    development pages import a web font)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/test-setup.sh).")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context()

            async def offline(route: Any) -> None:
                await route.abort()

            await context.route("https://**/*", offline)
            tab = await context.new_page()
            tab.set_default_timeout(10_000)
            yield tab
        finally:
            await browser.close()


def bastion_client(callback: str, secret: str) -> dict[str, Any]:
    """bastion's client at the provider, as an administrator registers it by hand."""
    return {
        "client_id": "bastion",
        "client_secret": secret,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [callback],
        "token_endpoint_auth_method": "client_secret_basic",
    }


def upstream_settings(op: OidcProvider, secret: str) -> dict[str, Any]:
    """The [[upstreams]] entry of docs/providers/oidc.md for this provider."""
    return {
        "name": NAME,
        "kind": "oidc",
        "display_name": LABEL,
        "issuer": op.issuer,
        "client_id": "bastion",
        "client_secret": secret,
        "scopes": ["openid", "email", "profile", "groups"],
        "allow": {"email_domains": ["corp.example"], "groups": ["mcp-users"]},
        "store_refresh_token": True,
        # node-oidc-provider grants offline_access only with prompt=consent (OIDC Core §11).
        "extra_authorization_params": {"prompt": "consent"},
        "allow_private_addresses": True,  # the provider runs on loopback over http
    }


def mcp_server(verifier: JwtVerifier, issuer: str, resource: str) -> Starlette:
    """A protected MCP endpoint: bastion.resource's middleware with bastion's JWKS in front of
    an app that says who called and what the token says about them."""

    async def mcp(request: Request) -> Response:
        principal = request.state.principal
        body = await request.json()
        return JSONResponse(
            {
                "jsonrpc": "2.0",
                "id": body["id"],
                "result": {
                    "subject": principal.subject,
                    "email": principal.claims.get("email"),
                    "groups": principal.claims.get("groups"),
                    "scopes": sorted(principal.scopes),
                },
            }
        )

    app = Starlette(routes=[Route("/mcp", mcp, methods=["POST"])])
    return ResourceServerMiddleware(  # type: ignore[return-value]
        app,
        resource=resource,
        verifier=verifier,
        authorization_servers=[issuer],
        scopes_supported=[SCOPE],
        policy=ScopePolicy(default=[SCOPE]),
    )


def authorization_url(bastion: Bastion, client_id: str, redirect_uri: str) -> tuple[str, str, str]:
    verifier, state = pkce.new_verifier(), secrets.token_urlsafe(12)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
        "state": state,
        "resource": bastion.resource,
        "scope": SCOPE,
    }
    return f"{bastion.issuer}/authorize?{urlencode(query)}", verifier, state


async def upstream_log_in(page: Page, op: OidcProvider, login: str) -> None:
    """The provider's development pages: the login form, then its consent page."""
    await page.wait_for_url(lambda url: url.startswith(op.issuer))
    await expect(page.locator("h1")).to_have_text("Sign-in")
    await page.locator('input[name="login"]').fill(login)
    await page.locator('input[name="password"]').fill("any password")
    await page.get_by_role("button", name="Sign-in").click()
    await expect(page.locator("h1")).to_have_text("Authorize")
    await page.get_by_role("button", name="Continue").click()


async def landed(page: Page, app: LoopbackClient) -> dict[str, str]:
    await page.wait_for_url(lambda url: url.startswith(app.redirect_uri + "?"))
    await expect(page.locator("body")).to_have_text(CLOSE_WINDOW)
    return dict(parse_qsl(urlsplit(page.url).query))


async def test_mcp_client_signs_in_through_an_enterprise_idp_and_calls_a_protected_server(
    make_settings: Callable[..., Settings], page: Page
) -> None:
    """MCP client -> bastion -> upstream log-in -> bastion token -> protected MCP call
    (OAuth 2.1 §4.1 twice: bastion towards the provider with PKCE, nonce and client_secret_basic;
    the MCP client towards bastion with DCR and PKCE; RFC 9068 claims; RFC 6750 bearer use)."""
    secret = secrets.token_urlsafe(24)
    port, mcp_port = free_port(), free_port()
    callback = f"http://127.0.0.1:{port}/login/{NAME}/callback"
    resource = f"http://127.0.0.1:{mcp_port}/mcp"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with (
        oidc_provider(
            clients=[bastion_client(callback, secret)],
            default_resource=None,
            accounts={"alice": ACCOUNT},
        ) as op,
        running_bastion(
            make_settings, port, [upstream_settings(op, secret)], resource=resource
        ) as bastion,
        JwtVerifier(
            issuer=bastion.issuer, audience=resource, jwks_uri=f"{bastion.issuer}/jwks"
        ) as verifier,
        serve(mcp_server(verifier, bastion.issuer, resource), port=mcp_port),
        loopback_client("Enterprise MCP client") as app,
        httpx.AsyncClient(base_url=bastion.issuer) as http,
    ):
        client_id = (await register(http, client_name=app.name, redirect_uris=[app.redirect_uri]))[
            "client_id"
        ]
        url, verifier, state = authorization_url(bastion, client_id, app.redirect_uri)

        await page.goto(url)
        await expect(page.locator("h1")).to_have_text("Sign in")
        button = page.get_by_role("button", name=f"Continue with {LABEL}")
        await expect(button).to_be_visible()
        await page.screenshot(path=SCREENSHOTS / "federation-login.png", full_page=True)
        await button.click()
        await upstream_log_in(page, op, "alice")

        await page.wait_for_url(lambda u: u.startswith(bastion.issuer + "/interaction/"))
        await expect(page.locator("h1")).to_have_text(f"Allow {app.name}?")
        await expect(page.locator(".lead")).to_contain_text("Alice Corp")
        await page.screenshot(path=SCREENSHOTS / "federation-consent.png", full_page=True)
        await page.get_by_role("button", name="Allow", exact=True).click()
        answer = await landed(page, app)
        assert answer["state"] == state and answer["iss"] == bastion.issuer

        token = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": app.redirect_uri,
                "code_verifier": verifier,
                "client_id": client_id,
                "resource": resource,
            },
        )
        assert token.status_code == 200, token.text
        assert token.headers["cache-control"] == "no-store"
        tokens = token.json()
        keys = KeySet.import_key_set((await http.get("/jwks")).json())
        claims = jwt.decode(tokens["access_token"], keys, algorithms=["ES256"]).claims
        [user] = await rows(bastion.settings, users)
        [link] = await rows(bastion.settings, linked_accounts)
        assert (link.issuer, link.subject, link.user_id) == (op.issuer, "alice", user.id)
        assert link.refresh_token_encrypted is not None  # the provider's, sealed
        assert claims["iss"] == bastion.issuer and claims["aud"] == resource
        assert claims["sub"] == user.id
        assert claims["email"] == "alice@corp.example"
        assert claims["name"] == "Alice Corp"
        assert claims["groups"] == ["mcp-users", "eng"]

        async with httpx.AsyncClient() as mcp:
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            refused = await mcp.post(resource, json=call)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer ")
            done = await mcp.post(
                resource, json=call, headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
        assert done.status_code == 200, done.text
        assert done.json()["result"] == {
            "subject": user.id,
            "email": "alice@corp.example",
            "groups": ["mcp-users", "eng"],
            "scopes": [SCOPE],
        }


async def test_cancel_at_the_enterprise_idp_shows_bastions_error_page(
    make_settings: Callable[..., Settings], page: Page
) -> None:
    """The person cancels on the provider's page ("[ Cancel ]": error=access_denied, RFC 6749
    §4.1.2.1): bastion shows a page naming the provider, with a way back; nothing is created."""
    secret = secrets.token_urlsafe(24)
    port = free_port()
    callback = f"http://127.0.0.1:{port}/login/{NAME}/callback"
    async with (
        oidc_provider(clients=[bastion_client(callback, secret)], default_resource=None) as op,
        running_bastion(make_settings, port, [upstream_settings(op, secret)]) as bastion,
        loopback_client("Enterprise MCP client") as app,
        httpx.AsyncClient(base_url=bastion.issuer) as http,
    ):
        client_id = (await register(http, client_name=app.name, redirect_uris=[app.redirect_uri]))[
            "client_id"
        ]
        url, _, _ = authorization_url(bastion, client_id, app.redirect_uri)
        await page.goto(url)
        await page.get_by_role("button", name=f"Continue with {LABEL}").click()
        await page.wait_for_url(lambda u: u.startswith(op.issuer))
        await page.get_by_role("link", name="[ Cancel ]").click()
        await page.wait_for_url(lambda u: u.startswith(bastion.callback(NAME)))
        await expect(page.locator("h1")).to_have_text("Sign-in refused")
        await expect(page.get_by_role("alert")).to_contain_text(
            f"{LABEL} did not let you sign in (access was denied)."
        )
        await page.screenshot(path=SCREENSHOTS / "federation-denied.png", full_page=True)
        await page.get_by_role("link", name="Back to sign-in").click()
        await expect(page.get_by_role("button", name=f"Continue with {LABEL}")).to_be_visible()
        await nothing_created(bastion.settings)
