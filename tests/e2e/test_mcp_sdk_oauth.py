"""The official MCP SDK client, unmodified, through the gateway (issue 3, "Done when").

bastion's AS, the gateway and the demo MCP server run under uvicorn on loopback; the gateway
fronts the demo server twice: over streamable HTTP (``demo``) and over stdio (``demo-stdio``).
The client is the ``mcp`` SDK's own ``OAuthClientProvider`` on ``streamable_http_client`` and
``ClientSession``, as a third party would wire it: an in-memory ``TokenStorage``, and a headless
redirect handler standing in for the user's browser (it signs in and consents on bastion's pages
and hands the authorization response to the SDK's callback handler).

Covered, MCP authorization (2026-07-28): discovery from the 401 (RFC 9728 §5.1, R01-R03), AS
metadata (RFC 8414), Dynamic Client Registration (RFC 7591), authorization code with PKCE and
``iss`` (OAuth 2.1 §4.1, RFC 9207), resource indicators (RFC 8707, R04), step-up on 403
insufficient_scope (RFC 6750 §3.1, R07; the SDK asks again with the union of scopes, SEP-2350).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from bastion.authserver.app import create_app
from bastion.config import Settings
from bastion.demo.server import demo_app
from bastion.gateway import create_gateway_app
from bastion.oauth.www_authenticate import parse_challenges
from tests.support.flow import PASSWORD, add_user
from tests.support.live import free_port, serve

# Nothing listens here: the headless browser reads the AS's final redirect instead of following
# it, as a loopback listener would have received it (RFC 8252 §7.3).
REDIRECT_URI = "http://127.0.0.1:53682/callback"
UPSTREAMS = ("demo", "demo-stdio")
TOOLS = {"echo", "add", "list_notes", "add_note"}
STEP_UP_SCOPE = "mcp:tools notes:write"
ACCEPT = "application/json, text/event-stream"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
}
# Every SDK session and every step of the browser is bounded by this (seconds).
BOUND = 20


class MemoryTokenStorage:
    """The SDK's ``TokenStorage`` protocol, in memory: one per MCP server the client talks to."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class _Form(HTMLParser):
    """The first POST form of a page: its action and hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}
        self.fields: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None and a.get("method", "").lower() == "post":
            self.action = a.get("action", "")
        elif tag == "input" and "name" in a:
            self.fields.add(a["name"])
            if a.get("type") == "hidden":
                self.hidden[a["name"]] = a.get("value", "")


def _form(html: str) -> _Form:
    parser = _Form()
    parser.feed(html)
    assert parser.action is not None, html
    return parser


class HeadlessBrowser:
    """The user's browser, for the SDK's ``redirect_handler`` and ``callback_handler``.

    ``redirect`` opens the authorization URL with a cookie-keeping client, signs in on the log-in
    page (CSRF token from the form) and allows on the consent page, and keeps the final redirect
    to the client's redirect URI; ``callback`` hands its code, state and iss to the SDK.
    """

    def __init__(self, username: str = "alice", password: str = PASSWORD) -> None:
        self.username = username
        self.password = password
        self.http = httpx.AsyncClient(timeout=BOUND, follow_redirects=False)
        self.authorization_urls: list[str] = []
        self.pages: list[str] = []
        self._result: AuthorizationCodeResult | None = None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def redirect(self, authorization_url: str) -> None:
        self.authorization_urls.append(authorization_url)
        response = await self.http.get(authorization_url)
        for _ in range(6):  # log-in, consent, and a redirect or two between them at most
            assert response.status_code in (302, 303), response.text
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(REDIRECT_URI + "?"):
                break
            page = await self.http.get(location)
            if page.status_code in (302, 303):
                response = page
                continue
            assert page.status_code == 200, page.text
            form = _form(page.text)
            data = dict(form.hidden)
            if "password" in form.fields:
                self.pages.append("login")
                data.update(username=self.username, password=self.password)
            else:
                self.pages.append("consent")
                data["decision"] = "allow"
            response = await self.http.post(urljoin(location, form.action), data=data)
        else:
            raise AssertionError(f"no redirect to the client after {self.pages}")
        params = dict(parse_qsl(urlsplit(location).query))
        assert "error" not in params, params
        self._result = AuthorizationCodeResult(
            code=params["code"], state=params.get("state"), iss=params.get("iss")
        )

    async def callback(self) -> AuthorizationCodeResult:
        result, self._result = self._result, None
        assert result is not None, "the callback handler ran before the redirect handler"
        return result


@dataclass
class Exchange:
    """One HTTP exchange the SDK's client made (its auth flow's requests included)."""

    method: str
    url: str
    status: int
    www_authenticate: str | None


@dataclass
class SdkClient:
    """What one SDK client (one MCP server URL) used and saw."""

    url: str
    storage: MemoryTokenStorage = field(default_factory=MemoryTokenStorage)
    browser: HeadlessBrowser = field(default_factory=HeadlessBrowser)
    exchanges: list[Exchange] = field(default_factory=list)

    async def _record(self, response: httpx2.Response) -> None:
        self.exchanges.append(
            Exchange(
                response.request.method,
                str(response.request.url),
                response.status_code,
                response.headers.get("www-authenticate"),
            )
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[ClientSession]:
        """An initialized MCP session, authorized by the SDK's own OAuth provider."""
        provider = OAuthClientProvider(
            server_url=self.url,
            client_metadata=OAuthClientMetadata(
                client_name="mcp SDK e2e client", redirect_uris=[AnyUrl(REDIRECT_URI)]
            ),
            storage=self.storage,
            redirect_handler=self.browser.redirect,
            callback_handler=self.browser.callback,
        )
        async with (
            httpx2.AsyncClient(
                auth=provider,
                timeout=httpx2.Timeout(BOUND),
                event_hooks={"response": [self._record]},
            ) as http,
            streamable_http_client(self.url, http_client=http) as (read, write),
            ClientSession(read, write, read_timeout_seconds=BOUND) as session,
        ):
            await session.initialize()
            yield session

    def access_token(self) -> str:
        assert self.storage.tokens is not None
        return self.storage.tokens.access_token


