"""Helpers for the authorization-endpoint tests: a movable clock, a browser that follows the
forms' own ``action`` attributes, pre-registered clients and row counts.

``tests.support.flow.authorize`` posts to paths it builds itself; :func:`browse` instead submits
each form where the page says, so it also proves the pages' links are right (e.g. under an issuer
with a path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import sqlalchemy as sa

from bastion.authserver.admin import add_client
from bastion.config import Settings
from bastion.oauth import pkce
from bastion.store.database import Database
from tests.support.flow import PASSWORD, REDIRECT_URI, csrf_of

START = 1_700_000_000


class MovableClock:
    """A clock the test moves by hand (``bastion.clock.Clock``)."""

    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect, each once (a repeated one fails the test)."""
    pairs = parse_qsl(urlsplit(location).query, keep_blank_values=True)
    names = [k for k, _ in pairs]
    assert len(names) == len(set(names)), location
    return dict(pairs)


def authorization_params(client_id: str, verifier: str, **overrides: str | None) -> dict[str, str]:
    """A valid authorization request for the default test resource; ``None`` drops a field."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
        "scope": "mcp:tools",
        "resource": "http://localhost:9001/mcp",
        "state": "xyz",
        **overrides,
    }
    return {k: v for k, v in params.items() if v is not None}


def form_action(html: str) -> str:
    """The ``action`` of the (single) form on a page."""
    found = re.findall(r'<form[^>]*\baction="([^"]+)"', html)
    assert len(found) == 1, html
    return found[0]


@dataclass
class Browsed:
    """Where the browser ended, and the pages it saw on the way."""

    location: str
    pages: list[httpx.Response]

    @property
    def params(self) -> dict[str, str]:
        return query_of(self.location)


async def browse(
    client: httpx.AsyncClient,
    start: str,
    *,
    username: str = "alice",
    password: str = PASSWORD,
    decision: str = "allow",
    max_steps: int = 6,
) -> Browsed:
    """Follow redirects from ``start`` and fill in the log-in and consent forms, posting each to
    its own ``action``, until the browser leaves the server for the client's redirect URI."""
    server = urlsplit(str(client.base_url)).netloc
    location = start
    pages: list[httpx.Response] = []
    for _ in range(max_steps):
        parts = urlsplit(location)
        if parts.netloc not in ("", server) or parts.scheme not in ("", "http", "https"):
            return Browsed(location, pages)
        response = await client.get(location)
        if response.status_code in (302, 303):
            location = urljoin(location, response.headers["location"])
            continue
        assert response.status_code == 200, response.text
        pages.append(response)
        action = urljoin(location, form_action(response.text))
        if 'name="password"' in response.text:
            data = {"csrf": csrf_of(response.text), "username": username, "password": password}
        else:
            data = {"csrf": csrf_of(response.text), "decision": decision}
        posted = await client.post(action, data=data)
        assert posted.status_code in (302, 303), posted.text
        location = urljoin(action, posted.headers["location"])
    raise AssertionError(f"no redirect to the client after {max_steps} steps; at {location}")


async def preregister(settings: Settings, **kwargs: Any) -> tuple[str, str | None]:
    """Pre-register a client with ``bastion.authserver.admin.add_client``; (client_id, secret)."""
    values: dict[str, Any] = {
        "client_id": None,
        "name": "Pre-registered client",
        "redirect_uris": [REDIRECT_URI],
        "confidential": False,
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": None,
        **kwargs,
    }
    created = await add_client(settings, **values)
    return created.client.client_id, created.secret


async def count_rows(settings: Settings, table: sa.Table) -> int:
    """How many rows ``table`` holds in the test's database."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            found = await conn.scalar(sa.select(sa.func.count()).select_from(table))
    finally:
        await db.dispose()
    return int(found or 0)


__all__ = [
    "START",
    "Browsed",
    "MovableClock",
    "authorization_params",
    "browse",
    "count_rows",
    "form_action",
    "preregister",
    "query_of",
]
