"""Linked upstream accounts and pending upstream sign-ins (federation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store import rows
from bastion.store.schema import federation_states, linked_accounts, users


@dataclass(frozen=True, slots=True)
class SignInState:
    """A sign-in sent to an upstream provider, until its callback: the state (by hash), the
    browser it is bound to (hash of a cookie), the pending authorization request it continues
    or (a console sign-in, ``request_id`` None) the console page it returns to, the nonce and
    the encrypted PKCE verifier. ``reauthenticate``: the provider was asked to authenticate the
    person anew (a console sign-in before a destructive action)."""

    state_hash: str
    provider: str
    request_id: str | None
    binding_hash: str
    nonce: str
    verifier_encrypted: str
    created_at: int
    expires_at: int
    return_to: str | None = None
    reauthenticate: bool = False


@dataclass(frozen=True, slots=True)
class LinkedAccount:
    """An upstream account (issuer, subject) linked to a local user."""

    issuer: str
    subject: str
    provider: str
    user_id: str
    created_at: int
    last_login_at: int
    # The upstream refresh token, encrypted, when the provider gave one.
    refresh_token_encrypted: str | None = None


async def save_state(conn: AsyncConnection, state: SignInState) -> None:
    """Remember a sign-in sent to an upstream provider (keyed by the hash of its state)."""
    await conn.execute(sa.insert(federation_states).values(**asdict(state)))


async def consume_state(
    conn: AsyncConnection, state_hash: str, provider: str, now: int
) -> SignInState | None:
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
    return rows.first(SignInState, await conn.execute(q))


async def purge_expired_states(conn: AsyncConnection, now: int) -> None:
    """Forget pending sign-ins whose callback never came."""
    await conn.execute(sa.delete(federation_states).where(federation_states.c.expires_at <= now))


async def find_link(conn: AsyncConnection, issuer: str, subject: str) -> LinkedAccount | None:
    """The linked account of an upstream (issuer, subject), if any."""
    q = sa.select(linked_accounts).where(
        linked_accounts.c.issuer == issuer, linked_accounts.c.subject == subject
    )
    return rows.first(LinkedAccount, await conn.execute(q))


async def links_of(conn: AsyncConnection, user_id: str) -> list[LinkedAccount]:
    """Every upstream account linked to a user."""
    q = sa.select(linked_accounts).where(linked_accounts.c.user_id == user_id)
    return rows.every(LinkedAccount, await conn.execute(q))


async def add_link(conn: AsyncConnection, link: LinkedAccount) -> None:
    """Link an upstream account to a user (fails on an existing issuer and subject)."""
    await conn.execute(sa.insert(linked_accounts).values(**asdict(link)))


async def touch_link(
    conn: AsyncConnection,
    issuer: str,
    subject: str,
    now: int,
    refresh_token_encrypted: str | None,
) -> None:
    """Record a sign-in; replace the kept refresh token when a new one is given."""
    values: dict[str, int | str] = {"last_login_at": now}
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
    "LinkedAccount",
    "SignInState",
    "add_link",
    "consume_state",
    "find_link",
    "links_of",
    "purge_expired_states",
    "save_state",
    "touch_link",
    "update_profile",
]
