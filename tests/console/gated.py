"""The console with a gateway: the authorization server (with its console), a real gateway in
front of the demo MCP server (:mod:`bastion.demo`, streamable HTTP), each on a loopback port,
on SQLite and PostgreSQL. The gateway follows revocations in the database, as
``bastion gateway`` does.

The upstream "notes" (``<gateway>/mcp/notes``) needs ``mcp:tools`` for every request, and
``add_note`` also needs ``notes:write`` and membership of group ``editors``.

Also: what the pages' tests look at behind the pages (rows of the database, audit records) and
how a person obtains tokens (a public client, the authorization code flow over HTTP).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bastion.authserver.app import create_app
from bastion.config import ConsoleSettings, ResourceSettings, Settings
from bastion.demo.server import demo_app
from bastion.gateway import create_gateway_app
from bastion.store.schema import auth_audit
from tests.console.conftest import ADMIN_GROUP, Clock, Console
from tests.gateway.test_gateway import ACCEPT
from tests.ops.test_metrics_flow import INITIALIZE
from tests.support.flow import add_user, authorize, exchange, register
from tests.support.live import free_port, serve

NOTES_POLICY = {
    "default": ["mcp:tools"],
    "tools": {"add_note": ["notes:write"]},
    "tool_groups": {"add_note": ["editors"]},
}


@dataclass
class Gated:
    """The console of an AS with a gateway; ``notes`` is the upstream's resource URI."""

    console: Console
    gateway: str

    @property
    def notes(self) -> str:
        """The resource (and URL) of the upstream "notes" at the gateway."""
        return f"{self.gateway}/mcp/notes"

    async def call(self, token: str) -> httpx.Response:
        """An MCP initialize through the gateway with ``token``."""
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            return await http.post(
                self.notes,
                json=INITIALIZE,
                headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
            )


@pytest.fixture
async def gated(make_settings: Callable[..., Settings]) -> AsyncIterator[Gated]:
    """The AS (alice, carol administrators; bob in sales; dana in editors) and its gateway."""
    port, gateway_port = free_port(), free_port()
    issuer, gateway = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{gateway_port}"
    async with serve(demo_app()) as upstream:
        settings: Settings = make_settings(
            issuer=issuer,
            resources=[
                ResourceSettings(uri=f"{issuer}/mcp/ledger", name="ledger", scopes=["mcp:tools"])
            ],
            console=ConsoleSettings(admin_groups=[ADMIN_GROUP]),
            gateway={
                "enabled": True,
                "public_url": gateway,
                "upstreams": [
                    {
                        "name": "notes",
                        "path": "/mcp/notes",
                        "url": f"{upstream}/mcp",
                        "scopes": ["mcp:tools", "notes:write"],
                        "policy": NOTES_POLICY,
                    }
                ],
            },
        )
        await add_user(settings, "alice", name="Alice Admin", is_admin=True)
        await add_user(settings, "carol", name="Carol Ops", groups=[ADMIN_GROUP])
        await add_user(settings, "bob", name="Bob Builder", groups=["sales"])
        await add_user(settings, "dana", name="Dana Editor", groups=["editors"])
        clock = Clock()
        async with (
            serve(create_app(settings, clock=clock), port=port),
            serve(create_gateway_app(settings), port=gateway_port),
        ):
            running = Console(issuer, settings, clock)
            try:
                yield Gated(running, gateway)
            finally:
                for http in running.clients:
                    await http.aclose()


async def person_tokens(
    console: Console, username: str, resource: str, scope: str = "mcp:tools"
) -> tuple[str, dict[str, Any]]:
    """``username`` authorizes a new public client for ``resource``: its id and the tokens."""
    async with httpx.AsyncClient(base_url=console.issuer, trust_env=False) as http:
        client_id = str((await register(http))["client_id"])
        done = await authorize(http, client_id, username=username, resource=resource, scope=scope)
        answer = await exchange(http, client_id, done)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return client_id, tokens


async def refresh(console: Console, client_id: str, refresh_token: str) -> httpx.Response:
    """The refresh grant at ``/token`` (a public client)."""
    async with httpx.AsyncClient(base_url=console.issuer, trust_env=False) as http:
        return await http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
            },
        )


async def rows(console: Console, query: sa.Select[Any]) -> list[sa.Row[Any]]:
    """The rows ``query`` selects in the server's database."""
    db = console.database()
    try:
        async with db.connect() as conn:
            return list(await conn.execute(query))
    finally:
        await db.dispose()


async def records(console: Console, kind: str) -> list[sa.Row[Any]]:
    """The audit records of type ``kind``, oldest first."""
    return await rows(
        console, sa.select(auth_audit).where(auth_audit.c.type == kind).order_by(auth_audit.c.id)
    )


async def console_records(console: Console) -> list[sa.Row[Any]]:
    """Every record of a change made in the console."""
    return await rows(console, sa.select(auth_audit).where(auth_audit.c.actor.like("console:%")))


def assert_by_console(found: list[sa.Row[Any]], admin: str = "alice") -> None:
    """Each record names the administrator and the request that made it."""
    assert found
    for record in found:
        assert record.actor == f"console:{admin}"
        assert record.request_id


__all__ = [
    "NOTES_POLICY",
    "Gated",
    "assert_by_console",
    "console_records",
    "gated",
    "person_tokens",
    "records",
    "refresh",
    "rows",
]
