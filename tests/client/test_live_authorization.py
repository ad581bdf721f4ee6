"""The whole client flow against bastion's own authorization server and a real protected resource
(MCP authorization "Authorization Flow Steps"): 401 -> discovery -> DCR -> authorization code
with PKCE in a (scripted) browser -> token -> retried request; refresh; step-up; machines.
"""

from __future__ import annotations

import asyncio
import os
import stat
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bastion.authserver import admin
from bastion.client import BastionAuth, ClientSettings, FileStorage, PreRegisteredClient
from bastion.client.errors import AuthorizationDenied
from tests.client.browser_user import BrowserUser, never_open
from tests.client.conftest import Stack, StartStack
from tests.support.clients import machine_client

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "wipe"}}


async def test_c01_c02_c12_c13_a_401_leads_to_login_and_one_retry_with_the_bearer_header(
    stack: Stack,
) -> None:
    """The first request gets 401 with a Bearer challenge (RFC 6750 §3, RFC 9728 §5.1); the
    client finds the AS through the PRM, registers (RFC 7591, native), opens the authorization
    URL with PKCE S256 and ``resource`` (RFC 8707 §2) and the challenge's scope, and retries once
    with ``Authorization: Bearer`` (never a query token)."""
    async with (
        BastionAuth(authorizer=stack.authorizer()) as auth,
        httpx.AsyncClient(auth=auth) as http,
    ):
        response = await http.post(stack.rs.url, json=LIST)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["aud"] == stack.rs.url
    assert [s.status for s in stack.rs.seen] == [401, 200]
    assert stack.rs.authorizations[0] is None
    assert (stack.rs.authorizations[1] or "").startswith("Bearer ")
    assert all("access_token" not in s.query for s in stack.rs.seen)
    [opened] = stack.user.opened
    params = stack.user.params()
    assert params["resource"] == [stack.rs.url]
    assert params["code_challenge_method"] == ["S256"]
    assert params["scope"] == ["mcp:tools"]
    assert len(params["state"][0]) >= 43
    assert urlsplit(params["redirect_uri"][0]).hostname == "127.0.0.1"
    assert opened.startswith(f"{stack.issuer}/authorize?")


