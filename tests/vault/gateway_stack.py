"""The gateway in front of an upstream with its own OAuth, made of real pieces, each on 127.0.0.1:

- the upstream's authorization server: node-oidc-provider, with bastion pre-registered there as
  the public client ``bastion`` (redirect URI ``<issuer>/connect/callback``, refresh tokens
  rotated, as oidc-provider does for public clients); opaque access tokens, so that a token
  revoked there (RFC 7009) is refused at once by the upstream, which introspects (RFC 7662);
- the upstream: the notes server of :mod:`tests.support.oauth_upstream` (an ``mcp`` SDK
  server: its own bearer middleware, RFC 9728 metadata, a ``whoami`` tool answering the
  token's ``sub``), checking tokens by introspection, with a record of every
  ``Authorization`` that reached it;
- bastion's authorization server and gateway (upstream ``up`` at ``/mcp/up``, ``auth =
  "oauth"``), on SQLite or PostgreSQL.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.authserver.app import create_app
from bastion.authserver.secret_key import cipher_for
from bastion.clock import system_clock
from bastion.config import ResourceSettings, Settings
from bastion.gateway import create_gateway_app
from bastion.resource.introspection import IntrospectionVerifier
from bastion.resource.mcp_sdk import McpTokenVerifier
from bastion.store import upstream_connections as vault_rows
from bastion.store import users
from bastion.store.database import Database
from bastion.store.sealed import connection_binding
from tests.support.clients import machine_client
from tests.support.flow import PASSWORD, add_user, authorize, exchange, register
from tests.support.live import free_port, serve
from tests.support.oauth_upstream import UPSTREAM_SCOPES, OAuthUpstream, notes_server
from tests.support.oidc_provider import (
    OidcProvider,
    confidential_client,
    log_in,
    oidc_provider,
    public_client,
    resource,
)

UPSTREAM = "up"
SCOPE = "mcp:tools"  # bastion's scope for the upstream at the gateway
UPSTREAM_SCOPE = " ".join(UPSTREAM_SCOPES)  # what the notes server requires
ACCEPT = "application/json, text/event-stream"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
INTROSPECTOR = "upstream-rs"


@dataclass
class ProtectedUpstream:
    """The upstream MCP server and what reached it: the path and ``Authorization`` of every
    request (bastion's discovery of its metadata included)."""

    app: ASGIApp
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def authorizations(self) -> list[str | None]:
        """The ``Authorization`` of each request to the MCP endpoint."""
        return [authorization for path, authorization in self.seen if path == "/mcp"]


@asynccontextmanager
async def protected_upstream(op: OidcProvider, url: str) -> AsyncIterator[ProtectedUpstream]:
    """The notes server of :mod:`tests.support.oauth_upstream` at ``url`` (path /mcp), taking
    the provider's tokens for ``url`` checked by introspection (RFC 7662, nothing cached: a
    token revoked there is refused at once), and recording what reaches it."""
    async with IntrospectionVerifier(
        introspection_endpoint=op.introspection_endpoint,
        client_id=INTROSPECTOR,
        client_secret=op.client(INTROSPECTOR)["client_secret"],
        audience=url,
        issuer=op.issuer,
        cache_ttl=0,
    ) as introspection:
        server = notes_server(
            OAuthUpstream(url=url, provider=op), McpTokenVerifier(introspection, resource=url)
        )
        inner = server.streamable_http_app(streamable_http_path="/mcp")
        upstream = ProtectedUpstream(app=inner)

        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                found = dict(scope["headers"]).get(b"authorization")
                upstream.seen.append((scope["path"], found.decode() if found else None))
            await inner(scope, receive, send)

        upstream.app = recording
        yield upstream


@dataclass
class VaultStack:
    """The running pieces (see the module docstring) and what the tests do with them."""

    issuer: str
    gateway: str
    settings: Settings
    op: OidcProvider
    upstream_url: str
    upstream: ProtectedUpstream
    public_client_id: str

    @property
    def url(self) -> str:
        """The upstream's URL at the gateway."""
        return f"{self.gateway}/mcp/{UPSTREAM}"

    def db(self) -> Database:
        return Database(self.settings.effective_database_url, schema=self.settings.database_schema)

    async def person(self, username: str) -> tuple[str, str]:
        """A new local user ``username`` signed in through the public client: their
        users.id and a bastion access token for the gateway's upstream."""
        await add_user(self.settings, username)
        async with httpx.AsyncClient(base_url=self.issuer, timeout=10) as browser:
            authorized = await authorize(
                browser,
                self.public_client_id,
                username=username,
                password=PASSWORD,
                resource=self.url,
                scope=SCOPE,
            )
            response = await exchange(browser, self.public_client_id, authorized)
        assert response.status_code == 200, response.text
        async with self._database() as db, db.connect() as conn:
            user = await users.by_username(conn, username)
        assert user is not None
        return user.id, str(response.json()["access_token"])

    async def machine_token(self) -> str:
        """A client_credentials token for the upstream (``sub`` is the client itself)."""
        made = await machine_client(self.settings, name=f"machine-{secrets.token_hex(3)}")
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                f"{self.issuer}/token",
                data={"grant_type": "client_credentials", "resource": self.url, "scope": SCOPE},
                auth=made.auth,
            )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def upstream_tokens(self, login: str) -> dict[str, Any]:
        """Real tokens of ``login`` at the provider for bastion's client there (the code flow
        through its development pages, as the connect page would start it)."""
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as browser:
            return await log_in(
                self.op,
                browser,
                login=login,
                client_id="bastion",
                redirect_uri=f"{self.issuer}/connect/callback",
                resource=self.upstream_url,
                scope=UPSTREAM_SCOPE,
            )

    async def seed_connection(
        self, user_id: str, tokens: dict[str, Any], *, expires_at: int | None = None
    ) -> None:
        """Store ``tokens`` as ``user_id``'s connection, encrypted as the connect callback
        stores them (``expires_at`` default: from ``expires_in``)."""
        cipher = cipher_for(self.settings)

        def seal(token: str, kind: str) -> str:
            bound_to = connection_binding(user_id, UPSTREAM, kind)
            return cipher.encrypt(token.encode(), bound_to=bound_to)

        now = system_clock()
        refresh = tokens.get("refresh_token")
        connection = vault_rows.Connection(
            user_id=user_id,
            upstream=UPSTREAM,
            issuer=self.op.issuer,
            client_id="bastion",
            access_token_encrypted=seal(tokens["access_token"], "access"),
            refresh_token_encrypted=seal(refresh, "refresh") if refresh else None,
            scope=tokens.get("scope"),
            expires_at=expires_at if expires_at is not None else now + tokens["expires_in"],
            created_at=now,
        )
        async with self._database() as db, db.transaction() as conn:
            await vault_rows.save_connection(conn, connection)

    async def expire(self, user_id: str) -> vault_rows.Connection:
        """Make ``user_id``'s stored upstream token look expired (it is refreshed on next
        use); the connection as it was."""
        async with self._database() as db, db.transaction() as conn:
            found = await vault_rows.find_connection(conn, user_id, UPSTREAM)
            assert found is not None
            await vault_rows.save_connection(conn, replace(found, expires_at=system_clock() - 1))
        return found

    async def connection(self, user_id: str) -> vault_rows.Connection | None:
        async with self._database() as db, db.connect() as conn:
            return await vault_rows.find_connection(conn, user_id, UPSTREAM)

    async def connect_request(self, elicitation_id: str) -> vault_rows.ConnectRequest | None:
        async with self._database() as db, db.connect() as conn:
            return await vault_rows.find_request(conn, elicitation_id, system_clock())

    @asynccontextmanager
    async def db_session(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection to bastion's database (in a transaction with ``write``)."""
        async with self._database() as db:
            if write:
                async with db.transaction() as conn:
                    yield conn
            else:
                async with db.connect() as conn:
                    yield conn

    @asynccontextmanager
    async def _database(self) -> AsyncIterator[Database]:
        db = self.db()
        try:
            yield db
        finally:
            await db.dispose()

    def open_token(self, connection: vault_rows.Connection, kind: str = "access") -> str:
        sealed = (
            connection.access_token_encrypted
            if kind == "access"
            else connection.refresh_token_encrypted
        )
        assert sealed is not None
        bound_to = connection_binding(connection.user_id, UPSTREAM, kind)
        return cipher_for(self.settings).decrypt(sealed, bound_to=bound_to).decode()

    async def revoke_upstream(self, token: str, hint: str = "access_token") -> None:
        """Revoke ``token`` at the provider (RFC 7009), as bastion's client there."""
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                self.op.revocation_endpoint,
                data={"token": token, "token_type_hint": hint, "client_id": "bastion"},
            )
        assert response.status_code == 200, response.text

    async def post(self, token: str, body: Any, **headers: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(
                self.url,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT, **headers},
            )


