"""The console under test: the authorization server on a loopback port (real HTTP, uvicorn),
on SQLite and PostgreSQL, with people of every kind and a clock the test can move.

- ``alice``: an administrator (``is_admin``); ``carol``: one through ``console.admin_groups``
  (group ``platform-admins``); ``bob``: a person, not an administrator.
- :class:`Console` signs people in over HTTP (:meth:`Console.signed_in`) or in Chromium
  (:func:`browser_sign_in`).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.async_api import Page

from bastion.authserver.app import create_app
from bastion.config import ConsoleSettings, ResourceSettings, Settings
from bastion.store.database import Database
from tests.e2e.test_browser_flow import page  # noqa: F401  (the fixture)
from tests.support.flow import PASSWORD, add_user
from tests.support.live import free_port, serve

ADMIN_GROUP = "platform-admins"


@dataclass
class Clock:
    """The server's clock: the real time plus what the test added."""

    offset: int = 0

    def __call__(self) -> int:
        return int(time.time()) + self.offset


@dataclass
class Console:
    """A running authorization server with its console."""

    issuer: str
    settings: Settings
    clock: Clock
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def url(self, path: str) -> str:
        """The absolute URL of ``path``."""
        return f"{self.issuer}{path}"

    async def signed_in(self, username: str, password: str = PASSWORD) -> httpx.AsyncClient:
        """An HTTP client with ``username``'s session (signed in through ``/signin``)."""
        http = httpx.AsyncClient(base_url=self.issuer, follow_redirects=False)
        self.clients.append(http)
        form = await http.get("/signin", params={"next": "/account"})
        assert form.status_code == 200, form.text
        answer = await http.post(
            "/signin",
            data={
                "csrf": csrf_of(form.text),
                "next": "/account",
                "username": username,
                "password": password,
            },
        )
        assert answer.status_code == 303, answer.text
        return http

    def database(self) -> Database:
        """The server's database, for a test to look behind the pages (dispose it)."""
        return Database(self.settings.effective_database_url, schema=self.settings.database_schema)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@pytest.fixture
async def console(make_settings: Callable[..., Settings]) -> AsyncIterator[Console]:
    """The console of a live authorization server with alice, carol (administrators) and bob."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings: Settings = make_settings(
        issuer=issuer,
        resources=[
            ResourceSettings(uri=f"{issuer}/mcp/notes", name="notes", scopes=["mcp:tools"]),
            ResourceSettings(uri=f"{issuer}/mcp/ledger", name="ledger", scopes=["mcp:tools"]),
        ],
        console=ConsoleSettings(admin_groups=[ADMIN_GROUP]),
    )
    await add_user(settings, "alice", name="Alice Admin", is_admin=True)
    await add_user(settings, "carol", name="Carol Ops", groups=[ADMIN_GROUP])
    await add_user(settings, "bob", name="Bob Builder", groups=["sales"])
    clock = Clock()
    async with serve(create_app(settings, clock=clock), port=port):
        running = Console(issuer, settings, clock)
        try:
            yield running
        finally:
            for http in running.clients:
                await http.aclose()


async def browser_sign_in(tab: Page, console: Console, username: str, path: str = "/admin") -> None:
    """Open ``path`` in Chromium and sign in as ``username`` on the sign-in page it leads to."""
    await tab.goto(console.url(path))
    await tab.fill("input[name=username]", username)
    await tab.fill("input[name=password]", PASSWORD)
    await tab.click("form[action$='/signin'] button[type=submit]")
    await tab.wait_for_url(console.url(path) + "*")


__all__ = ["ADMIN_GROUP", "Clock", "Console", "browser_sign_in", "csrf_of"]
