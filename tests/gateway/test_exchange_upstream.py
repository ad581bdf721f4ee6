"""Upstreams with ``auth = "exchange"`` (RFC 8693 behind the gateway; X08, R05; issue 18).

Real pieces on loopback, on SQLite and PostgreSQL: bastion's AS and gateway under uvicorn; the
MCP server ``notes-server`` (the official ``mcp`` SDK's ``MCPServer``) behind bastion's
``ResourceServerMiddleware`` for its own resource URI, recording every ``Authorization`` that
reaches it, registered as the confidential client ``notes-mcp``; the second resource ``files``
of :mod:`tests.e2e.test_token_exchange_e2e`. The gateway mounts ``notes-server`` at
``/mcp/notes`` and, as the confidential client ``gateway``, exchanges each caller's token
(audience: the gateway's resource) for one for ``notes-server``; the tool ``read_files``
exchanges that one again for ``files``. Both the gateway's upstream verifier and ``files``
follow the AS's revocation document.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from mcp.server.mcpserver import Context, MCPServer
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings, TokenExchangeRule, UpstreamSettings
from bastion.gateway import create_gateway_app
from bastion.gateway.http_proxy import HttpProxy
from bastion.gateway.upstream_exchange import UpstreamExchange
from bastion.gateway.upstream_http import UpstreamPool
from bastion.oauth.token_request import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE
from bastion.resource import (
    HttpRevocationFeed,
    JwtVerifier,
    ResourceServerMiddleware,
    RevocationList,
)
from bastion.resource.verifier import REVOKED
from tests.authserver._tokens import Confidential, basic, confidential_client
from tests.e2e.test_token_exchange_e2e import files_app, refused_within_limit
from tests.gateway.conftest import ALICE, with_principal
from tests.gateway.upstream import RecordingUpstream
from tests.resource.test_mcp_sdk_adapter import sdk_client
from tests.support.clients import machine_client
from tests.support.flow import add_user, authorize, exchange, register
from tests.support.jwt import claims_of
from tests.support.live import free_port, serve

GATEWAY_CLIENT = "gateway"
NOTES_CLIENT = "notes-mcp"
SCOPE = "mcp:tools files:read"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
ACCEPT = "application/json, text/event-stream"


@dataclass
class Stack:
    """The running pieces and what reached the upstream."""

    issuer: str
    gateway: str
    notes: str
    files: str
    settings: Settings
    seen: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The upstream at the gateway."""
        return f"{self.gateway}/mcp/notes"

    async def person(self) -> dict[str, Any]:
        """alice's tokens for the upstream at the gateway (authorization code with PKCE)."""
        async with httpx.AsyncClient(base_url=self.issuer, trust_env=False) as browser:
            app = await register(browser)
            done = await authorize(browser, app["client_id"], resource=self.url, scope=SCOPE)
            response = await exchange(browser, app["client_id"], done)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        tokens["client_id"] = app["client_id"]
        return tokens

    async def post(self, token: str) -> httpx.Response:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            return await http.post(
                self.url,
                json=INIT,
                headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
            )


def notes_server(
    issuer: str, resource: str, files: str, me: Confidential, feed: HttpRevocationFeed
) -> tuple[ASGIApp, JwtVerifier]:
    """The MCP server behind the gateway: ``whoami`` answers the claims of the token it got,
    ``read_files`` exchanges that token for one for ``files`` and answers what files saw."""
    server = MCPServer("notes")

    def token_of(ctx: Context) -> str:
        request = ctx.request_context.request
        assert isinstance(request, Request)
        return request.headers["authorization"].removeprefix("Bearer ")

    @server.tool()
    async def whoami(ctx: Context) -> str:
        """The claims of the caller's token."""
        claims = claims_of(token_of(ctx))
        return json.dumps({k: claims.get(k) for k in ("sub", "aud", "client_id", "act")})

    @server.tool()
    async def read_files(ctx: Context) -> str:
        """Read the caller's files through the files service."""
        async with httpx.AsyncClient(trust_env=False) as http:
            answer = await http.post(
                f"{issuer}/token",
                data={
                    "grant_type": TOKEN_EXCHANGE,
                    "subject_token": token_of(ctx),
                    "subject_token_type": ACCESS_TOKEN_TYPE,
                    "resource": files,
                    "scope": "files:read",
                },
                headers={"Authorization": basic(me.client_id, me.secret)},
            )
            answer.raise_for_status()
            token = answer.json()["access_token"]
            seen = await http.get(files, headers={"Authorization": f"Bearer {token}"})
        seen.raise_for_status()
        return json.dumps({"token": token, "seen": seen.json()})

    verifier = JwtVerifier(
        issuer=issuer, audience=resource, jwks_uri=f"{issuer}/jwks", revocations=feed.revocations
    )
    app = ResourceServerMiddleware(
        server.streamable_http_app(),
        resource=resource,
        verifier=verifier,
        authorization_servers=[issuer],
        scopes_supported=["mcp:tools", "files:read"],
    )
    return app, verifier