def elicitation_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The one URL elicitation of a -32042 error answer."""
    error = answer["error"]
    assert error["code"] == -32042, answer
    [elicitation] = error["data"]["elicitations"]
    return dict(elicitation)


def elicitation_id_in(url: str) -> str:
    [found] = parse_qs(urlsplit(url).query)["elicitation"]
    return found


@asynccontextmanager
async def vault_stack(
    make_settings: Callable[..., Settings],
    *,
    access_ttl: int = 3600,
    oauth: dict[str, Any] | None = None,
) -> AsyncIterator[VaultStack]:
    """Start every piece (see the module docstring); upstream access tokens live
    ``access_ttl`` seconds; ``oauth`` overrides the upstream's ``[oauth]`` settings."""
    as_port, gateway_port, upstream_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
    clients = [
        public_client("bastion", redirect_uris=[f"{issuer}/connect/callback"]),
        confidential_client(INTROSPECTOR),
    ]
    async with oidc_provider(
        resources=[resource(upstream_url, UPSTREAM_SCOPE, format="opaque")],
        clients=clients,
        refresh_tokens="always",
        ttl={"AccessToken": access_ttl},
    ) as op:
        settings = make_settings(
            issuer=issuer,
            resources=[
                ResourceSettings(uri=f"{gateway}/mcp/{UPSTREAM}", name=UPSTREAM, scopes=[SCOPE])
            ],
            gateway={
                "enabled": True,
                "public_url": gateway,
                "upstreams": [
                    {
                        "name": UPSTREAM,
                        "path": f"/mcp/{UPSTREAM}",
                        "url": upstream_url,
                        "scopes": [SCOPE],
                        "policy": {"default": [SCOPE]},
                        "auth": "oauth",
                        "oauth": {
                            "registration": "pre-registered",
                            "client_id": "bastion",
                            "allow_private_addresses": True,
                            **(oauth or {}),
                        },
                    }
                ],
            },
        )
        async with (
            protected_upstream(op, upstream_url) as upstream,
            serve(upstream.app, port=upstream_port),
            serve(create_app(settings), port=as_port),
            serve(create_gateway_app(settings), port=gateway_port),
        ):
            async with httpx.AsyncClient(base_url=issuer, timeout=10) as http:
                registered = await register(http)
            yield VaultStack(
                issuer=issuer,
                gateway=gateway,
                settings=settings,
                op=op,
                upstream_url=upstream_url,
                upstream=upstream,
                public_client_id=registered["client_id"],
            )


__all__ = [
    "ACCEPT",
    "INIT",
    "SCOPE",
    "UPSTREAM",
    "VaultStack",
    "elicitation_id_in",
    "elicitation_of",
    "protected_upstream",
    "vault_stack",
]