@dataclass
class Stack:
    issuer: str
    gateway: str
    settings: Settings

    def url(self, name: str) -> str:
        return f"{self.gateway}/mcp/{name}"

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of one of the AS's JWT access tokens (RFC 9068)."""
        async with httpx.AsyncClient(timeout=BOUND) as http:
            response = await http.get(f"{self.issuer}/jwks")
        assert response.status_code == 200
        decoded = jwt.decode(
            token, KeySet.import_key_set(response.json()), algorithms=["ES256", "EdDSA", "RS256"]
        )
        return dict(decoded.claims)


@pytest.fixture
async def stack(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    """bastion's AS and gateway, the demo server over streamable HTTP behind ``demo`` and over
    stdio behind ``demo-stdio``; the AS learns both resources from the gateway configuration."""
    as_port, gateway_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    policy = {"default": ["mcp:tools"], "tools": {"add_note": ["notes:write"]}}
    async with serve(demo_app()) as demo_base:
        settings = make_settings(
            issuer=issuer,
            resources=[],
            gateway={
                "enabled": True,
                "public_url": gateway,
                "upstreams": [
                    {
                        "name": "demo",
                        "path": "/mcp/demo",
                        "url": f"{demo_base}/mcp",
                        "scopes": ["mcp:tools"],
                        "policy": policy,
                    },
                    {
                        "name": "demo-stdio",
                        "path": "/mcp/demo-stdio",
                        "command": [sys.executable, "-m", "bastion.demo"],
                        "scopes": ["mcp:tools"],
                        "policy": policy,
                    },
                ],
            },
        )
        await add_user(settings)
        async with (
            serve(create_app(settings), port=as_port),
            serve(create_gateway_app(settings), port=gateway_port),
        ):
            yield Stack(issuer=issuer, gateway=gateway, settings=settings)


@pytest.fixture
async def clients(stack: Stack) -> AsyncIterator[dict[str, SdkClient]]:
    """One SDK client per upstream, each with its own storage and browser (cookie jar)."""
    made = {name: SdkClient(stack.url(name)) for name in UPSTREAMS}
    try:
        yield made
    finally:
        for client in made.values():
            await client.browser.aclose()


def metadata_url_of(stack: Stack, name: str) -> str:
    """Where the gateway publishes an upstream's protected resource metadata (RFC 9728 §3.1)."""
    return f"{stack.gateway}/.well-known/oauth-protected-resource/mcp/{name}"


@pytest.mark.parametrize("name", UPSTREAMS)
async def test_r07_sdk_client_registers_authorizes_and_steps_up_through_the_gateway(
    stack: Stack, clients: dict[str, SdkClient], name: str
) -> None:
    """MCP authorization, whole flow with the official client: the 401 names the resource
    metadata (RFC 9728 §5.1), the SDK finds the AS (RFC 8414), registers (RFC 7591), signs the
    user in with PKCE and a resource indicator (RFC 8707) and gets a token for this upstream's
    resource; tools/list and echo work. add_note is refused with 403 insufficient_scope naming
    every scope it needs (RFC 6750 §3.1); the SDK asks again for the union and the call goes
    through."""
    client = clients[name]
    resource = stack.url(name)
    async with asyncio.timeout(2 * BOUND), client.session() as session:
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} == TOOLS
        echoed = await session.call_tool("echo", {"text": f"via {name}"})
        assert echoed.is_error is False
        assert echoed.structured_content == {"result": f"via {name}"}
        first = client.access_token()

        noted = await session.call_tool("add_note", {"text": "stepped up"})
        assert noted.is_error is False
        assert noted.structured_content == {"result": "note 1 saved"}
        listed = await session.call_tool("list_notes", {})
        assert listed.structured_content is not None
        assert [n.endswith(" stepped up") for n in listed.structured_content["result"]] == [True]

    # What the SDK did over HTTP: a 401 without a token, the resource's metadata, the AS's
    # metadata, Dynamic Client Registration (no CIMD: the SDK only uses a client_metadata_url,
    # which must be https), the code for a token; on the 403 only a new token (after the
    # browser round trip) and the retried call.
    flow = [(e.method, e.url, e.status) for e in client.exchanges]
    token_endpoint = ("POST", f"{stack.issuer}/token", 200)
    assert flow[:5] == [
        ("POST", resource, 401),
        ("GET", metadata_url_of(stack, name), 200),
        ("GET", f"{stack.issuer}/.well-known/oauth-authorization-server", 200),
        ("POST", f"{stack.issuer}/register", 201),
        token_endpoint,
    ]
    step_up = flow.index(("POST", resource, 403))
    assert flow[step_up + 1 : step_up + 3] == [token_endpoint, ("POST", resource, 200)]
    assert [f[2] for f in flow].count(401) == 1
    assert [f[2] for f in flow].count(403) == 1
    # The SDK's client reads the Bearer challenge; the DPoP one follows it (RFC 9449 §7.2).
    challenge, dpop = parse_challenges(client.exchanges[0].www_authenticate or "")
    assert (challenge.scheme, dpop.scheme) == ("bearer", "dpop")
    assert challenge.params == {
        "resource_metadata": metadata_url_of(stack, name),
        "scope": "mcp:tools",
    }
    # The SDK registered with the scope of that first challenge and no auth method, so bastion
    # gave it the RFC 7591 §2 default, client_secret_basic, with a secret.
    info = client.storage.client_info
    assert info is not None
    assert (info.issuer, info.scope) == (stack.issuer, "mcp:tools")
    assert info.token_endpoint_auth_method == "client_secret_basic"
    assert info.client_secret is not None

    # The step-up challenge: 403 insufficient_scope with every scope add_note needs.
    forbidden = client.exchanges[step_up]
    [challenge] = parse_challenges(forbidden.www_authenticate or "")
    assert challenge.params["error"] == "insufficient_scope"
    assert challenge.params["scope"] == STEP_UP_SCOPE
    assert challenge.params["resource_metadata"] == metadata_url_of(stack, name)

    # Two authorizations: log-in and consent, then (same browser session) consent for the
    # added scope only; both for this upstream's resource, the second for the union.
    first_url, second_url = client.browser.authorization_urls
    first_query, second_query = (
        dict(parse_qsl(urlsplit(u).query)) for u in (first_url, second_url)
    )
    assert first_url.startswith(f"{stack.issuer}/authorize?")
    assert (first_query["resource"], first_query["scope"]) == (resource, "mcp:tools")
    assert (second_query["resource"], second_query["scope"]) == (resource, STEP_UP_SCOPE)
    assert second_query["client_id"] == first_query["client_id"] == info.client_id
    assert client.browser.pages == ["login", "consent", "consent"]

    # Both tokens are bound to this upstream's resource (RFC 8707, RFC 9068 §3).
    final = client.access_token()
    assert final != first
    for token, scope in ((first, "mcp:tools"), (final, STEP_UP_SCOPE)):
        claims = await stack.claims(token)
        assert claims["iss"] == stack.issuer
        assert claims["aud"] in (resource, [resource])
        assert claims["client_id"] == info.client_id
        assert set(claims["scope"].split()) == set(scope.split())