async def test_c09_c16_tokens_and_registration_are_stored_in_a_private_file(stack: Stack) -> None:
    """Tokens are stored under (server URL, issuer) and the DCR registration under the issuer, in
    a 0600 file in a 0700 directory (OAuth 2.1 §7.1: refresh tokens kept confidential)."""
    async with stack.authorizer() as authorizer:
        await authorizer.login(stack.rs.url)
    storage = FileStorage(stack.storage_path)
    tokens = await storage.get_tokens(stack.rs.url, stack.issuer)
    assert tokens is not None
    assert tokens.resource == stack.rs.url
    assert tokens.refresh_token is not None
    client = await storage.get_client(stack.issuer)
    assert client is not None
    assert client.source == "dcr"
    assert tokens.client_id == client.client_id
    assert stat.S_IMODE(os.stat(stack.storage_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(stack.storage_path.parent).st_mode) == 0o700
    assert "refresh_token" not in repr(tokens)
    assert tokens.refresh_token not in repr(tokens)


async def test_c16_refresh_token_is_used_silently_after_a_restart(stack: Stack) -> None:
    """A new process (a new Authorizer over the same token file) whose access token has expired
    refreshes it (OAuth 2.1 §4.3) without a browser, and the refreshed token is accepted."""
    async with stack.authorizer() as first:
        before = await first.login(stack.rs.url)
    stack.rs.seen.clear()  # login() probed the server for its challenge
    later = lambda: before.obtained_at + 3600.0  # noqa: E731 -- well past the 600 s lifetime
    async with (
        BastionAuth(authorizer=stack.authorizer(open_url=never_open, clock=later)) as auth,
        httpx.AsyncClient(auth=auth) as http,
    ):
        response = await http.post(stack.rs.url, json=LIST)
    assert response.status_code == 200, response.text
    assert [s.status for s in stack.rs.seen] == [200]
    after = await FileStorage(stack.storage_path).get_tokens(stack.rs.url, stack.issuer)
    assert after is not None
    assert after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token  # rotated by the AS (OAuth 2.1 §4.3.1)


async def test_c16_a_token_refused_with_401_is_refreshed_before_any_new_login(
    stack: Stack,
) -> None:
    """The server refuses a token the client still thought valid (revoked, or expired early):
    the 401 leads to a refresh at the same AS and one retry, without a browser."""
    async with stack.authorizer() as first:
        tokens = await first.login(stack.rs.url)
    storage = FileStorage(stack.storage_path)
    await storage.set_tokens(tokens.with_changes(access_token="no-longer-valid"))
    stack.rs.seen.clear()
    async with (
        BastionAuth(authorizer=stack.authorizer(open_url=never_open)) as auth,
        httpx.AsyncClient(auth=auth) as http,
    ):
        response = await http.post(stack.rs.url, json=LIST)
    assert response.status_code == 200, response.text
    assert [s.status for s in stack.rs.seen] == [401, 200]
    assert stack.rs.authorizations[0] == "Bearer no-longer-valid"
    assert len(stack.user.opened) == 1


async def test_c15_a_403_insufficient_scope_reauthorizes_with_the_union_of_scopes(
    start_stack: StartStack,
) -> None:
    """tools/call needs mcp:admin on top of mcp:tools: its 403 ``insufficient_scope`` leads to a
    second authorization for the union ``mcp:tools mcp:admin`` (MCP "Step-Up Authorization
    Flow", RFC 6750 §3.1) and the call succeeds."""
    required = {"*": ["mcp:tools"], "tools/call": ["mcp:tools", "mcp:admin"]}
    async with (
        start_stack(required=required) as stack,
        BastionAuth(authorizer=stack.authorizer()) as auth,
        httpx.AsyncClient(auth=auth) as http,
    ):
        assert (await http.post(stack.rs.url, json=LIST)).status_code == 200
        response = await http.post(stack.rs.url, json=CALL)
        assert response.status_code == 200, response.text
        assert set(response.json()["result"]["scope"].split()) == {"mcp:tools", "mcp:admin"}
        assert [p for p in (stack.user.params(i)["scope"] for i in range(2))] == [
            ["mcp:tools"],
            ["mcp:tools mcp:admin"],
        ]
        assert [s.status for s in stack.rs.seen] == [401, 200, 403, 200]


async def test_c15_no_step_up_for_a_scope_the_token_already_has(start_stack: StartStack) -> None:
    """A 403 ``insufficient_scope`` naming only scopes the token was granted cannot be cured by
    another authorization: the client does not open the browser again and the 403 reaches the
    caller (retry limit, MCP "Step-Up Authorization Flow")."""
    async with start_stack() as stack:
        stack.rs.forbid = {"tools/call"}
        async with (
            BastionAuth(authorizer=stack.authorizer()) as auth,
            httpx.AsyncClient(auth=auth) as http,
        ):
            assert (await http.post(stack.rs.url, json=LIST)).status_code == 200
            response = await http.post(stack.rs.url, json=CALL)
        assert response.status_code == 403
        assert len(stack.user.opened) == 1
        assert [s.status for s in stack.rs.seen] == [401, 200, 403]


async def test_c06_concurrent_401s_share_one_login(stack: Stack) -> None:
    """Requests that meet a 401 together wait for one login instead of opening one browser each;
    no lock is held while requests are in flight."""
    async with (
        BastionAuth(authorizer=stack.authorizer()) as auth,
        httpx.AsyncClient(auth=auth) as http,
    ):
        responses = await asyncio.gather(*(http.post(stack.rs.url, json=LIST) for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(stack.user.opened) == 1


async def test_static_authorization_header_disables_oauth_for_its_url(stack: Stack) -> None:
    """A configured static Authorization header is sent as is; a 401 is returned to the caller
    and no OAuth flow starts for that URL."""
    authorizer = stack.authorizer(
        open_url=never_open, static_headers={stack.rs.url: "Bearer static-token"}
    )
    async with BastionAuth(authorizer=authorizer) as auth, httpx.AsyncClient(auth=auth) as http:
        response = await http.post(stack.rs.url, json=LIST)
    assert response.status_code == 401
    assert stack.rs.authorizations == ["Bearer static-token"]


async def test_c09_a_registration_is_reused_with_the_same_issuer(stack: Stack) -> None:
    """After logging out, the next login reuses the client registered with this issuer (no new
    registration): credentials are kept per issuer (MCP "Authorization Server Binding")."""
    async with stack.authorizer() as authorizer:
        await authorizer.login(stack.rs.url)
        await authorizer.logout(stack.rs.url)
        assert await authorizer.storage.get_tokens(stack.rs.url) is None
        await authorizer.login(stack.rs.url)
    first, second = stack.user.params(0), stack.user.params(1)
    assert first["client_id"] == second["client_id"]
    # The loopback port registered first is bound again when free (exact redirect URI match).
    assert first["redirect_uri"] == second["redirect_uri"]


async def test_c11_a_denied_consent_is_reported_after_iss_is_validated(stack: Stack) -> None:
    """The user denies: the authorization response carries ``error=access_denied`` and the
    right ``iss`` (RFC 9207 §2), so the client reports the refusal."""
    denying = BrowserUser(stack.issuer, decision="deny")
    try:
        async with stack.authorizer(open_url=denying) as authorizer:
            with pytest.raises(AuthorizationDenied) as caught:
                await authorizer.login(stack.rs.url)
        assert caught.value.error == "access_denied"
    finally:
        await denying.aclose()


async def test_c03_a_pre_registered_client_is_used_only_with_its_issuer(stack: Stack) -> None:
    """A client pre-registered with this issuer is used (no DCR); one configured for another
    issuer is ignored and DCR is used instead (credentials never cross authorization servers)."""
    created = await admin.add_client(
        stack.settings,
        client_id="pre-registered-cli",
        name="CLI",
        redirect_uris=["http://127.0.0.1/callback"],
        confidential=False,
        grant_types=["authorization_code", "refresh_token"],
        scope=None,
    )
    mine = PreRegisteredClient(issuer=stack.issuer, client_id=created.client.client_id)
    elsewhere = PreRegisteredClient(issuer="https://other.example", client_id="not-here")
    async with stack.authorizer(pre_registered=[elsewhere]) as authorizer:
        await authorizer.login(stack.rs.url)
    assert stack.user.params(0)["client_id"] != ["not-here"]
    async with stack.authorizer(pre_registered=[mine, elsewhere]) as authorizer:
        await authorizer.login(stack.rs.url)
    assert stack.user.params(1)["client_id"] == ["pre-registered-cli"]


async def test_client_credentials_machine_client_needs_no_browser(stack: Stack) -> None:
    """A pre-registered confidential client with grant_type client_credentials gets its token
    from the token endpoint (OAuth 2.1 §4.2) with client_secret_basic and the resource, and the
    resource server accepts it; no browser is involved."""
    created = await machine_client(stack.settings, client_id="machine", name="A machine")
    machine = PreRegisteredClient(
        issuer=stack.issuer,
        client_id="machine",
        client_secret=created.secret,
        grant_type="client_credentials",
    )
    authorizer = stack.authorizer(open_url=never_open, pre_registered=[machine])
    async with BastionAuth(authorizer=authorizer) as auth, httpx.AsyncClient(auth=auth) as http:
        response = await http.post(stack.rs.url, json=LIST)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["sub"] == "machine"


async def test_c12_the_token_audience_is_the_resource_of_the_metadata(stack: Stack) -> None:
    """The token the client obtains is bound to the resource its PRM names (RFC 8707 §2): the
    resource server's audience check passes, and the same value went to both endpoints."""
    async with stack.authorizer() as authorizer:
        token = await authorizer.access_token(stack.rs.url)
    assert token
    assert parse_qs(urlsplit(stack.user.opened[0]).query)["resource"] == [stack.rs.url]


async def test_settings_refuse_a_cimd_url_without_https_and_path() -> None:
    """A Client ID Metadata Document URL must be https with a path (MCP client registration,
    checklist C07)."""
    for bad in ("http://example.com/client.json", "https://example.com", "https://example.com/"):
        with pytest.raises(ValueError, match="https URL with a path"):
            ClientSettings(client_metadata_url=bad)
    assert ClientSettings(client_metadata_url="https://example.com/c.json").client_metadata_url
