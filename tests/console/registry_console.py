"""The console with the registry on the same listener (``bastion.serve.create_combined_app``, as
``bastion serve`` runs it when the registry is on): the console's people plus dave (team-a),
who publishes, and erin (team-a) and frank (team-b), who read through the registry API with
tokens from the real browser flow. Publications wait for an administrator's approval."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bastion.config import ConsoleSettings, ResourceSettings, Settings
from bastion.serve import create_combined_app
from bastion.store import registry as registry_rows
from bastion.store.registry import Entry
from bastion.store.schema import auth_audit, registry_audit
from tests.console.conftest import ADMIN_GROUP, Clock, Console
from tests.registry.harness import registry_settings, server_json
from tests.registry.test_end_to_end import sign_in
from tests.support.flow import add_user, register
from tests.support.live import free_port, serve

ALPHA = "com.acme.team-a/alpha"
BETA = "com.acme.team-a/beta"


class RegistryConsole(Console):
    """A console whose server also serves the registry at ``<issuer>/registry``."""

    @property
    def registry(self) -> str:
        """The registry URL."""
        return f"{self.issuer}/registry"

    async def token(self, username: str) -> str:
        """An access token of ``username`` for the registry (read and write)."""
        async with httpx.AsyncClient(base_url=self.issuer) as http:
            client_id = (await register(http))["client_id"]
        return await sign_in(self.issuer, self.registry, client_id, username)

    async def publish(self, username: str, *documents: dict[str, Any]) -> None:
        """Publish ``documents`` through the registry API as ``username``."""
        token = await self.token(username)
        async with httpx.AsyncClient(base_url=self.registry) as http:
            for document in documents:
                answer = await http.post(
                    "/v0.1/publish", json=document, headers={"Authorization": f"Bearer {token}"}
                )
                assert answer.status_code == 200, answer.text

    async def seen_by(self, username: str) -> list[str]:
        """The servers ``username`` sees through the registry API."""
        token = await self.token(username)
        async with httpx.AsyncClient(base_url=self.registry) as http:
            answer = await http.get("/v0.1/servers", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        return [s["server"]["name"] for s in answer.json()["servers"]]

    async def entry(self, name: str, version: str = "1.0.0") -> Entry:
        """The stored version, as the database has it."""
        db = self.database()
        try:
            async with db.connect() as conn:
                found = await registry_rows.get_entry(conn, name, version)
        finally:
            await db.dispose()
        assert found is not None
        return found

    async def records(self, prefix: str = "admin.registry_") -> list[sa.Row[Any]]:
        """The authorization server's records of registry changes, oldest first."""
        return await self._rows(
            sa.select(auth_audit)
            .where(auth_audit.c.type.startswith(prefix))
            .order_by(auth_audit.c.id)
        )

    async def history(self) -> list[sa.Row[Any]]:
        """The registry's own records of changes made outside its API (the console's)."""
        return await self._rows(
            sa.select(registry_audit)
            .where(registry_audit.c.subject.startswith("console:"))
            .order_by(registry_audit.c.id)
        )

    async def _rows(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        db = self.database()
        try:
            async with db.connect() as conn:
                return list(await conn.execute(query))
        finally:
            await db.dispose()


@pytest.fixture
async def registry_console(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[RegistryConsole]:
    """The console and the registry of one live server; dave's alpha and beta (team-a) wait
    for approval."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings: Settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=f"{issuer}/mcp/notes", name="notes", scopes=["mcp:tools"])],
        console=ConsoleSettings(admin_groups=[ADMIN_GROUP]),
        registry=registry_settings(),
    )
    await add_user(settings, "alice", name="Alice Admin", is_admin=True)
    await add_user(settings, "carol", name="Carol Ops", groups=[ADMIN_GROUP])
    await add_user(settings, "bob", name="Bob Builder", groups=["sales"])
    await add_user(settings, "dave", name="Dave Publisher", groups=["team-a"])
    await add_user(settings, "erin", groups=["team-a"])
    await add_user(settings, "frank", groups=["team-b"])
    clock = Clock()
    async with serve(create_combined_app(settings, clock=clock), port=port):
        running = RegistryConsole(issuer, settings, clock)
        await running.publish(
            "dave",
            server_json(ALPHA, groups=["team-a"], description="Alpha forecasts"),
            server_json(BETA, groups=["team-a"], description="Beta maps"),
        )
        try:
            yield running
        finally:
            for http in running.clients:
                await http.aclose()


__all__ = ["ALPHA", "BETA", "RegistryConsole", "registry_console"]
