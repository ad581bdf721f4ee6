"""bastion's client under the official ``mcp`` SDK: ``connect(url, auth=BastionAuth(...))`` gives
an ``mcp.Client`` whose streamable HTTP requests carry bastion's authorization.

Real pieces only: a bastion AS, an SDK ``MCPServer`` behind bastion's resource-server middleware
(R01-R07: PRM, 401 challenge with scope, per-tool scopes answered with 403), both under uvicorn.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mcp.server.mcpserver import MCPServer

from bastion.authserver.app import create_app
from bastion.client import Authorizer, BastionAuth, ClientSettings, FileStorage
from bastion.client.mcp_sdk import connect
from bastion.config import ResourceSettings, Settings
from bastion.resource import JwtVerifier, ResourceServerMiddleware, ScopePolicy
from tests.client.browser_user import BrowserUser
from tests.support.flow import add_user
from tests.support.live import free_port, serve


def demo_server() -> MCPServer:
    server = MCPServer("demo")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def wipe() -> str:
        """Needs more than the default scope."""
        return "wiped"

    return server


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_c13_c15_the_sdk_client_works_over_bastion_auth(
    make_settings: Callable[..., Settings], mode: str, tmp_path: object
) -> None:
    """The SDK client connects (initialize or server/discover), lists and calls tools; the 401
    leads to one login; the guarded tool's 403 to a step-up for the union of scopes."""
    as_port, rs_port = free_port(), free_port()
    issuer, resource = f"http://127.0.0.1:{as_port}", f"http://127.0.0.1:{rs_port}/mcp"
    settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=resource, name="demo", scopes=["mcp:tools", "mcp:admin"])],
    )
    await add_user(settings)
    verifier = JwtVerifier(issuer=issuer, audience=resource, jwks_uri=f"{issuer}/jwks")
    app = ResourceServerMiddleware(
        demo_server().streamable_http_app(),
        resource=resource,
        verifier=verifier,
        authorization_servers=[issuer],
        scopes_supported=["mcp:tools"],
        policy=ScopePolicy(default=["mcp:tools"], tools={"wipe": ["mcp:tools", "mcp:admin"]}),
    )
    user = BrowserUser(issuer)
    client_settings = ClientSettings(use_keyring=False)
    authorizer = Authorizer(
        client_settings, storage=FileStorage(settings.data_dir / "client.json"), open_url=user
    )
    try:
        async with (
            serve(create_app(settings), port=as_port),
            serve(app, port=rs_port),
            BastionAuth(authorizer=authorizer) as auth,
            connect(resource, auth=auth, mode=mode) as client,
        ):
            tools = await client.list_tools()
            assert {t.name for t in tools.tools} == {"add", "wipe"}
            added = await client.call_tool("add", {"a": 2, "b": 3})
            assert added.is_error is False
            wiped = await client.call_tool("wipe", {})
            assert wiped.is_error is False
    finally:
        await user.aclose()
        await verifier.aclose()
    scopes = [user.params(i)["scope"][0] for i in range(len(user.opened))]
    assert scopes == ["mcp:tools", "mcp:tools mcp:admin"]
