"""The token vault's rows: each person's connection to an upstream with its own OAuth, bastion's
RFC 7591 registrations there, the URL elicitations sent, and upstream sign-ins in progress.

Token values arrive here encrypted (``*_encrypted``, :mod:`bastion.store.sealed` lists them);
this module never sees them in the clear.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store import rows
from bastion.store.schema import (
    upstream_clients,
    upstream_connect_requests,
    upstream_connect_states,
    upstream_connections,
)


@dataclass(frozen=True, slots=True)
class Connection:
    """A person's tokens at one upstream (encrypted), and where they were issued."""

    user_id: str
    upstream: str
    issuer: str
    client_id: str
    access_token_encrypted: str
    refresh_token_encrypted: str | None
    scope: str | None
    expires_at: int | None
    created_at: int
    refreshed_at: int | None = None
    refresh_lease_until: int | None = None


@dataclass(frozen=True, slots=True)
class UpstreamClient:
    """bastion's own RFC 7591 registration at an upstream's authorization server."""

    upstream: str
    issuer: str
    client_id: str
    client_secret_encrypted: str | None
    token_endpoint_auth_method: str
    redirect_uri: str
    registration_client_uri: str | None
    registration_access_token_encrypted: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """A URL elicitation the gateway sent: whose call needed the upstream sign-in."""

    id: str
    user_id: str
    upstream: str
    client_id: str | None
    created_at: int
    expires_at: int
    completed_at: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectState:
    """An upstream sign-in sent from the connect page, until its callback."""

    state_hash: str
    upstream: str
    user_id: str
    binding_hash: str
    request_id: str | None
    issuer: str
    client_id: str
    verifier_encrypted: str
    created_at: int
    expires_at: int


# -- connections ----------------------------------------------------------------------------------


def _where(user_id: str, upstream: str) -> list[sa.ColumnElement[bool]]:
    return [upstream_connections.c.user_id == user_id, upstream_connections.c.upstream == upstream]


async def save_connection(conn: AsyncConnection, connection: Connection) -> None:
    """Store ``connection``, replacing the person's earlier one at that upstream."""
    await conn.execute(
        sa.delete(upstream_connections).where(*_where(connection.user_id, connection.upstream))
    )
    await conn.execute(sa.insert(upstream_connections).values(**asdict(connection)))


async def find_connection(conn: AsyncConnection, user_id: str, upstream: str) -> Connection | None:
    """The person's connection to ``upstream``, if any."""
    q = sa.select(upstream_connections).where(*_where(user_id, upstream))
    return rows.first(Connection, await conn.execute(q))


async def connections(
    conn: AsyncConnection, *, user_id: str | None = None, upstream: str | None = None
) -> list[Connection]:
    """Connections, of one person and/or one upstream, by upstream then person."""
    q = sa.select(upstream_connections).order_by(
        upstream_connections.c.upstream, upstream_connections.c.user_id
    )
    if user_id is not None:
        q = q.where(upstream_connections.c.user_id == user_id)
    if upstream is not None:
        q = q.where(upstream_connections.c.upstream == upstream)
    return rows.every(Connection, await conn.execute(q))


async def delete_connection(
    conn: AsyncConnection, user_id: str, upstream: str
) -> Connection | None:
    """Remove the person's connection to ``upstream`` and return it (None: there was none)."""
    q = sa.delete(upstream_connections).where(*_where(user_id, upstream))
    return rows.first(Connection, await conn.execute(q.returning(*upstream_connections.c)))


async def take_refresh_lease(
    conn: AsyncConnection, user_id: str, upstream: str, now: int, until: int
) -> Connection | None:
    """Take the right to refresh the connection until ``until``, in one conditional update:
    the connection when this caller got it, None when another holds a live lease (or the
    connection is gone)."""
    free = sa.or_(
        upstream_connections.c.refresh_lease_until.is_(None),
        upstream_connections.c.refresh_lease_until <= now,
    )
    q = (
        sa.update(upstream_connections)
        .where(*_where(user_id, upstream), free)
        .values(refresh_lease_until=until)
        .returning(*upstream_connections.c)
    )
    return rows.first(Connection, await conn.execute(q))


async def store_refreshed(
    conn: AsyncConnection,
    user_id: str,
    upstream: str,
    *,
    access_token_encrypted: str,
    refresh_token_encrypted: str | None,
    scope: str | None,
    expires_at: int | None,
    now: int,
) -> None:
    """Store the tokens of a refresh and release the lease."""
    await conn.execute(
        sa.update(upstream_connections)
        .where(*_where(user_id, upstream))
        .values(
            access_token_encrypted=access_token_encrypted,
            refresh_token_encrypted=refresh_token_encrypted,
            scope=scope,
            expires_at=expires_at,
            refreshed_at=now,
            refresh_lease_until=None,
        )
    )


async def release_refresh_lease(conn: AsyncConnection, user_id: str, upstream: str) -> None:
    """Give the lease back without a new token (the refresh failed for a reason that may pass)."""
    await conn.execute(
        sa.update(upstream_connections)
        .where(*_where(user_id, upstream))
        .values(refresh_lease_until=None)
    )