async def test_r04_a_token_the_sdk_got_for_one_upstream_is_refused_by_the_other(
    stack: Stack, clients: dict[str, SdkClient]
) -> None:
    """RFC 8707, MCP "Token Audience Binding": each SDK client holds a token for its own
    upstream only; presented to the other upstream of the same gateway it is 401 invalid_token,
    with the challenge pointing at that upstream's metadata."""
    async with asyncio.timeout(2 * BOUND):
        for client in clients.values():
            async with client.session() as session:
                tools = await session.list_tools()
                assert {t.name for t in tools.tools} == TOOLS
        async with httpx.AsyncClient(timeout=BOUND) as http:
            for name, other in (("demo", "demo-stdio"), ("demo-stdio", "demo")):
                token = clients[name].access_token()
                claims = await stack.claims(token)
                assert claims["aud"] in (stack.url(name), [stack.url(name)])
                response = await http.post(
                    stack.url(other),
                    json=INIT,
                    headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
                )
                assert response.status_code == 401
                [challenge] = parse_challenges(response.headers["www-authenticate"])
                assert challenge.params["error"] == "invalid_token"
                assert challenge.params["resource_metadata"] == metadata_url_of(stack, other)
                accepted = await http.post(
                    stack.url(name),
                    json=INIT,
                    headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
                )
                assert accepted.status_code == 200, accepted.text
