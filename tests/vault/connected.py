"""Upstream connections with real tokens, for the tests of the vault's administrative side.

node-oidc-provider (:mod:`tests.support.oidc_provider`) is the upstream's authorization server:
bastion is its pre-registered public client ``bastion-up``; a person's tokens are obtained there
through its login and consent pages (authorization code with PKCE) and stored as the connect
flow stores them (:func:`bastion.store.upstream_connections.save_connection`, encrypted with the
server's cipher). :func:`active` asks the provider (RFC 7662) whether a token still works.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from bastion.authserver.secret_key import cipher_for
from bastion.config import Settings
from bastion.store import upstream_connections as connection_rows
from bastion.store.database import Database
from bastion.store.schema import auth_audit, upstream_connections, users
from bastion.store.sealed import connection_binding
from bastion.store.upstream_connections import Connection
from tests.support.oidc_provider import (
    OidcProvider,
    log_in,
    oidc_provider,
    public_client,
    resource,
)

UPSTREAM = "files"
UPSTREAM_RESOURCE = "http://127.0.0.1:9/mcp/files"  # never contacted: its metadata is configured
CLIENT_ID = "bastion-up"


@contextlib.asynccontextmanager
async def upstream_server() -> AsyncIterator[OidcProvider]:
    """The upstream's authorization server: opaque (introspectable) access tokens for
    :data:`UPSTREAM_RESOURCE`, a refresh token with every code, revocation (RFC 7009)."""
    async with oidc_provider(
        resources=[resource(UPSTREAM_RESOURCE, "mcp:tools files:read", format="opaque")],
        clients=[public_client(CLIENT_ID)],
        refresh_tokens="always",
    ) as op:
        yield op


def upstream_toml(issuer: str, name: str = UPSTREAM) -> str:
    """A ``[[gateway.upstreams]]`` with ``auth = "oauth"`` whose authorization server is
    ``issuer`` (bastion pre-registered there as :data:`CLIENT_ID`)."""
    return (
        f'[[gateway.upstreams]]\nname = "{name}"\npath = "/mcp/{name}"\n'
        f'url = "{UPSTREAM_RESOURCE}"\nauth = "oauth"\n'
        "[gateway.upstreams.oauth]\n"
        f'registration = "pre-registered"\nclient_id = "{CLIENT_ID}"\n'
        f'authorization_server = "{issuer}"\nresource = "{UPSTREAM_RESOURCE}"\n'
        'scopes = ["mcp:tools"]\nallow_private_addresses = true\n'
    )


def upstream_settings(issuer: str, name: str = UPSTREAM) -> dict[str, Any]:
    """The same upstream as keyword values of ``UpstreamSettings``."""
    return {
        "name": name,
        "path": f"/mcp/{name}",
        "url": UPSTREAM_RESOURCE,
        "auth": "oauth",
        "oauth": {
            "registration": "pre-registered",
            "client_id": CLIENT_ID,
            "authorization_server": issuer,
            "resource": UPSTREAM_RESOURCE,
            "scopes": ["mcp:tools"],
            "allow_private_addresses": True,
        },
    }


@dataclass(frozen=True)
class Tokens:
    """A person's tokens at the upstream, as the provider issued them."""

    access_token: str
    refresh_token: str

    @property
    def values(self) -> tuple[str, str]:
        return self.access_token, self.refresh_token


def database(settings: Settings) -> Database:
    """The server's database (dispose it)."""
    return Database(settings.effective_database_url, schema=settings.database_schema)


async def connect(
    settings: Settings, op: OidcProvider, username: str, upstream: str = UPSTREAM
) -> Tokens:
    """``username`` signs in at the provider (its login and consent pages) and bastion stores
    the tokens as their connection to ``upstream``."""
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
        body = await log_in(
            op,
            http,
            login=username,
            client_id=CLIENT_ID,
            resource=UPSTREAM_RESOURCE,
            scope="mcp:tools",
        )
    tokens = Tokens(body["access_token"], body["refresh_token"])
    cipher = cipher_for(settings)
    db = database(settings)
    try:
        async with db.transaction() as conn:
            user_id = await conn.scalar(sa.select(users.c.id).where(users.c.username == username))
            assert user_id is not None, username
            now = int(time.time())

            def sealed(value: str, kind: str) -> str:
                return cipher.encrypt(
                    value.encode(), bound_to=connection_binding(user_id, upstream, kind)
                )

            await connection_rows.save_connection(
                conn,
                Connection(
                    user_id=user_id,
                    upstream=upstream,
                    issuer=op.issuer,
                    client_id=CLIENT_ID,
                    access_token_encrypted=sealed(tokens.access_token, "access"),
                    refresh_token_encrypted=sealed(tokens.refresh_token, "refresh"),
                    scope=body.get("scope"),
                    expires_at=now + int(body["expires_in"]),
                    created_at=now,
                ),
            )
    finally:
        await db.dispose()
    return tokens


async def active(op: OidcProvider, token: str) -> bool:
    """Whether the provider says ``token`` is active (RFC 7662, asked as bastion's client)."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            op.introspection_endpoint, data={"token": token, "client_id": CLIENT_ID}
        )
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["active"])


async def audit_records(settings: Settings, *types: str) -> list[Any]:
    """The audit records of ``types``, oldest first."""
    db = database(settings)
    try:
        async with db.connect() as conn:
            q = sa.select(auth_audit).where(auth_audit.c.type.in_(types)).order_by(auth_audit.c.id)
            return list(await conn.execute(q))
    finally:
        await db.dispose()


async def connected(settings: Settings) -> list[tuple[str, str]]:
    """Every connection as (user name, upstream)."""
    db = database(settings)
    try:
        async with db.connect() as conn:
            q = (
                sa.select(users.c.username, upstream_connections.c.upstream)
                .join(users, users.c.id == upstream_connections.c.user_id)
                .order_by(users.c.username, upstream_connections.c.upstream)
            )
            return [(row.username, row.upstream) for row in await conn.execute(q)]
    finally:
        await db.dispose()


__all__ = [
    "CLIENT_ID",
    "UPSTREAM",
    "UPSTREAM_RESOURCE",
    "Tokens",
    "active",
    "audit_records",
    "connect",
    "connected",
    "database",
    "upstream_server",
    "upstream_settings",
    "upstream_toml",
]