# -- bastion's registrations upstream -------------------------------------------------------------


async def find_client(conn: AsyncConnection, upstream: str, issuer: str) -> UpstreamClient | None:
    """bastion's RFC 7591 registration at ``issuer`` for ``upstream``, if made."""
    q = sa.select(upstream_clients).where(
        upstream_clients.c.upstream == upstream, upstream_clients.c.issuer == issuer
    )
    return rows.first(UpstreamClient, await conn.execute(q))


async def save_client(conn: AsyncConnection, client: UpstreamClient) -> None:
    """Remember a registration (replacing one for the same upstream and issuer)."""
    await conn.execute(
        sa.delete(upstream_clients).where(
            upstream_clients.c.upstream == client.upstream,
            upstream_clients.c.issuer == client.issuer,
        )
    )
    await conn.execute(sa.insert(upstream_clients).values(**asdict(client)))


async def add_client(conn: AsyncConnection, client: UpstreamClient) -> bool:
    """Remember a first registration unless one for the same upstream and issuer exists:
    True when stored, False when another process stored one first (then use that one)."""
    try:
        async with conn.begin_nested():
            await conn.execute(sa.insert(upstream_clients).values(**asdict(client)))
    except IntegrityError:
        return False
    return True


async def delete_client(conn: AsyncConnection, upstream: str, issuer: str) -> None:
    """Forget a registration (the upstream no longer knows it)."""
    await conn.execute(
        sa.delete(upstream_clients).where(
            upstream_clients.c.upstream == upstream, upstream_clients.c.issuer == issuer
        )
    )


# -- URL elicitations and sign-ins in progress ----------------------------------------------------


async def save_request(conn: AsyncConnection, request: ConnectRequest) -> None:
    """Remember a URL elicitation sent to a person's client."""
    await conn.execute(sa.insert(upstream_connect_requests).values(**asdict(request)))


async def find_request(conn: AsyncConnection, request_id: str, now: int) -> ConnectRequest | None:
    """A live (unexpired) URL elicitation by id."""
    q = sa.select(upstream_connect_requests).where(
        upstream_connect_requests.c.id == request_id,
        upstream_connect_requests.c.expires_at > now,
    )
    return rows.first(ConnectRequest, await conn.execute(q))


async def live_request(
    conn: AsyncConnection, user_id: str, upstream: str, client_id: str | None, until: int
) -> ConnectRequest | None:
    """The newest uncompleted URL elicitation of this person, upstream and client that is still
    valid at ``until``, if any."""
    t = upstream_connect_requests
    q = (
        sa.select(t)
        .where(
            t.c.user_id == user_id,
            t.c.upstream == upstream,
            t.c.client_id.is_(None) if client_id is None else t.c.client_id == client_id,
            t.c.completed_at.is_(None),
            t.c.expires_at > until,
        )
        .order_by(t.c.expires_at.desc())
        .limit(1)
    )
    return rows.first(ConnectRequest, await conn.execute(q))


async def complete_request(conn: AsyncConnection, request_id: str, now: int) -> None:
    """Mark a URL elicitation done (the person connected)."""
    await conn.execute(
        sa.update(upstream_connect_requests)
        .where(upstream_connect_requests.c.id == request_id)
        .values(completed_at=now)
    )


async def save_state(conn: AsyncConnection, state: ConnectState) -> None:
    """Remember an upstream sign-in sent from the connect page (keyed by its state's hash)."""
    await conn.execute(sa.insert(upstream_connect_states).values(**asdict(state)))


async def consume_state(conn: AsyncConnection, state_hash: str, now: int) -> ConnectState | None:
    """Delete a live sign-in in progress and return it, atomically: a callback is accepted
    once."""
    q = (
        sa.delete(upstream_connect_states)
        .where(
            upstream_connect_states.c.state_hash == state_hash,
            upstream_connect_states.c.expires_at > now,
        )
        .returning(*upstream_connect_states.c)
    )
    return rows.first(ConnectState, await conn.execute(q))


async def purge_expired(conn: AsyncConnection, now: int) -> None:
    """Forget elicitations and sign-ins whose time is over (housekeeping)."""
    await conn.execute(
        sa.delete(upstream_connect_states).where(upstream_connect_states.c.expires_at <= now)
    )
    await conn.execute(
        sa.delete(upstream_connect_requests).where(upstream_connect_requests.c.expires_at <= now)
    )


__all__ = [
    "ConnectRequest",
    "ConnectState",
    "Connection",
    "UpstreamClient",
    "add_client",
    "complete_request",
    "connections",
    "consume_state",
    "delete_client",
    "delete_connection",
    "find_client",
    "find_connection",
    "find_request",
    "live_request",
    "purge_expired",
    "release_refresh_lease",
    "save_client",
    "save_connection",
    "save_request",
    "save_state",
    "store_refreshed",
    "take_refresh_lease",
]
