"""Helpers shared by the token endpoint tests: a movable clock, clients, error assertions,
introspection, and direct looks at the grant tables."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx
import sqlalchemy as sa

from bastion.authserver import admin
from bastion.config import Settings
from bastion.store.database import Database
from bastion.store.schema import (
    authorization_codes,
    family_access_tokens,
    refresh_tokens,
    token_families,
)
from tests.support.flow import Authorized, authorize, exchange, register

RESOURCE = "http://localhost:9001/mcp"

# RFC 6749 §5.2 plus RFC 8707 §2 (invalid_target): every error the token endpoint may answer.
TOKEN_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
    }
)

GRANT_TABLES = {
    "authorization_codes": authorization_codes,
    "token_families": token_families,
    "refresh_tokens": refresh_tokens,
    "family_access_tokens": family_access_tokens,
}


class FakeClock:
    """A clock the test moves by hand (the ``Clock`` seam of ``create_app``)."""

    def __init__(self, start: int | None = None) -> None:
        self.now = int(time.time()) if start is None else start

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


def assert_no_store(response: httpx.Response) -> None:
    """RFC 6749 §5.1: token responses must not be cached."""
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """The response is the exact RFC 6749 §5.2 error: status, JSON body, error code, no-store."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    assert isinstance(body.get("error_description", ""), str)
    assert_no_store(response)
    return body


def basic(client_id: str, secret: str) -> str:
    """An RFC 6749 §2.3.1 Basic header: each part form-urlencoded, then base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Confidential:
    """A pre-registered confidential client and its secret."""

    client_id: str
    secret: str

    @property
    def authorization(self) -> dict[str, str]:
        return {"Authorization": basic(self.client_id, self.secret)}


async def confidential_client(
    settings: Settings,
    *,
    client_id: str | None = None,
    grant_types: list[str] | None = None,
    redirect_uris: list[str] | None = None,
    scope: str | None = None,
    auth_method: str = "client_secret_basic",
    introspects: list[str] | None = None,
) -> Confidential:
    """Pre-register a confidential client through the admin API (what the CLI does); a
    resource server gets the resources whose tokens it may introspect (``introspects``)."""
    made = await admin.add_client(
        settings,
        client_id=client_id,
        name="Confidential test client",
        redirect_uris=redirect_uris or [],
        confidential=True,
        grant_types=["client_credentials"] if grant_types is None else grant_types,
        scope=scope,
        auth_method=auth_method,
        resources=["*"] if grant_types is None or "client_credentials" in grant_types else [],
        introspects=introspects or [],
    )
    assert made.secret is not None
    return Confidential(made.client.client_id, made.secret)


async def introspect(client: httpx.AsyncClient, caller: Confidential, token: str) -> dict[str, Any]:
    """RFC 7662 introspection of ``token`` by a confidential client."""
    response = await client.post("/introspect", data={"token": token}, headers=caller.authorization)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(
    client: httpx.AsyncClient, client_id: str, token: str, **extra: str
) -> httpx.Response:
    """A refresh_token grant request of a public client."""
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await client.post("/token", data={**data, **extra})


@dataclass
class Grant:
    """A public client, an authorization and the token response it produced."""

    client_id: str
    authorized: Authorized
    tokens: dict[str, Any]


async def code_grant(
    client: httpx.AsyncClient,
    *,
    resource: str = RESOURCE,
    scope: str = "mcp:tools",
    username: str = "alice",
    **metadata: Any,
) -> Grant:
    """Register a public client, authorize as ``username`` (who must exist), redeem the code."""
    reg = await register(client, **metadata)
    done = await authorize(
        client, reg["client_id"], resource=resource, scope=scope, username=username
    )
    response = await exchange(client, reg["client_id"], done)
    assert response.status_code == 200, response.text
    return Grant(reg["client_id"], done, response.json())


async def row_counts(settings: Settings) -> dict[str, int]:
    """How many rows each grant table holds, read through a separate Database handle."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            counts: dict[str, int] = {}
            for name, table in GRANT_TABLES.items():
                query = sa.select(sa.func.count()).select_from(table)
                counts[name] = int((await conn.execute(query)).scalar_one())
            return counts
    finally:
        await db.dispose()


__all__ = [
    "GRANT_TABLES",
    "RESOURCE",
    "TOKEN_ERRORS",
    "Confidential",
    "FakeClock",
    "Grant",
    "assert_error",
    "assert_no_store",
    "basic",
    "code_grant",
    "confidential_client",
    "introspect",
    "refresh",
    "row_counts",
]
