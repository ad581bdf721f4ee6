"""Signing key rows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store.schema import signing_keys


async def live(conn: AsyncConnection, now: int) -> list[sa.Row[Any]]:
    """Keys that are published now: not yet retired (including pre-published ones)."""
    q = (
        sa.select(signing_keys)
        .where(sa.or_(signing_keys.c.retire_at.is_(None), signing_keys.c.retire_at > now))
        .order_by(signing_keys.c.activates_at)
    )
    return list((await conn.execute(q)).all())


async def insert(conn: AsyncConnection, **row: Any) -> None:
    """Store a new key."""
    await conn.execute(sa.insert(signing_keys).values(**row))


async def schedule_retirement(conn: AsyncConnection, retire_at: int, except_kid: str) -> None:
    """Give every key without a retirement time (but the new one) the time it leaves the JWKS."""
    await conn.execute(
        sa.update(signing_keys)
        .where(signing_keys.c.retire_at.is_(None), signing_keys.c.kid != except_kid)
        .values(retire_at=retire_at)
    )


async def purge(conn: AsyncConnection, now: int) -> None:
    """Delete keys whose retirement time has passed."""
    await conn.execute(sa.delete(signing_keys).where(signing_keys.c.retire_at <= now))


__all__ = ["insert", "live", "purge", "schedule_retirement"]
