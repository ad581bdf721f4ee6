"""A real ``bastion serve`` process for the access tests, on SQLite or PostgreSQL, and a browser
stand-in that drives its sign-in pages over HTTP (refusal pages included)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from bastion.config import Settings
from bastion.oauth import pkce
from tests.scaleout.processes import Server, serving
from tests.support.live import free_port

REDIRECT_URI = "http://127.0.0.1:53682/callback"
PASSWORD = "correct horse battery staple"
SECRET_KEY = "access-test-secret-key-0123456789abcdef"


@dataclass
class Deployment:
    """A running authorization server: its URL, the settings the test process uses to
    administer it (same database), and the resources it serves."""

    server: Server
    settings: Settings
    values: dict[str, Any]

    @property
    def issuer(self) -> str:
        return self.server.url

    def resource(self, name: str) -> str:
        return f"{self.issuer}/mcp/{name}"


def deployment_values(backend: dict[str, Any], tmp_path: Path, port: int) -> dict[str, Any]:
    """What a deployment's configuration holds: two resources, short caches."""
    issuer = f"http://127.0.0.1:{port}"
    return {
        "issuer": issuer,
        "data_dir": str(tmp_path / "data"),
        "secret_key": SECRET_KEY,
        "client_cache_ttl": 1,
        "cimd": {"allow_private_addresses": True},
        "resources": [
            {
                "uri": f"{issuer}/mcp/ledger",
                "name": "ledger",
                "scopes": ["mcp:tools", "ledger:write"],
            },
            {"uri": f"{issuer}/mcp/notes", "name": "notes", "scopes": ["mcp:tools", "notes:write"]},
        ],
        **backend,
    }


@contextmanager
def deployed(backend: dict[str, Any], tmp_path: Path, **extra: Any) -> Iterator[Deployment]:
    """``bastion serve`` in its own process, with ``extra`` settings."""
    port = free_port()
    values = {**deployment_values(backend, tmp_path, port), **extra}
    with serving(values, [port]) as servers:
        yield Deployment(servers[0], Settings(**values), values)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@dataclass
class SignIn:
    """Where a sign-in ended: the last page (a refusal, for instance) or the redirect back to
    the client with its parameters, and the PKCE verifier."""

    page: httpx.Response | None
    params: dict[str, str]
    verifier: str


async def sign_in(
    http: httpx.AsyncClient,
    client_id: str,
    resource: str,
    *,
    username: str,
    scope: str | None = "mcp:tools",
    decision: str = "allow",
    stop_at_refusal: bool = True,
) -> SignIn:
    """/authorize, log in, consent; stop at a page that is neither (a refusal) or at the
    redirect to the client."""
    verifier = pkce.new_verifier()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
        "state": "st-1",
        "resource": resource,
    }
    if scope:
        params["scope"] = scope
    response = await http.get("/authorize", params=params)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    for _ in range(5):
        if "/interaction/" not in location:
            break
        page = await http.get(location)
        if page.status_code in (302, 303):
            location = page.headers["location"]
            continue
        path = urlsplit(location).path
        if 'name="password"' in page.text:
            form = {"csrf": csrf_of(page.text), "username": username, "password": PASSWORD}
            response = await http.post(f"{path}/login", data=form)
        elif page.status_code != 200 and stop_at_refusal:
            return SignIn(page, {}, verifier)
        else:
            form = {"csrf": csrf_of(page.text), "decision": decision}
            response = await http.post(f"{path}/consent", data=form)
        assert response.status_code in (302, 303), response.text
        location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return SignIn(None, query, verifier)


async def redeem(http: httpx.AsyncClient, client_id: str, signed_in: SignIn) -> httpx.Response:
    """Exchange the code for tokens (a public client)."""
    return await http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": signed_in.params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": signed_in.verifier,
            "client_id": client_id,
        },
    )


__all__ = [
    "PASSWORD",
    "REDIRECT_URI",
    "Deployment",
    "SignIn",
    "csrf_of",
    "deployed",
    "deployment_values",
    "redeem",
    "sign_in",
]
