"""The system under test: a database, bastion's settings, clients and prepared grants.

PostgreSQL is used when reachable (``BASTION_BENCH_POSTGRES_URL``, default the local test
server), each run in a fresh schema dropped at the end; otherwise SQLite in a temporary
directory. Clients, codes and refresh tokens are written straight into the database before a
measurement, so that preparing them is not measured and every request gets a fresh one.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.authserver.admin import add_client
from bastion.authserver.admin import database as open_database
from bastion.config import Settings
from bastion.identity.local import LocalUsers
from bastion.oauth import pkce
from bastion.store.database import Database
from bastion.store.schema import authorization_codes, refresh_tokens, token_families
from bastion.tokens import secrets as opaque

POSTGRES_URL = os.environ.get(
    "BASTION_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SCOPE = "mcp:tools"
REDIRECT_URI = "http://127.0.0.1:53682/callback"
SECRET_KEY = "benchmark-secret-key-" + "x" * 32


def postgres_reachable(url: str = POSTGRES_URL) -> bool:
    """Whether something listens where the PostgreSQL URL points."""
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            return True
    except OSError:
        return False


async def postgres_version(url: str = POSTGRES_URL) -> str:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(sa.text("SHOW server_version"))).scalar())
    finally:
        await engine.dispose()


@dataclass
class Credentials:
    """A client made for the run."""

    client_id: str
    secret: str | None

    def basic(self) -> str:
        raw = f"{quote(self.client_id, safe='')}:{quote(self.secret or '', safe='')}"
        return "Basic " + base64.b64encode(raw.encode()).decode()


@dataclass
class Stack:
    """Ports, settings and clients shared by the suites of one run."""

    database: str  # "postgresql" or "sqlite"
    database_settings: dict[str, str]
    data_dir: Path
    as_port: int
    resource_port: int
    gateway_port: int
    upstream_port: int
    clients: dict[str, Credentials] = field(default_factory=dict)
    verifier: str = field(default_factory=pkce.new_verifier)
    # The resource owner of the refresh and code pools: a real user, as a refresh checks
    # that the user still exists.
    user_id: str = ""

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.as_port}"

    @property
    def resource(self) -> str:
        """The protected endpoint of the verification benchmark (and the issuance audience)."""
        return f"http://127.0.0.1:{self.resource_port}/mcp"

    @property
    def gateway_resource(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/mcp"

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    def settings(self, **extra: Any) -> dict[str, Any]:
        """bastion's settings for the AS and the gateway of this run."""
        values: dict[str, Any] = {
            "issuer": self.issuer,
            "data_dir": str(self.data_dir),
            "secret_key": SECRET_KEY,
            "resources": [{"uri": self.resource, "name": "bench", "scopes": [SCOPE]}],
            "tokens": {"code_ttl": 600},
            "gateway": {
                "public_url": f"http://127.0.0.1:{self.gateway_port}",
                "upstreams": [
                    {
                        "name": "echo",
                        "path": "/mcp",
                        "url": f"{self.upstream_url}/mcp",
                        "scopes": [SCOPE],
                    }
                ],
            },
            **self.database_settings,
        }
        values.update(extra)
        return values

    def model(self) -> Settings:
        return Settings(**self.settings())

    def db(self) -> Database:
        settings = self.model()
        return Database(settings.effective_database_url, schema=settings.database_schema)

    # -- prepared requests ------------------------------------------------------------------

    def client_credentials_body(self, resource: str | None = None) -> str:
        return urlencode(
            {
                "grant_type": "client_credentials",
                "resource": resource or self.resource,
                "scope": SCOPE,
            }
        )

    async def refresh_pool(self, count: int) -> list[str]:
        """``count`` fresh refresh tokens of the ``refresh`` client, each in its own family."""
        now = int(time.time())
        client = self.clients["refresh"].client_id
        tokens = [opaque.new_token() for _ in range(count)]
        families = [secrets.token_hex(16) for _ in range(count)]
        db = self.db()
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    sa.insert(token_families),
                    [
                        {
                            "id": family,
                            "client_id": client,
                            "subject": self.user_id,
                            "scope": SCOPE,
                            "resource": self.resource,
                            "created_at": now,
                            "expires_at": now + 86400,
                            "revoked_at": None,
                            "revoked_reason": None,
                        }
                        for family in families
                    ],
                )
                await conn.execute(
                    sa.insert(refresh_tokens),
                    [
                        {
                            "token_hash": opaque.digest(token),
                            "family_id": family,
                            "issued_at": now,
                            "used_at": None,
                        }
                        for token, family in zip(tokens, families, strict=True)
                    ],
                )
        finally:
            await db.dispose()
        return tokens

    async def code_pool(self, count: int) -> list[str]:
        """``count`` fresh authorization codes of the public ``native`` client (PKCE with
        ``self.verifier``), as /interaction/.../consent would have stored them."""
        now = int(time.time())
        client = self.clients["native"].client_id
        codes = [opaque.new_token() for _ in range(count)]
        challenge = pkce.s256(self.verifier)
        db = self.db()
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    sa.insert(authorization_codes),
                    [
                        {
                            "code_hash": opaque.digest(code),
                            "client_id": client,
                            "subject": self.user_id,
                            "redirect_uri": REDIRECT_URI,
                            "redirect_uri_sent": True,
                            "scope": SCOPE,
                            "resource": self.resource,
                            "code_challenge": challenge,
                            "family_id": secrets.token_hex(16),
                            "auth_time": now,
                            "expires_at": now + 600,
                            "consumed_at": None,
                        }
                        for code in codes
                    ],
                )
        finally:
            await db.dispose()
        return codes


