"""Signing key rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store import rows
from bastion.store.schema import signing_keys


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A signing key: its public JWK, its private JWK encrypted, and when it signs (from
    ``activates_at`` until a newer key activates) and leaves the JWKS (``retire_at``)."""

    kid: str
    alg: str
    public_jwk: Mapping[str, object]
    private_jwk_encrypted: str
    created_at: int
    activates_at: int
    retire_at: int | None


async def live(conn: AsyncConnection, now: int) -> list[KeyRecord]:
    """Keys that are published now: not yet retired (including pre-published ones)."""
    q = (
        sa.select(signing_keys)
        .where(sa.or_(signing_keys.c.retire_at.is_(None), signing_keys.c.retire_at > now))
        .order_by(signing_keys.c.activates_at)
    )
    return rows.every(KeyRecord, await conn.execute(q))


async def insert(conn: AsyncConnection, key: KeyRecord) -> None:
    """Store a new key."""
    await conn.execute(sa.insert(signing_keys).values(**asdict(key)))


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


__all__ = ["KeyRecord", "insert", "live", "purge", "schedule_retirement"]