def recording(app: ASGIApp, seen: list[str | None]) -> ASGIApp:
    """``app``, recording the Authorization of every HTTP request that reaches it."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = dict(scope["headers"]).get(b"authorization")
            seen.append(found.decode() if found else None)
        await app(scope, receive, send)

    return wrapped


@asynccontextmanager
async def running(
    make_settings: Callable[..., Settings],
    *,
    rules: str = "both",
    wrong_secret: bool = False,
    scopes: list[str] | None = None,
) -> AsyncIterator[Stack]:
    """The stack of the module docstring; ``rules``: which ``[[token_exchange]]`` rules there
    are (``both``, ``notes`` only, ``none``, or ``narrow``: the gateway's rule allows only
    mcp:tools); ``wrong_secret``: the gateway is configured with a secret that is not its
    client's; ``scopes``: the upstream's ``exchange.scopes``."""
    as_port, gw_port, notes_port, files_port = (free_port() for _ in range(4))
    issuer = f"http://127.0.0.1:{as_port}"
    gateway = f"http://127.0.0.1:{gw_port}"
    notes = f"http://127.0.0.1:{notes_port}/mcp"
    files = f"http://127.0.0.1:{files_port}/files"
    secret = secrets.token_urlsafe(32)

    def build(registered: Confidential | None) -> Settings:
        gateway_rule = TokenExchangeRule(
            client=GATEWAY_CLIENT, source="notes", target="notes-server", scopes=SCOPE.split()
        )
        notes_rule = TokenExchangeRule(
            client=NOTES_CLIENT, source="notes-server", target="files", scopes=["files:read"]
        )
        narrow_rule = TokenExchangeRule(
            client=GATEWAY_CLIENT, source="notes", target="notes-server", scopes=["mcp:tools"]
        )
        exchange_rules = {
            "both": [gateway_rule, notes_rule],
            "notes": [notes_rule],
            "none": [],
            "narrow": [narrow_rule, notes_rule],
        }
        upstream = {
            "name": "notes",
            "path": "/mcp/notes",
            "url": notes,
            "scopes": SCOPE.split(),
            "auth": "exchange",
            "exchange": {
                "resource": notes,
                "client_id": GATEWAY_CLIENT,
                "client_secret": registered.secret if registered else secret,
                **({"scopes": scopes} if scopes is not None else {}),
            },
        }
        return make_settings(
            issuer=issuer,
            resources=[
                ResourceSettings(uri=notes, name="notes-server", scopes=SCOPE.split()),
                ResourceSettings(uri=files, name="files", scopes=["files:read", "files:write"]),
            ],
            token_exchange=exchange_rules[rules],
            gateway={"enabled": True, "public_url": gateway, "upstreams": [upstream]},
        )

    first = build(None)
    await add_user(first, "alice")
    gateway_client = await confidential_client(first, client_id=GATEWAY_CLIENT)
    me = await confidential_client(first, client_id=NOTES_CLIENT)
    settings = build(None if wrong_secret else gateway_client)
    stack = Stack(issuer, gateway, notes, files, settings)
    files_feed = HttpRevocationFeed(f"{issuer}/revocations", RevocationList())
    notes_feed = HttpRevocationFeed(f"{issuer}/revocations", RevocationList())
    notes_app, notes_verifier = notes_server(issuer, notes, files, me, notes_feed)
    async with (
        serve(create_app(settings), port=as_port),
        serve(files_app(issuer, files, files_feed), port=files_port),
        serve(recording(notes_app, stack.seen), port=notes_port),
        serve(create_gateway_app(settings), port=gw_port),
    ):
        await notes_feed.start()
        try:
            yield stack
        finally:
            await notes_feed.aclose()
            await notes_verifier.aclose()


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    message: str = body["error"]["message"]
    return message


@pytest.mark.parametrize(
    ("rules", "code"), [("notes", "unauthorized_client"), ("none", "unsupported_grant_type")]
)
async def test_x08_without_a_token_exchange_rule_the_gateway_answers_403_naming_the_error(
    make_settings: Callable[..., Settings], rules: str, code: str
) -> None:
    """RFC 8693 §2.2.2: no rule names the gateway's client, so the AS answers
    unauthorized_client (with no rule at all it offers no exchange: unsupported_grant_type);
    the gateway answers 403 naming the upstream and that code, and nothing reaches the
    upstream."""
    async with running(make_settings, rules=rules) as stack:
        person = await stack.person()
        response = await stack.post(person["access_token"])
        assert response.status_code == 403
        message = error_of(response)
        assert "'notes'" in message
        assert f"({code}:" in message
        assert "[[token_exchange]]" in message
        assert stack.seen == []


async def test_x08_asking_beyond_the_rule_s_scopes_is_403_invalid_scope_and_nothing_goes_upstream(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 8693 §2.2.2 / RFC 6749 §5.2 invalid_scope: the upstream's exchange asks for
    files:read, the rule allows only mcp:tools; 403 naming the code, nothing upstream."""
    async with running(make_settings, rules="narrow", scopes=["files:read"]) as stack:
        person = await stack.person()
        response = await stack.post(person["access_token"])
        assert response.status_code == 403
        message = error_of(response)
        assert "'notes'" in message and "(invalid_scope:" in message
        assert stack.seen == []


