"""Linked upstream accounts and pending upstream sign-ins (federation)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store.schema import federation_states, linked_accounts, users


async def save_state(conn: AsyncConnection, **row: Any) -> None:
    """Remember a sign-in sent to an upstream provider (keyed by the hash of its state)."""
    await conn.execute(sa.insert(federation_states).values(**row))


async def consume_state(
    conn: AsyncConnection, state_hash: str, provider: str, now: int
) -> sa.Row[Any] | None:
    """Delete a live pending sign-in of ``provider`` and return it, atomically: a callback is
    accepted once."""
    q = (
        sa.delete(federation_states)
        .where(
            federation_states.c.state_hash == state_hash,
            federation_states.c.provider == provider,
            federation_states.c.expires_at > now,
        )
        .returning(*federation_states.c)
    )
    return (await conn.execute(q)).first()


async def purge_expired_states(conn: AsyncConnection, now: int) -> None:
    """Forget pending sign-ins whose callback never came."""
    await conn.execute(sa.delete(federation_states).where(federation_states.c.expires_at <= now))


async def find_link(conn: AsyncConnection, issuer: str, subject: str) -> sa.Row[Any] | None:
    """The linked account of an upstream (issuer, subject), if any."""
    q = sa.select(linked_accounts).where(
        linked_accounts.c.issuer == issuer, linked_accounts.c.subject == subject
    )
    return (await conn.execute(q)).first()


async def links_of(conn: AsyncConnection, user_id: str) -> list[sa.Row[Any]]:
    """Every upstream account linked to a user."""
    q = sa.select(linked_accounts).where(linked_accounts.c.user_id == user_id)
    return list(await conn.execute(q))


async def add_link(conn: AsyncConnection, **row: Any) -> None:
    """Link an upstream account to a user (fails on an existing issuer and subject)."""
    await conn.execute(sa.insert(linked_accounts).values(**row))


async def touch_link(
    conn: AsyncConnection,
    issuer: str,
    subject: str,
    now: int,
    refresh_token_encrypted: str | None,
) -> None:
    """Record a sign-in; replace the kept refresh token when a new one is given."""
    values: dict[str, Any] = {"last_login_at": now}
    if refresh_token_encrypted is not None:
        values["refresh_token_encrypted"] = refresh_token_encrypted
    await conn.execute(
        sa.update(linked_accounts)
        .where(linked_accounts.c.issuer == issuer, linked_accounts.c.subject == subject)
        .values(**values)
    )


async def update_profile(
    conn: AsyncConnection, user_id: str, *, email: str | None, name: str | None, groups: list[str]
) -> None:
    """Refresh a linked user's e-mail, name and groups from the upstream provider."""
    await conn.execute(
        sa.update(users).where(users.c.id == user_id).values(email=email, name=name, groups=groups)
    )


__all__ = [
    "add_link",
    "consume_state",
    "find_link",
    "links_of",
    "purge_expired_states",
    "save_state",
    "touch_link",
    "update_profile",
]
