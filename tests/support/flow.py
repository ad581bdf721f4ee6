"""Drive the authorization code flow over HTTP the way a browser and a client would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from bastion.config import Settings
from bastion.identity.local import LocalUsers
from bastion.oauth import pkce
from bastion.store.database import Database

REDIRECT_URI = "http://127.0.0.1:53682/callback"
PASSWORD = "correct horse battery staple"


async def add_user(settings: Settings, username: str = "alice", **kwargs: Any) -> None:
    """Create a local user with PASSWORD."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        await LocalUsers(db).add(username, PASSWORD, **kwargs)
    finally:
        await db.dispose()


async def register(client: httpx.AsyncClient, **metadata: Any) -> dict[str, Any]:
    """Register a public client dynamically (RFC 7591) and return the response body."""
    body = {
        "client_name": "Test client",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        **metadata,
    }
    response = await client.post("/register", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


@dataclass
class Authorized:
    """The outcome of an authorization request."""

    location: str
    params: dict[str, str]
    verifier: str


def csrf_of(html: str) -> str:
    """The CSRF token embedded in a page's form."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def authorize(
    client: httpx.AsyncClient,
    client_id: str,
    *,
    username: str = "alice",
    password: str = PASSWORD,
    redirect_uri: str = REDIRECT_URI,
    resource: str | None = "http://localhost:9001/mcp",
    scope: str | None = "mcp:tools",
    state: str = "xyz",
    decision: str = "allow",
    extra: dict[str, str] | None = None,
) -> Authorized:
    """Run /authorize, log in, consent; return the final redirect's parameters."""
    verifier = pkce.new_verifier()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
        "state": state,
    }
    if resource:
        params["resource"] = resource
    if scope:
        params["scope"] = scope
    params.update(extra or {})
    response = await client.get("/authorize", params=params)
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    while "/interaction/" in location:
        page = await client.get(location)
        if page.status_code in (302, 303):
            location = page.headers["location"]
            break
        assert page.status_code == 200, page.text
        path = urlsplit(location).path
        if 'name="password"' in page.text:
            response = await client.post(
                f"{path}/login",
                data={"csrf": csrf_of(page.text), "username": username, "password": password},
            )
        else:
            response = await client.post(
                f"{path}/consent", data={"csrf": csrf_of(page.text), "decision": decision}
            )
        assert response.status_code in (302, 303), response.text
        location = response.headers["location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return Authorized(location, query, verifier)


async def login_form(client: httpx.AsyncClient, client_id: str) -> tuple[str, str]:
    """Start an authorization request (PKCE, the test resource); the log-in page's URL and its
    CSRF token."""
    response = await client.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": pkce.s256(pkce.new_verifier()),
            "code_challenge_method": "S256",
            "resource": "http://localhost:9001/mcp",
        },
    )
    location = response.headers["location"]
    page = await client.get(location)
    return location, csrf_of(page.text)


async def exchange(
    client: httpx.AsyncClient,
    client_id: str,
    authorized: Authorized,
    *,
    redirect_uri: str = REDIRECT_URI,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> httpx.Response:
    """Redeem the code at the token endpoint (with ``headers``, e.g. a DPoP proof)."""
    data = {
        "grant_type": "authorization_code",
        "code": authorized.params["code"],
        "redirect_uri": redirect_uri,
        "code_verifier": authorized.verifier,
        "client_id": client_id,
        **extra,
    }
    return await client.post("/token", data=data, headers=headers)
