"""Fixtures for the client tests: bastion's AS and a protected resource, both under uvicorn.

``start_stack`` runs a bastion authorization server (SQLite and PostgreSQL, through
``make_settings``) configured with the resource ``http://127.0.0.1:<port>/mcp`` of a
:class:`~tests.client.servers.ResourceServer`, a local user ``alice``, and a
:class:`~tests.client.browser_user.BrowserUser` playing the browser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bastion.authserver.app import create_app
from bastion.client import Authorizer, ClientSettings, FileStorage
from bastion.client.browser import OpenUrl
from bastion.config import ResourceSettings, Settings
from tests.client.browser_user import BrowserUser
from tests.client.servers import ResourceServer
from tests.support.flow import add_user
from tests.support.live import free_port, serve


@dataclass
class Stack:
    """A running AS + resource server pair and a browser user."""

    issuer: str
    settings: Settings
    rs: ResourceServer
    user: BrowserUser
    storage_path: Path

    def client_settings(self, **overrides: Any) -> ClientSettings:
        values: dict[str, Any] = {"use_keyring": False, "storage_path": self.storage_path}
        values.update(overrides)
        return ClientSettings(**values)

    def authorizer(
        self,
        *,
        open_url: OpenUrl | None = None,
        clock: Callable[[], float] | None = None,
        **overrides: Any,
    ) -> Authorizer:
        """An Authorizer with a token file of this test and the browser user (by default)."""
        settings = self.client_settings(**overrides)
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        return Authorizer(
            settings,
            storage=FileStorage(settings.storage_path),
            open_url=open_url or self.user,
            **extra,
        )


StartStack = Callable[..., AbstractAsyncContextManager[Stack]]


@pytest.fixture
def start_stack(make_settings: Callable[..., Settings], tmp_path: Path) -> StartStack:
    """``async with start_stack(required={...}) as stack``: AS, resource server, user."""

    @asynccontextmanager
    async def start(
        *,
        required: Mapping[str, Sequence[str]] | None = None,
        scopes: Sequence[str] = ("mcp:tools", "mcp:admin"),
        scopes_supported: Sequence[str] | None = ("mcp:tools",),
        **as_overrides: Any,
    ) -> AsyncIterator[Stack]:
        as_port, rs_port = free_port(), free_port()
        issuer = f"http://127.0.0.1:{as_port}"
        rs_base = f"http://127.0.0.1:{rs_port}"
        settings = make_settings(
            issuer=issuer,
            resources=[ResourceSettings(uri=f"{rs_base}/mcp", name="demo", scopes=list(scopes))],
            **as_overrides,
        )
        await add_user(settings)
        rs = ResourceServer(
            issuer,
            rs_base,
            required=required or {"*": ["mcp:tools"]},
            scopes_supported=scopes_supported,
        )
        user = BrowserUser(issuer)
        try:
            async with serve(create_app(settings), port=as_port), serve(rs.app(), port=rs_port):
                yield Stack(issuer, settings, rs, user, tmp_path / "client" / "tokens.json")
        finally:
            await user.aclose()

    return start


@pytest.fixture
async def stack(start_stack: StartStack) -> AsyncIterator[Stack]:
    """One running stack with the default resource server (every method needs mcp:tools)."""
    async with start_stack() as running:
        yield running
