"""A registry next to a real bastion AS, both in-process: tokens signed with the AS's own key.

The registry verifies tokens against the AS's JWKS, fetched through ``httpx.ASGITransport``; the
tests mint tokens with whatever claims a case needs (sub, scope, groups, client_id) with the key
the AS signs with, which is what the AS's token endpoint would do for a user of those groups.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from bastion.authserver.app import create_app
from bastion.config import RegistrySettings, Settings
from bastion.registry.access import ADMIN, READ
from bastion.registry.app import create_registry_app, registry_paths
from bastion.tokens import access_token

ISSUER = "http://localhost"
REGISTRY = f"{ISSUER}/registry"
PRM_URL = f"{ISSUER}/.well-known/oauth-protected-resource/registry"
META = "dev.mcp-bastion/registry"

NAMESPACES = {
    "com.acme.team-a": ["group:team-a"],
    "com.acme.team-b": ["group:team-b"],
    "com.acme.shared.*": ["group:team-a", "group:team-b"],
    "io.alice": ["sub:alice"],
    "com.robot": ["client:robot"],
}


class MillisClock:
    """Unix milliseconds the test moves by hand (registry times)."""

    def __init__(self, start: int = 1_760_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now

    def advance(self, millis: int) -> None:
        self.now += millis


def server_json(name: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    """A valid server.json (schema 2025-12-11)."""
    document: dict[str, Any] = {
        "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
        "name": name,
        "description": extra.pop("description", f"The {name.split('/')[1]} server"),
        "version": version,
        "remotes": [{"type": "streamable-http", "url": "https://mcp.example.com/mcp"}],
    }
    groups = extra.pop("groups", None)
    if groups is not None:
        document["_meta"] = {"dev.mcp-bastion/publish": {"groups": groups}}
    document.update(extra)
    return document


def encoded(name: str) -> str:
    """A server name as a path segment (``io.x%2Fy``)."""
    return quote(name, safe="")


@dataclass
class Registry:
    """A running registry and the AS that issues its tokens."""

    settings: Settings
    client: httpx.AsyncClient
    auth_app: Any
    clock: MillisClock
    base: str = "/registry/v0.1"
    requests: int = field(default=0)

    async def token(
        self,
        sub: str = "alice",
        scope: str = READ,
        *,
        groups: list[str] | None = None,
        client_id: str = "test-client",
        audience: str = REGISTRY,
        **claims: Any,
    ) -> str:
        """An access token the AS would issue (its current signing key)."""
        key = await self.auth_app.state.bastion.keys.signing_key()
        extra: dict[str, Any] = dict(claims)
        if groups is not None:
            extra["groups"] = groups
        issued = access_token.issue(
            key,
            issuer=ISSUER,
            subject=sub,
            audience=audience,
            client_id=client_id,
            scope=scope,
            now=self.auth_app.state.bastion.clock(),
            ttl=600,
            extra=extra,
        )
        return issued.token

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def admin(self) -> str:
        return await self.token(
            "root", ADMIN, groups=["registry-admins"], client_id="admin-console"
        )

    async def publish(self, token: str, document: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            f"{self.base}/publish", json=document, headers=self.bearer(token)
        )

    async def published(self, token: str, document: dict[str, Any]) -> dict[str, Any]:
        response = await self.publish(token, document)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def list_names(self, token: str | None, **params: Any) -> list[str]:
        """name@version of every entry the caller sees (following nextCursor)."""
        headers = self.bearer(token) if token else {}
        found: list[str] = []
        cursor: str | None = None
        for _ in range(100):
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            response = await self.client.get(f"{self.base}/servers", params=query, headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            found += [f"{s['server']['name']}@{s['server']['version']}" for s in body["servers"]]
            cursor = body["metadata"].get("nextCursor")
            if not cursor:
                return found
        raise AssertionError("more than 100 pages")


RegistryFactory = Callable[..., AbstractAsyncContextManager[Registry]]


@asynccontextmanager
async def running_registry(settings: Settings, clock: MillisClock) -> AsyncIterator[Registry]:
    """The AS and the registry of ``settings`` with their lifespans, and a client of both."""
    auth = create_app(settings)
    async with auth.router.lifespan_context(auth):
        jwks_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=auth), base_url=ISSUER)
        registry = create_registry_app(settings, http=jwks_http, clock=clock)
        async with registry.router.lifespan_context(registry):
            transport = httpx.ASGITransport(app=registry)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
                yield Registry(settings, client, auth, clock)
        await jwks_http.aclose()


def registry_settings(**overrides: Any) -> RegistrySettings:
    """Registry settings for tests: enabled, the namespaces above, fine scopes for both teams."""
    values: dict[str, Any] = {
        "enabled": True,
        "namespaces": NAMESPACES,
        "scopes": [f"{READ}:team-a", f"{READ}:team-b"],
    }
    values.update(overrides)
    return RegistrySettings(**values)


def unique(prefix: str = "s") -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def check_paths(settings: Settings) -> None:
    resource, prefix, metadata = registry_paths(settings)
    assert resource == REGISTRY and prefix == "/registry"
    assert metadata == "/.well-known/oauth-protected-resource/registry"


__all__ = [
    "ISSUER",
    "META",
    "NAMESPACES",
    "PRM_URL",
    "REGISTRY",
    "MillisClock",
    "Registry",
    "RegistryFactory",
    "encoded",
    "registry_settings",
    "running_registry",
    "server_json",
    "unique",
]
