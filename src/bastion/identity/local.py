"""Local users: the first identity provider, and the seam later providers plug into."""

from __future__ import annotations

import secrets
from typing import Protocol

from bastion.clock import Clock, system_clock
from bastion.identity.passwords import hash_password, verify_password
from bastion.store import grants
from bastion.store import users as user_rows
from bastion.store.database import Database
from bastion.store.users import User


class IdentityProvider(Protocol):
    """Something that turns credentials into a :class:`User`."""

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user these credentials prove, or None."""
        ...


class UserExistsError(Exception):
    """A user with that name already exists."""


class LocalUsers:
    """Users stored in bastion's database with argon2 password hashes."""

    def __init__(self, db: Database, clock: Clock = system_clock) -> None:
        self.db = db
        self.clock = clock

    async def authenticate(self, username: str, password: str) -> User | None:
        """Check a user name and password; None if either is wrong or the user is disabled."""
        async with self.db.connect() as conn:
            user = await user_rows.by_username(conn, username)
        ok = verify_password(user.password_hash if user else None, password)
        if not ok or user is None or user.disabled:
            return None
        return user

    async def add(
        self,
        username: str,
        password: str,
        *,
        email: str | None = None,
        name: str | None = None,
        groups: list[str] | None = None,
        is_admin: bool = False,
    ) -> User:
        """Create a user; raise UserExistsError if the name is taken."""
        user = User(
            id=secrets.token_hex(16),
            username=username,
            password_hash=hash_password(password),
            email=email,
            name=name,
            groups=groups or [],
            is_admin=is_admin,
            created_at=self.clock(),
        )
        async with self.db.transaction() as conn:
            if await user_rows.by_username(conn, username) is not None:
                raise UserExistsError(f"user {username!r} already exists")
            await user_rows.insert(conn, user)
        return user

    async def set_password(self, username: str, password: str) -> bool:
        """Change a password; False if there is no such user."""
        async with self.db.transaction() as conn:
            return await user_rows.set_password(conn, username, hash_password(password))

    async def remove(self, username: str) -> bool:
        """Delete a user and revoke every grant they gave (refresh tokens stop working, access
        tokens are reported inactive); False if there is no such user."""
        async with self.db.transaction() as conn:
            user = await user_rows.by_username(conn, username)
            if user is None:
                return False
            await grants.revoke_families_of(conn, user.id, self.clock(), "user removed")
            return await user_rows.delete(conn, username)

    async def list(self) -> list[User]:
        """All users."""
        async with self.db.connect() as conn:
            return await user_rows.list_all(conn)


__all__ = ["IdentityProvider", "LocalUsers", "UserExistsError"]
