"""bastion verification inside servers built with the official ``mcp`` SDK (2.x): the
``TokenVerifier`` adapter for ``MCPServer(token_verifier=...)``, and the middleware wrapped
around an SDK app. MCP authorization "Token Handling" (R04), "Error Handling" (R06, R07).

Real pieces only: a bastion AS and the SDK server under uvicorn, the SDK's own client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from bastion.oauth.www_authenticate import parse_challenges
from bastion.resource import JwtVerifier, ResourceServerMiddleware, ScopePolicy
from bastion.resource.mcp_sdk import McpTokenVerifier
from bastion.tokens import access_token
from tests.resource.conftest import LiveAS, StartAS, get_token, service_client, signing_key_of
from tests.support.dpop import new_key, thumbprint
from tests.support.live import free_port, serve

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def demo_server(**kwargs: object) -> MCPServer:
    """An SDK server with two tools; `wipe` is the one a policy can guard with another scope."""
    server = MCPServer("demo", **kwargs)  # type: ignore[arg-type]

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def wipe() -> str:
        """Pretend to delete everything."""
        return "wiped"

    return server


@asynccontextmanager
async def sdk_client(url: str, token: str) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP, sending the bearer token on every request."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def token_for(live: LiveAS, resource: str, scope: str = "mcp:tools") -> str:
    client = await service_client(live.settings)
    body = await get_token(live.issuer, client, resource=resource, scope=scope)
    token: str = body["access_token"]
    return token


async def test_r04_sdk_server_with_the_adapter_serves_a_bastion_token(start_as: StartAS) -> None:
    """MCPServer(token_verifier=McpTokenVerifier(JwtVerifier)): the SDK client lists and calls
    tools with a token for this server; no token gets 401."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    async with start_as(extra_resources=[resource]) as live:
        verifier = JwtVerifier(issuer=live.issuer, audience=resource, jwks_uri=live.jwks_uri)
        server = demo_server(
            token_verifier=McpTokenVerifier(verifier, resource=resource),
            auth=AuthSettings(
                issuer_url=live.issuer,
                resource_server_url=resource,
                validate_token_resource=True,
                required_scopes=["mcp:tools"],
            ),
        )
        async with serve(server.streamable_http_app(), port=port) as base:
            async with httpx.AsyncClient() as http:
                refused = await http.post(f"{base}/mcp", json=INITIALIZE, headers=ACCEPT)
            assert refused.status_code == 401
            [challenge] = parse_challenges(refused.headers["www-authenticate"])
            assert challenge.get("error") == "invalid_token"
            token = await token_for(live, resource)
            async with sdk_client(f"{base}/mcp", token) as client:
                tools = await client.list_tools()
                assert {t.name for t in tools.tools} == {"add", "wipe"}
                result = await client.call_tool("add", {"a": 2, "b": 3})
                assert result.is_error is False
        await verifier.aclose()


async def test_r04_adapter_refuses_a_token_for_another_server(start_as: StartAS) -> None:
    """A token the same AS issued for another resource is None to the SDK (it answers 401)."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    async with (
        start_as(extra_resources=[resource]) as live,
        JwtVerifier(issuer=live.issuer, audience=resource, jwks_uri=live.jwks_uri) as verifier,
    ):
        adapter = McpTokenVerifier(verifier, resource=resource)
        good = await adapter.verify_token(await token_for(live, resource))
        assert good is not None
        assert good.resource == resource
        assert good.scopes == ["mcp:tools"]
        assert good.subject == good.client_id
        assert good.claims is not None
        assert good.claims["iss"] == live.issuer
        assert await adapter.verify_token(await token_for(live, live.other_resource)) is None
        assert await adapter.verify_token("garbage") is None


async def test_r07_middleware_around_an_sdk_app_enforces_tool_scopes(start_as: StartAS) -> None:
    """ResourceServerMiddleware wrapped around an unauthenticated SDK app: tools/list works with
    mcp:tools; tools/call of the guarded tool gets 403 naming both scopes; the SDK's lifespan and
    streaming pass through the middleware."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    async with start_as(extra_resources=[resource]) as live:
        verifier = JwtVerifier(issuer=live.issuer, audience=resource, jwks_uri=live.jwks_uri)
        app = ResourceServerMiddleware(
            demo_server().streamable_http_app(),
            resource=resource,
            verifier=verifier,
            authorization_servers=[live.issuer],
            scopes_supported=["mcp:tools"],
            policy=ScopePolicy(default=["mcp:tools"], tools={"wipe": ["files:write"]}),
        )
        async with serve(app, port=port) as base:
            token = await token_for(live, resource)
            async with sdk_client(f"{base}/mcp", token) as client:
                tools = await client.list_tools()
                assert {t.name for t in tools.tools} == {"add", "wipe"}
                assert (await client.call_tool("add", {"a": 1, "b": 1})).is_error is False
            wipe = {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {"name": "wipe", "arguments": {}},
            }
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    f"{base}/mcp",
                    json=wipe,
                    headers={**ACCEPT, "Authorization": f"Bearer {token}"},
                )
                assert response.status_code == 403
                [challenge] = parse_challenges(response.headers["www-authenticate"])
                assert challenge.get("error") == "insufficient_scope"
                assert challenge.get("scope") == "files:write mcp:tools"
                assert challenge.get("resource_metadata") == (
                    f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
                )
        await verifier.aclose()


async def test_rfc9449_7_2_the_adapter_refuses_a_dpop_bound_token(bastion_as: LiveAS) -> None:
    """The SDK's Bearer authentication never sees a DPoP proof, so a DPoP-bound token (cnf.jkt)
    is refused there (RFC 9449 §7.2); an unbound one of the same AS is accepted."""
    key = await signing_key_of(bastion_as.settings)
    now = int(time.time())
    bound, unbound = (
        access_token.issue(
            key,
            issuer=bastion_as.issuer,
            subject="svc",
            audience=bastion_as.resource,
            client_id="svc",
            scope="mcp:tools",
            now=now,
            ttl=300,
            extra=extra,
        ).token
        for extra in ({"cnf": {"jkt": thumbprint(new_key())}}, {})
    )
    verifier = JwtVerifier(
        issuer=bastion_as.issuer, audience=bastion_as.resource, jwks_uri=bastion_as.jwks_uri
    )
    async with verifier:
        adapter = McpTokenVerifier(verifier, resource=bastion_as.resource)
        assert await adapter.verify_token(bound) is None
        accepted = await adapter.verify_token(unbound)
    assert accepted is not None and accepted.subject == "svc"