@contextlib.asynccontextmanager
async def stack(*, use_postgres: bool, ports: dict[str, int]) -> AsyncIterator[Stack]:
    """A migrated database with the run's clients; dropped afterwards."""
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        if use_postgres:
            database = {"database_url": POSTGRES_URL, "database_schema": schema}
        else:
            database = {"database_url": f"sqlite+aiosqlite:///{Path(tmp) / 'bastion.db'}"}
        run = Stack(
            database="postgresql" if use_postgres else "sqlite",
            database_settings=database,
            data_dir=Path(tmp) / "data",
            as_port=ports["as_port"],
            resource_port=ports["resource_port"],
            gateway_port=ports["gateway_port"],
            upstream_port=ports["upstream_port"],
        )
        try:
            settings = run.model()
            service = await add_client(
                settings,
                client_id="bench-service",
                name="benchmark service",
                redirect_uris=[],
                confidential=True,
                grant_types=["client_credentials"],
                resources=["*"],
                scope=SCOPE,
            )
            refresh = await add_client(
                settings,
                client_id="bench-refresh",
                name="benchmark refresh",
                redirect_uris=[REDIRECT_URI],
                confidential=True,
                grant_types=["authorization_code", "refresh_token"],
                scope=SCOPE,
            )
            native = await add_client(
                settings,
                client_id="bench-native",
                name="benchmark native app",
                redirect_uris=[REDIRECT_URI],
                confidential=False,
                grant_types=["authorization_code", "refresh_token"],
                scope=SCOPE,
            )
            async with open_database(settings) as db:
                user = await LocalUsers(db).add("bench", secrets.token_urlsafe(16))
            run.user_id = user.id
            run.clients = {
                "service": Credentials(service.client.client_id, service.secret),
                "refresh": Credentials(refresh.client.client_id, refresh.secret),
                "native": Credentials(native.client.client_id, None),
            }
            yield run
        finally:
            if use_postgres:
                engine = create_async_engine(POSTGRES_URL)
                async with engine.begin() as conn:
                    await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                await engine.dispose()


__all__ = ["POSTGRES_URL", "SCOPE", "Credentials", "Stack", "postgres_reachable", "stack"]
