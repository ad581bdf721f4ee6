"""The counts behind the authorization server's quotas (:mod:`bastion.authserver.quotas`).

They live in the database, so that every process of a deployment enforces the same limits:

- Events in a sliding window (client registrations per hour, metadata document fetches per
  minute): a row each in ``quota_events``, by kind and requester (a digest of the client's
  address group). Rows that have left the window are deleted as new ones of their kind arrive.
- Pending authorization requests are rows of their own (``authorization_requests.requester``).

Counting and adding are exact across processes when done in one transaction after
:func:`serialize`: on PostgreSQL a transaction-scoped advisory lock per kind makes concurrent
admissions take turns; on SQLite the row is written before it is counted, which takes the
database's single write lock, so the count sees every other admitted row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store.schema import authorization_requests, quota_events


@dataclass(frozen=True)
class Usage:
    """Rows counted against a quota, in all and of one requester, and when the oldest of each
    stops counting (leaves the window, or expires)."""

    overall: int
    mine: int
    overall_until: int
    mine_until: int


async def serialize(conn: AsyncConnection, name: str) -> None:
    """Make admissions under ``name`` take turns until the transaction ends (PostgreSQL; on
    SQLite, writing the row first does it)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"quota {name}"}
        )


async def add_event(
    conn: AsyncConnection, kind: str, requester: str, now: int, window: int
) -> None:
    """Record one event, forgetting those of its kind older than ``window`` seconds."""
    await conn.execute(
        sa.delete(quota_events).where(
            quota_events.c.kind == kind, quota_events.c.at <= now - window
        )
    )
    await conn.execute(sa.insert(quota_events).values(kind=kind, requester=requester, at=now))


async def _usage(conn: AsyncConnection, query: Any, mine: Any) -> Usage:
    overall = (await conn.execute(query)).one()
    own = (await conn.execute(query.where(mine))).one()
    return Usage(int(overall[0]), int(own[0]), int(overall[1] or 0), int(own[1] or 0))


async def events(conn: AsyncConnection, kind: str, requester: str, now: int, window: int) -> Usage:
    """Events of ``kind`` in the last ``window`` seconds."""
    query = sa.select(sa.func.count(), sa.func.min(quota_events.c.at) + window).where(
        quota_events.c.kind == kind, quota_events.c.at > now - window
    )
    return await _usage(conn, query, quota_events.c.requester == requester)


async def pending_requests(conn: AsyncConnection, requester: str, now: int) -> Usage:
    """Authorization requests stored and not yet expired."""
    table = authorization_requests
    query = sa.select(sa.func.count(), sa.func.min(table.c.expires_at)).where(
        table.c.expires_at > now
    )
    return await _usage(conn, query, table.c.requester == requester)


async def purge(conn: AsyncConnection, now: int, longest_window: int) -> None:
    """Delete every event older than ``longest_window`` seconds (housekeeping)."""
    await conn.execute(sa.delete(quota_events).where(quota_events.c.at <= now - longest_window))


__all__ = ["Usage", "add_event", "events", "pending_requests", "purge", "serialize"]
