"""Linking an upstream account to a local user, creating the user on the first sign-in.

Accounts are linked by the upstream issuer and subject only. A first sign-in creates a user
without a password (it cannot log in with the local form) named ``<provider>:<login>``; every
sign-in refreshes the user's e-mail, name and groups from the provider, which stays the source of
truth for them (the groups are what tokens and the registry's visibility rules see).
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.identity.claims import UpstreamIdentity
from bastion.identity.errors import AccountNotAllowed
from bastion.store import federation as rows
from bastion.store import grants
from bastion.store import users as user_rows
from bastion.store.database import Database
from bastion.store.federation import LinkedAccount
from bastion.store.users import User

MAX_USERNAME = 255


async def _free_username(conn: AsyncConnection, identity: UpstreamIdentity) -> str:
    readable = identity.username or identity.email or identity.subject
    for candidate in (
        f"{identity.provider}:{readable}",
        f"{identity.provider}:{identity.subject}",
        f"{identity.provider}:{identity.subject}#{secrets.token_hex(4)}",
    ):
        candidate = candidate[:MAX_USERNAME]
        if await user_rows.by_username(conn, candidate) is None:
            return candidate
    return f"{identity.provider}:{secrets.token_hex(16)}"


async def _link_once(
    db: Database, identity: UpstreamIdentity, now: int, refresh_token_encrypted: str | None
) -> User:
    groups = list(identity.groups)
    async with db.transaction() as conn:
        link = await rows.find_link(conn, identity.issuer, identity.subject)
        if link is not None:
            user = await user_rows.by_id(conn, link.user_id)
            if user is None:  # pragma: no cover - the foreign key cascades deletes
                raise AccountNotAllowed("This account no longer exists here.")
            if user.disabled:
                raise AccountNotAllowed(
                    "This account is disabled here. Ask the administrator.",
                    detail=f"user {user.username} ({user.id}) is disabled",
                )
            await rows.update_profile(
                conn, user.id, email=identity.email, name=identity.name, groups=groups
            )
            if set(user.groups) - set(groups):
                # Tokens carry the groups they were issued with: grants given while the person
                # was in a group the provider no longer reports end now.
                await grants.revoke_families_of(conn, user.id, now, "groups changed upstream")
            await rows.touch_link(
                conn, identity.issuer, identity.subject, now, refresh_token_encrypted
            )
            return replace(user, email=identity.email, name=identity.name, groups=groups)
        user = User(
            id=secrets.token_hex(16),
            username=await _free_username(conn, identity),
            password_hash=None,
            email=identity.email,
            name=identity.name,
            groups=groups,
            created_at=now,
        )
        await user_rows.insert(conn, user)
        await rows.add_link(
            conn,
            LinkedAccount(
                issuer=identity.issuer,
                subject=identity.subject,
                provider=identity.provider,
                user_id=user.id,
                refresh_token_encrypted=refresh_token_encrypted,
                created_at=now,
                last_login_at=now,
            ),
        )
        return user


async def link_account(
    db: Database,
    identity: UpstreamIdentity,
    *,
    now: int,
    refresh_token_encrypted: str | None = None,
) -> User:
    """The local user of an upstream account: linked before, or created now."""
    try:
        return await _link_once(db, identity, now, refresh_token_encrypted)
    except IntegrityError:
        # Two first sign-ins of the same account raced; the other one created the link.
        return await _link_once(db, identity, now, refresh_token_encrypted)


__all__ = ["link_account"]
