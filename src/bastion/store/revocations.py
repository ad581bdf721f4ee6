"""Revocations that resource servers must know: grants (a refresh family, a machine client's
grant id) and single access tokens (jti), each kept until the last access token it covers has
expired.

Rows are only ever added (and purged once expired), with ids that are never reused, so a process
follows the table by id. On PostgreSQL each new row is also announced with NOTIFY on
``bastion_revocations`` when its transaction commits (payload: schema, id, kind, value,
expires_at, revoked_at), so that listening processes learn of it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store.schema import revocations

CHANNEL = "bastion_revocations"
Kind = Literal["grant", "token"]


@dataclass(frozen=True)
class Revocation:
    """One revoked grant or token, relevant until ``expires_at``, revoked at ``revoked_at``."""

    id: int
    kind: str
    value: str
    expires_at: int
    revoked_at: int = 0


def _row(row: sa.Row[Any]) -> Revocation:
    return Revocation(row.id, row.kind, row.value, row.expires_at, row.revoked_at)


async def record(
    conn: AsyncConnection,
    kind: Kind,
    value: str,
    *,
    now: int,
    expires_at: int,
    reason: str | None = None,
) -> None:
    """Record a revocation (nothing when everything it covers has already expired)."""
    if expires_at <= now:
        return
    result = await conn.execute(
        sa.insert(revocations)
        .values(
            kind=kind,
            value=value,
            revoked_at=now,
            expires_at=expires_at,
            reason=(reason or "")[:255] or None,
        )
        .returning(revocations.c.id)
    )
    new_id = result.scalar_one()
    if conn.dialect.name == "postgresql":
        fields = {
            "id": new_id,
            "kind": kind,
            "value": value,
            "expires_at": expires_at,
            "revoked_at": now,
        }
        arguments: list[Any] = ["schema", sa.func.current_schema()]
        for name, field in fields.items():
            kind_of = sa.BigInteger() if isinstance(field, int) else sa.Text()
            arguments += [name, sa.cast(sa.literal(field), kind_of)]
        payload = sa.func.json_build_object(*arguments)
        await conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload.cast(sa.Text))))


async def live(conn: AsyncConnection, now: int) -> list[Revocation]:
    """Every revocation that still covers a live token, by id."""
    q = sa.select(revocations).where(revocations.c.expires_at > now).order_by(revocations.c.id)
    return [_row(r) for r in await conn.execute(q)]


async def after(conn: AsyncConnection, last_id: int, now: int) -> list[Revocation]:
    """Revocations recorded after id ``last_id`` (still relevant), by id."""
    q = (
        sa.select(revocations)
        .where(revocations.c.id > last_id, revocations.c.expires_at > now)
        .order_by(revocations.c.id)
    )
    return [_row(r) for r in await conn.execute(q)]


async def last_id(conn: AsyncConnection) -> int:
    """The id of the newest revocation (0 when there is none)."""
    found = (await conn.execute(sa.select(sa.func.max(revocations.c.id)))).scalar()
    return int(found or 0)


async def purge(conn: AsyncConnection, now: int) -> None:
    """Delete revocations whose tokens have all expired."""
    await conn.execute(sa.delete(revocations).where(revocations.c.expires_at <= now))


__all__ = ["CHANNEL", "Kind", "Revocation", "after", "last_id", "live", "purge", "record"]
