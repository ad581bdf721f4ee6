"""The TypeScript MCP SDK's client (npm ``@modelcontextprotocol/sdk``) at an ``auth = "oauth"``
upstream: it reads the gateway's -32042 as its own ``UrlElicitationRequiredError`` (MCP
2025-11-25 client/elicitation, X09), and once the person is connected its call gets the
person's upstream identity (X11). Runs ``tests/vault/ts_client.mjs`` under the Node 22 of
``scripts/setup-node.sh`` (skips without it, like the node-oidc-provider tests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Settings
from tests.support.oidc_provider import node_binary
from tests.vault.gateway_stack import UPSTREAM, VaultStack, vault_stack

SCRIPT = Path(__file__).with_name("ts_client.mjs")


@pytest.fixture
async def stack(make_settings: Callable[..., Settings]) -> AsyncIterator[VaultStack]:
    async with vault_stack(make_settings) as running:
        yield running


async def ts_whoami(stack: VaultStack, token: str) -> dict[str, Any]:
    """What the TypeScript client made of connecting and calling whoami."""
    process = await asyncio.create_subprocess_exec(
        node_binary(),
        str(SCRIPT),
        stack.url,
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    found: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return found


async def test_x09_x11_the_typescript_sdk_client_elicits_then_gets_its_own_identity(
    stack: VaultStack,
) -> None:
    """Without a connection: the TS client's connect fails with UrlElicitationRequiredError
    (-32042) naming bastion's connect URL, and nothing reaches the upstream. With alice's
    connection: whoami answers her upstream identity."""
    alice_id, alice = await stack.person("alice")
    refused = await ts_whoami(stack, alice)
    assert refused["ok"] is False, refused
    assert refused["code"] == -32042, refused
    [elicitation] = refused["elicitations"]
    assert elicitation["mode"] == "url"
    assert elicitation["url"].startswith(f"{stack.issuer}/connect/{UPSTREAM}?elicitation=")
    assert stack.upstream.authorizations == []
    await stack.seed_connection(alice_id, await stack.upstream_tokens("alice-upstream"))
    assert await ts_whoami(stack, alice) == {"ok": True, "text": "alice-upstream"}