async def test_x08_the_rule_s_narrower_scopes_are_what_the_upstream_gets(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 8693 §2.1 scope narrowed by policy: without exchange.scopes the gateway asks for
    none, and the new token has only what the rule allows (mcp:tools), not the caller's
    files:read."""
    async with running(make_settings, rules="narrow") as stack:
        person = await stack.person()
        async with sdk_client(stack.url, person["access_token"]) as client:
            result = await client.call_tool("whoami", {})
        assert result.is_error is False, result
        [token] = [seen for seen in stack.seen if seen is not None][:1]
        assert claims_of(token.removeprefix("Bearer "))["scope"] == "mcp:tools"


async def test_x08_the_gateway_s_own_credentials_refused_is_502_and_nothing_goes_upstream(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 6749 §5.2 invalid_client at the exchange: the caller's token is fine, the gateway's
    configuration is not, so 502 (not 403: no rule would help) naming the upstream and what to
    check; nothing reaches the upstream."""
    async with running(make_settings, wrong_secret=True) as stack:
        person = await stack.person()
        response = await stack.post(person["access_token"])
        assert response.status_code == 502
        message = error_of(response)
        assert "'notes'" in message
        assert person["access_token"] not in response.text
        assert stack.seen == []


async def test_x08_a_machine_token_is_refused_with_403_and_never_reaches_the_upstream(
    make_settings: Callable[..., Settings],
) -> None:
    """A client_credentials token speaks for no person: the exchange acts for one."""
    async with running(make_settings) as stack:
        made = await machine_client(stack.settings, name="robot", scope=SCOPE)
        async with httpx.AsyncClient(trust_env=False) as http:
            issued = await http.post(
                f"{stack.issuer}/token",
                data={"grant_type": "client_credentials", "resource": stack.url, "scope": SCOPE},
                auth=made.auth,
            )
        assert issued.status_code == 200, issued.text
        response = await stack.post(issued.json()["access_token"])
        assert response.status_code == 403
        assert "client_credentials" in error_of(response)
        assert stack.seen == []


async def test_r05_x08_the_upstream_gets_an_exchanged_token_never_the_callers(
    make_settings: Callable[..., Settings],
) -> None:
    """R05 (no token passthrough) and RFC 8693 §4.1: what reaches the upstream is another
    token, for the upstream's own resource, for alice, with act.sub the gateway's client;
    the official SDK client works through the gateway, and one exchange serves the session."""
    async with running(make_settings) as stack:
        person = await stack.person()
        mine = person["access_token"]
        async with sdk_client(stack.url, mine) as client:
            result = await client.call_tool("whoami", {})
            again = await client.call_tool("whoami", {})
        assert result.is_error is False, result
        seen = json.loads(result.content[0].text)  # type: ignore[union-attr]
        alice = claims_of(mine)["sub"]
        assert seen == {
            "sub": alice,
            "aud": stack.notes,
            "client_id": GATEWAY_CLIENT,
            "act": {"sub": GATEWAY_CLIENT},
        }
        assert again.content == result.content
        assert stack.seen, "nothing reached the upstream"
        assert f"Bearer {mine}" not in stack.seen
        assert len(set(stack.seen)) == 1  # one exchanged token, reused from the cache
        [authorization] = set(stack.seen)
        assert authorization is not None
        assert claims_of(authorization.removeprefix("Bearer "))["aud"] == stack.notes


async def test_x08_the_upstream_exchanges_again_and_revocation_ends_both(
    make_settings: Callable[..., Settings],
) -> None:
    """Issue 18: an MCP server behind the gateway exchanges its token and calls a second
    protected resource; act nests (RFC 8693 §4.1). Revoking alice's grant (RFC 7009 on the
    refresh token) ends the gateway's access and the token at the second resource."""
    async with running(make_settings) as stack:
        person = await stack.person()
        async with sdk_client(stack.url, person["access_token"]) as client:
            result = await client.call_tool("read_files", {})
        assert result.is_error is False, result
        answer = json.loads(result.content[0].text)  # type: ignore[union-attr]
        alice = claims_of(person["access_token"])["sub"]
        assert answer["seen"] == {
            "sub": alice,
            "client_id": NOTES_CLIENT,
            "scopes": ["files:read"],
            "act": {"sub": NOTES_CLIENT, "act": {"sub": GATEWAY_CLIENT}},
        }
        [upstream_token] = {a for a in stack.seen if a is not None}
        async with httpx.AsyncClient(base_url=stack.issuer, trust_env=False) as browser:
            revoked = await browser.post(
                "/revoke",
                data={"token": person["refresh_token"], "client_id": person["client_id"]},
            )
        assert revoked.status_code == 200
        refused = await refused_within_limit(stack.files, answer["token"])
        assert refused.status_code == 401
        assert refused.json() == {"error": "invalid_token", "error_description": REVOKED}
        refused = await refused_within_limit(stack.notes, upstream_token.removeprefix("Bearer "))
        assert refused.status_code == 401
        at_gateway = await refused_within_limit(stack.url, person["access_token"])
        assert at_gateway.status_code == 401


async def test_x08_the_authorization_server_unreachable_is_502_and_nothing_goes_upstream(
    upstream: tuple[RecordingUpstream, str],
) -> None:
    """The token endpoint does not answer (nothing listens there): 502 naming the upstream."""
    recorder, url = upstream
    settings = UpstreamSettings(
        name="notes",
        path="/mcp",
        url=url,
        resource="http://127.0.0.1:1/mcp",
        auth="exchange",
        exchange={"resource": url, "client_id": GATEWAY_CLIENT, "client_secret": "s"},
    )
    pool = UpstreamPool()
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        tokens = UpstreamExchange(
            settings, token_endpoint=f"http://127.0.0.1:{free_port()}/token", http=http
        )
        proxy = HttpProxy(settings, http=pool, exchange=tokens)
        try:
            async with serve(with_principal(proxy, ALICE)) as base:
                response = await http.post(
                    f"{base}/mcp",
                    json=INIT,
                    headers={"Authorization": "Bearer caller-token", "Accept": ACCEPT},
                )
        finally:
            await pool.aclose()
    assert response.status_code == 502
    assert response.json()["id"] == 1
    assert "'notes'" in error_of(response)
    assert "cannot reach the authorization server" in error_of(response)
    assert recorder.requests == []
