"""Local users: the first identity provider, and the seam later providers plug into."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.clock import Clock, system_clock
from bastion.identity.passwords import hash_password, verify_password
from bastion.store import auth_audit, grants
from bastion.store import upstream_connections as upstream_rows
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.database import Database
from bastion.store.upstream_connections import Connection
from bastion.store.users import User

# The reason of the grant_revoked records of grants a person revoked themselves.
OWNER_REVOKED = "revoked by the person who allowed it"


class IdentityProvider(Protocol):
    """Something that turns credentials into a :class:`User`."""

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user these credentials prove, or None."""
        ...


@dataclass(frozen=True)
class Removed:
    """A person just removed, and the upstream connections deleted with them."""

    user: User
    connections: list[Connection]


class UserExistsError(Exception):
    """A user with that name already exists."""


class LastAdministratorError(Exception):
    """The change would leave bastion with no administrator; nothing was changed."""

    def __init__(self) -> None:
        super().__init__("bastion would have no administrator left")


def administers(user: User, admin_groups: Iterable[str]) -> bool:
    """Whether ``user`` is an administrator of bastion: made one, or in one of
    ``admin_groups`` (``console.admin_groups``), and not disabled."""
    return not user.disabled and (user.is_admin or bool(set(user.groups) & set(admin_groups)))


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
            detail = {"username": username, "groups": user.groups, "is_admin": is_admin}
            await self._changed(conn, Event.USER_ADDED, user.id, detail)
        return user

    async def set_password(self, username: str, password: str) -> bool:
        """Change a password, ending the user's browser sessions and revoking every grant they
        gave (whoever knew the old password holds nothing any more); False if there is no
        such user."""
        async with self.db.transaction() as conn:
            user = await user_rows.by_username(conn, username)
            if user is None:
                return False
            await user_rows.set_password(conn, username, hash_password(password))
            await self._sign_out(conn, user, "password changed")
            await self._changed(conn, Event.USER_PASSWORD_SET, user.id, {"username": username})
            return True

    async def set_disabled(
        self, username: str, disabled: bool, *, admin_groups: Iterable[str] | None = None
    ) -> User | None:
        """Disable a user (sessions end, every grant is revoked, no sign-in until enabled) or
        enable them again; None if there is no such user. With ``admin_groups``, refuse
        (:class:`LastAdministratorError`) to disable the last administrator."""
        async with self.db.transaction() as conn:
            user = await user_rows.by_username(conn, username)
            if user is None:
                return None
            await user_rows.set_disabled(conn, user.id, disabled)
            await self._keep_an_administrator(conn, user, admin_groups)
            if disabled:
                await self._sign_out(conn, user, "user disabled")
            kind = Event.USER_DISABLED if disabled else Event.USER_ENABLED
            await self._changed(conn, kind, user.id, {"username": username})
            return replace(user, disabled=disabled)

    async def change_groups(
        self,
        username: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        admin_groups: Iterable[str] | None = None,
    ) -> User | None:
        """Add and remove groups. Tokens carry the groups they were issued with, so removing
        one revokes the user's grants (their clients sign them in again and get tokens with the
        groups they have now). None if there is no such user. With ``admin_groups``, refuse
        (:class:`LastAdministratorError`) to take the last administrator out of them."""
        add, remove = list(add), list(remove)
        async with self.db.transaction() as conn:
            user = await user_rows.by_username(conn, username)
            if user is None:
                return None
            dropped = set(remove) & set(user.groups)
            groups = sorted((set(user.groups) | set(add)) - set(remove))
            await user_rows.set_groups(conn, user.id, groups)
            await self._keep_an_administrator(conn, user, admin_groups)
            if dropped:
                now = self.clock()
                await grants.revoke_families_of(conn, user.id, now, "groups changed")
            detail = {"username": username, "added": sorted(set(add)), "removed": sorted(dropped)}
            await self._changed(conn, Event.USER_GROUPS_CHANGED, user.id, detail)
            return replace(user, groups=groups)

    async def end_sessions(self, username: str) -> int | None:
        """End every browser session of a user (they sign in again at their next authorization
        or console visit; their grants stay); how many ended, None if there is no such user."""
        async with self.db.transaction() as conn:
            user = await user_rows.by_username(conn, username)
            if user is None:
                return None
            ended = await user_rows.end_sessions_of(conn, user.id)
            detail = {"username": username, "sessions": ended}
            await self._changed(conn, Event.USER_SESSIONS_ENDED, user.id, detail)
            return ended

    async def set_admin(
        self, username: str, is_admin: bool, *, admin_groups: Iterable[str] | None = None
    ) -> User | None:
        """Make a user an administrator of bastion (its console) or no longer one; None if
        there is no such user. With ``admin_groups``, refuse (:class:`LastAdministratorError`)
        to unmake the last administrator."""
        async with self.db.transaction() as conn:
            user = await user_rows.by_username(conn, username)
            if user is None:
                return None
            await user_rows.set_admin(conn, user.id, is_admin)
            await self._keep_an_administrator(conn, user, admin_groups)
            detail = {"username": username, "is_admin": is_admin}
            await self._changed(conn, Event.USER_ADMIN_CHANGED, user.id, detail)
            return replace(user, is_admin=is_admin)

    async def _keep_an_administrator(
        self, conn: AsyncConnection, user: User, admin_groups: Iterable[str] | None
    ) -> None:
        """Raise :class:`LastAdministratorError` (undoing the transaction's change) when
        ``user`` was an administrator and, after the change, nobody is."""
        if admin_groups is None:
            return
        groups = list(admin_groups)
        if not administers(user, groups):
            return
        if not any(administers(u, groups) for u in await user_rows.list_all(conn)):
            raise LastAdministratorError

    async def end_other_sessions(self, user_id: str, keep_session_hash: str) -> int:
        """A person signs out everywhere else: every browser session of theirs ends but the
        one (by the hash of its id) they ask from; how many ended."""
        async with self.db.transaction() as conn:
            ended = await user_rows.end_other_sessions(conn, user_id, keep_session_hash)
            record = AuditRecord(
                Event.SESSIONS_ENDED,
                auth_audit.millis(self.clock()),
                subject=user_id,
                detail={"sessions": ended, "kept": "current"},
            )
            await auth_audit.add(conn, record)
            return ended

    async def revoke_application(self, user_id: str, client_id: str) -> tuple[int, list[str]]:
        """A person withdraws what they allowed a client: every live grant of theirs to it is
        revoked (its refresh and access tokens stop working) and their consents are forgotten,
        so that it asks again; how many grants ended and the resources of the forgotten
        consents. Another person's grants to the same client are untouched."""
        async with self.db.transaction() as conn:
            now = self.clock()
            ended = await grants.revoke_families_of(
                conn, user_id, now, OWNER_REVOKED, client_id=client_id
            )
            forgotten = await user_rows.forget_consents(conn, user_id, client_id)
            if ended or forgotten:
                record = AuditRecord(
                    Event.APPLICATION_REVOKED,
                    auth_audit.millis(now),
                    subject=user_id,
                    client_id=client_id,
                    detail={"by": "owner", "grants": ended, "resources": forgotten},
                )
                await auth_audit.add(conn, record)
            return ended, forgotten

    async def _changed(
        self, conn: AsyncConnection, event: Event, user_id: str, detail: Mapping[str, object]
    ) -> None:
        """Record an operator's change of a user (their id, and their name at the time)."""
        record = AuditRecord(
            event,
            auth_audit.millis(self.clock()),
            target_kind="user",
            target_id=user_id,
            detail=dict(detail),
        )
        await auth_audit.add(conn, record)

    async def _sign_out(self, conn: AsyncConnection, user: User, reason: str) -> None:
        await user_rows.end_sessions_of(conn, user.id)
        await grants.revoke_families_of(conn, user.id, self.clock(), reason)

    async def remove(self, username: str, *, admin_groups: Iterable[str] | None = None) -> bool:
        """:meth:`remove_person`; False if there is no such user. Their upstream connections
        are deleted but not revoked upstream: the CLI and the console remove people with
        :func:`bastion.vault.connections.remove_person`, which does both."""
        return await self.remove_person(username, admin_groups=admin_groups) is not None

    async def remove_person(
        self, username: str, *, admin_groups: Iterable[str] | None = None
    ) -> Removed | None:
        """Delete a user and revoke every grant they gave (refresh tokens stop working, access
        tokens are reported inactive), and delete their upstream connections (token vault),
        in one transaction; the user and those connections (tokens still encrypted, for the
        caller to revoke upstream), or None if there is no such user. With ``admin_groups``,
        refuse (:class:`LastAdministratorError`) to remove the last administrator."""
        async with self.db.transaction() as conn:
            user = await user_rows.by_username(conn, username)
            if user is None:
                return None
            await grants.revoke_families_of(conn, user.id, self.clock(), "user removed")
            gone = []
            for connection in await upstream_rows.connections(conn, user_id=user.id):
                deleted = await upstream_rows.delete_connection(conn, user.id, connection.upstream)
                if deleted is not None:
                    gone.append(deleted)
            detail: dict[str, object] = {"username": username}
            if gone:
                detail["upstream_connections"] = [c.upstream for c in gone]
            await self._changed(conn, Event.USER_REMOVED, user.id, detail)
            await user_rows.delete(conn, username)
            await self._keep_an_administrator(conn, user, admin_groups)
            return Removed(user, gone)

    async def list(self) -> list[User]:
        """All users."""
        async with self.db.connect() as conn:
            return await user_rows.list_all(conn)


__all__ = [
    "OWNER_REVOKED",
    "IdentityProvider",
    "LastAdministratorError",
    "LocalUsers",
    "Removed",
    "UserExistsError",
    "administers",
]
