"""Token exchange end to end (RFC 8693, X08; issue 18): an MCP server behind bastion's
resource-server middleware calls a second protected resource as the person who called it.

Real pieces on loopback, on SQLite and PostgreSQL: bastion's AS under uvicorn; the MCP server
``notes`` (the official ``mcp`` SDK's ``MCPServer``) behind ``ResourceServerMiddleware``,
registered as the confidential client ``notes-mcp``; the second resource ``files``, a Starlette
app behind the middleware whose verifier follows the AS's revocation document
(``HttpRevocationFeed``). alice signs in (authorization code with PKCE) and calls the tool
``read_files`` with the SDK's client; the tool exchanges her token for one for ``files``
(§2.1) and calls it; ``files`` sees alice, the scope of the rule, and ``act`` naming
``notes-mcp`` (§4.1). Revoking alice's grant then ends the exchanged token at ``files``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from mcp.server.mcpserver import Context, MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings, TokenExchangeRule
from bastion.oauth.token_request import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE
from bastion.resource import (
    HttpRevocationFeed,
    JwtVerifier,
    ResourceServerMiddleware,
    RevocationList,
)
from bastion.resource.verifier import REVOKED
from tests.authserver._tokens import Confidential, basic, confidential_client
from tests.resource.test_mcp_sdk_adapter import sdk_client
from tests.support.flow import add_user, authorize, exchange, register
from tests.support.jwt import claims_of
from tests.support.live import free_port, serve

LIMIT = 5.0


def files_app(issuer: str, resource: str, feed: HttpRevocationFeed) -> ASGIApp:
    """The second resource: GET /files says who called and on whose behalf, behind the
    middleware; its verifier refuses what the feed reports revoked."""
    verifier = JwtVerifier(
        issuer=issuer, audience=resource, jwks_uri=f"{issuer}/jwks", revocations=feed.revocations
    )

    async def files(request: Request) -> Response:
        principal = request.state.principal
        return JSONResponse(
            {
                "sub": principal.subject,
                "client_id": principal.client_id,
                "scopes": sorted(principal.scopes),
                "act": principal.claims.get("act"),
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await feed.start()
        try:
            yield
        finally:
            await feed.aclose()
            await verifier.aclose()

    inner = Starlette(routes=[Route("/files", files)], lifespan=lifespan)
    return ResourceServerMiddleware(
        inner,
        resource=resource,
        verifier=verifier,
        authorization_servers=[issuer],
        scopes_supported=["files:read"],
    )


def notes_server(
    issuer: str, resource: str, files: str, me: Confidential, exchanged: list[str]
) -> tuple[ASGIApp, JwtVerifier]:
    """The MCP server: its tool exchanges the caller's token for one for ``files`` (remembered
    in ``exchanged`` for the test) and returns what ``files`` answered."""
    server = MCPServer("notes")

    @server.tool()
    async def read_files(ctx: Context) -> str:
        """Read the caller's files through the files service."""
        request = ctx.request_context.request
        assert isinstance(request, Request)
        token = request.headers["authorization"].removeprefix("Bearer ")
        async with httpx.AsyncClient(trust_env=False) as http:
            answer = await http.post(
                f"{issuer}/token",
                data={
                    "grant_type": TOKEN_EXCHANGE,
                    "subject_token": token,
                    "subject_token_type": ACCESS_TOKEN_TYPE,
                    "resource": files,
                    "scope": "files:read",
                },
                headers={"Authorization": basic(me.client_id, me.secret)},
            )
            answer.raise_for_status()
            issued = answer.json()
            assert issued["issued_token_type"] == ACCESS_TOKEN_TYPE
            exchanged.append(issued["access_token"])
            seen = await http.get(
                files, headers={"Authorization": f"Bearer {issued['access_token']}"}
            )
        seen.raise_for_status()
        return seen.text

    verifier = JwtVerifier(issuer=issuer, audience=resource, jwks_uri=f"{issuer}/jwks")
    app = ResourceServerMiddleware(
        server.streamable_http_app(),
        resource=resource,
        verifier=verifier,
        authorization_servers=[issuer],
        scopes_supported=["mcp:tools", "files:read"],
    )
    return app, verifier


async def refused_within_limit(url: str, token: str) -> httpx.Response:
    """Poll ``url`` with ``token`` every 20 ms, at most LIMIT seconds, until it is refused."""
    started = time.monotonic()
    async with httpx.AsyncClient(trust_env=False) as http:
        while True:
            response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                return response
            assert time.monotonic() - started < LIMIT, "the revoked token is still accepted"
            await asyncio.sleep(0.02)


async def test_x08_mcp_server_exchanges_and_calls_a_second_resource_with_act(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 8693 §2.1, §2.2.1, §4.1 end to end; revoking the person's grant (RFC 7009 on the
    refresh token) ends the exchanged token at the second resource's middleware."""
    as_port, notes_port, files_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    notes = f"http://127.0.0.1:{notes_port}/mcp"
    files = f"http://127.0.0.1:{files_port}/files"
    settings = make_settings(
        issuer=issuer,
        resources=[
            ResourceSettings(uri=notes, name="notes", scopes=["mcp:tools", "files:read"]),
            ResourceSettings(uri=files, name="files", scopes=["files:read", "files:write"]),
        ],
        token_exchange=[
            TokenExchangeRule(
                client="notes-mcp", source="notes", target="files", scopes=["files:read"]
            )
        ],
    )
    await add_user(settings, "alice")
    me = await confidential_client(settings, client_id="notes-mcp")
    exchanged: list[str] = []
    feed = HttpRevocationFeed(f"{issuer}/revocations", RevocationList())
    notes_app, notes_verifier = notes_server(issuer, notes, files, me, exchanged)
    async with (
        serve(create_app(settings), port=as_port),
        serve(files_app(issuer, files, feed), port=files_port),
        serve(notes_app, port=notes_port),
        httpx.AsyncClient(base_url=issuer, trust_env=False) as browser,
    ):
        app = await register(browser)
        done = await authorize(
            browser, app["client_id"], resource=notes, scope="mcp:tools files:read"
        )
        person: dict[str, Any] = (await exchange(browser, app["client_id"], done)).json()
        async with sdk_client(notes, person["access_token"]) as client:
            result = await client.call_tool("read_files", {})
        assert result.is_error is False, result
        seen = json.loads(result.content[0].text)  # type: ignore[union-attr]
        alice = claims_of(person["access_token"])["sub"]
        assert seen == {
            "sub": alice,
            "client_id": "notes-mcp",
            "scopes": ["files:read"],
            "act": {"sub": "notes-mcp"},
        }
        [token] = exchanged
        revoked = await browser.post(
            "/revoke", data={"token": person["refresh_token"], "client_id": app["client_id"]}
        )
        assert revoked.status_code == 200
        refused = await refused_within_limit(files, token)
        assert refused.status_code == 401
        assert refused.json() == {"error": "invalid_token", "error_description": REVOKED}
    await notes_verifier.aclose()
