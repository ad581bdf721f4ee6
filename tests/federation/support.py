"""Helpers for the federation tests: a live bastion with upstream providers, an HTTP "browser"
that goes through the log-in page, the upstream and back, and row counts.

The browser here is httpx with a cookie jar (cookies are per host, so bastion's and the
providers' cookies on 127.0.0.1 share it, as in a real browser); it follows each form's own
``action`` and each redirect's ``Location`` by hand, so every hop is visible to the test.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import sqlalchemy as sa

from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings
from bastion.oauth import pkce
from bastion.store.database import Database
from bastion.store.schema import federation_states, linked_accounts, sessions, users
from tests.support.flow import REDIRECT_URI, csrf_of, register
from tests.support.live import free_port, serve

SCOPE = "mcp:tools"


@dataclass(frozen=True)
class Bastion:
    """A running bastion: its issuer, settings and the MCP resource it issues tokens for."""

    issuer: str
    settings: Settings
    resource: str

    def callback(self, name: str) -> str:
        return f"{self.issuer}/login/{name}/callback"


def new_issuer() -> tuple[int, str]:
    """A free loopback port and bastion's issuer on it (known before the providers start)."""
    port = free_port()
    return port, f"http://127.0.0.1:{port}"


@asynccontextmanager
async def running_bastion(
    make_settings: Callable[..., Settings],
    port: int,
    upstreams: list[dict[str, Any]],
    *,
    resource: str | None = None,
    **kw: Any,
) -> AsyncIterator[Bastion]:
    """bastion under uvicorn on ``port`` with ``upstreams`` and one MCP resource (default
    <issuer>/mcp)."""
    issuer = f"http://127.0.0.1:{port}"
    resource = resource or f"{issuer}/mcp"
    settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=resource, name="demo", scopes=[SCOPE])],
        upstreams=upstreams,
        **kw,
    )
    async with serve(create_app(settings), port=port) as url:
        assert url == issuer
        yield Bastion(issuer, settings, resource)


@dataclass
class Pending:
    """An MCP client's authorization request in progress."""

    client_id: str
    verifier: str
    state: str
    interaction: str  # the URL of bastion's log-in/consent page for it


async def begin(http: httpx.AsyncClient, bastion: Bastion, client_id: str | None = None) -> Pending:
    """Register a public client (DCR) unless given, send /authorize with PKCE; end at the
    interaction page's URL."""
    if client_id is None:
        async with httpx.AsyncClient(base_url=bastion.issuer) as dcr:
            registered = await register(dcr)
        client_id = registered["client_id"]
    verifier, state = pkce.new_verifier(), "client-state-1"
    response = await http.get(
        f"{bastion.issuer}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": pkce.s256(verifier),
            "code_challenge_method": "S256",
            "state": state,
            "scope": SCOPE,
            "resource": bastion.resource,
        },
    )
    assert response.status_code in (302, 303), response.text
    return Pending(
        client_id, verifier, state, urljoin(bastion.issuer, response.headers["location"])
    )


def provider_action(html: str, name: str) -> str:
    """The action of the log-in page's button form for provider ``name``."""
    found = re.findall(
        r'<form method="post" action="([^"]+/upstream/' + re.escape(name) + ')"', html
    )
    assert len(found) == 1, html
    return found[0]


async def click_provider(http: httpx.AsyncClient, pending: Pending, name: str) -> httpx.Response:
    """Open the log-in page and press "Continue with <provider>"; bastion's answer."""
    page = await http.get(pending.interaction)
    assert page.status_code == 200, page.text
    return await http.post(
        urljoin(pending.interaction, provider_action(page.text, name)),
        data={"csrf": csrf_of(page.text)},
    )


async def follow_to_callback(http: httpx.AsyncClient, redirect: httpx.Response) -> httpx.Response:
    """From bastion's redirect to the provider, through the provider's automatic answer, to
    bastion's answer at the callback (a redirect on success, an error page otherwise)."""
    assert redirect.status_code == 303, redirect.text
    upstream = await http.get(redirect.headers["location"])
    assert upstream.status_code in (302, 303), upstream.text
    return await http.get(urljoin(str(upstream.url), upstream.headers["location"]))


async def sign_in_upstream(
    http: httpx.AsyncClient, bastion: Bastion, name: str, client_id: str | None = None
) -> tuple[Pending, httpx.Response]:
    """The whole way from /authorize to bastion's answer at the callback."""
    pending = await begin(http, bastion, client_id)
    clicked = await click_provider(http, pending, name)
    return pending, await follow_to_callback(http, clicked)


async def consent_and_redeem(
    http: httpx.AsyncClient, bastion: Bastion, pending: Pending, callback: httpx.Response
) -> dict[str, Any]:
    """After a successful callback: the consent page, Allow, the code, the token response."""
    assert callback.status_code == 303, callback.text
    assert callback.headers["location"] == pending.interaction
    page = await http.get(pending.interaction)
    assert page.status_code == 200 and "Allow" in page.text, page.text
    action = re.search(r'<form method="post" action="([^"]+/consent)"', page.text)
    assert action, page.text
    allowed = await http.post(
        urljoin(pending.interaction, action.group(1)),
        data={"csrf": csrf_of(page.text), "decision": "allow"},
    )
    assert allowed.status_code == 303, allowed.text
    answer = dict(parse_qsl(urlsplit(allowed.headers["location"]).query))
    assert answer["state"] == pending.state and answer["iss"] == bastion.issuer
    token = await http.post(
        f"{bastion.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pending.verifier,
            "client_id": pending.client_id,
            "resource": bastion.resource,
        },
    )
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body: dict[str, Any] = token.json()
    return body


async def rows(settings: Settings, table: sa.Table) -> list[sa.Row[Any]]:
    """Every row of ``table`` in the test's database."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            return list(await conn.execute(sa.select(table)))
    finally:
        await db.dispose()


async def nothing_created(settings: Settings) -> None:
    """No user, linked account or session exists, and no pending upstream sign-in is left."""
    for table in (users, linked_accounts, sessions, federation_states):
        assert await rows(settings, table) == [], table.name


def page_text(response: httpx.Response) -> str:
    """The visible text of an HTML page, tags removed and whitespace collapsed."""
    text = re.sub(r"<[^>]+>", " ", response.text)
    return " ".join(text.replace("&#39;", "'").replace("&amp;", "&").split())


__all__ = [
    "SCOPE",
    "Bastion",
    "Pending",
    "begin",
    "click_provider",
    "consent_and_redeem",
    "follow_to_callback",
    "new_issuer",
    "nothing_created",
    "page_text",
    "provider_action",
    "rows",
    "running_bastion",
    "sign_in_upstream",
]
