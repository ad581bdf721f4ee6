"""Local users, browser sessions and remembered consents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store.schema import consents, login_failures, sessions, users


@dataclass(frozen=True)
class User:
    """A person who can log in to the authorization server."""

    id: str
    username: str
    password_hash: str | None
    email: str | None = None
    name: str | None = None
    groups: list[str] = field(default_factory=list)
    is_admin: bool = False
    disabled: bool = False
    created_at: int = 0


def _user(row: sa.Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        email=row.email,
        name=row.name,
        groups=list(row.groups or []),
        is_admin=bool(row.is_admin),
        disabled=bool(row.disabled),
        created_at=row.created_at,
    )


async def insert(conn: AsyncConnection, user: User) -> None:
    """Store a new user."""
    await conn.execute(
        sa.insert(users).values(
            id=user.id,
            username=user.username,
            password_hash=user.password_hash,
            email=user.email,
            name=user.name,
            groups=user.groups,
            is_admin=user.is_admin,
            disabled=user.disabled,
            created_at=user.created_at,
        )
    )


async def by_username(conn: AsyncConnection, username: str) -> User | None:
    """The user with this user name, or None."""
    row = (await conn.execute(sa.select(users).where(users.c.username == username))).first()
    return _user(row) if row else None


async def by_id(conn: AsyncConnection, user_id: str) -> User | None:
    """The user with this id, or None."""
    row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
    return _user(row) if row else None


async def list_all(conn: AsyncConnection) -> list[User]:
    """All users by user name."""
    return [_user(r) for r in await conn.execute(sa.select(users).order_by(users.c.username))]


async def set_password(conn: AsyncConnection, username: str, password_hash: str) -> bool:
    """Replace a user's password hash; True if the user exists."""
    result = await conn.execute(
        sa.update(users).where(users.c.username == username).values(password_hash=password_hash)
    )
    return bool(result.rowcount)


async def set_disabled(conn: AsyncConnection, user_id: str, disabled: bool) -> None:
    """Disable or enable a user."""
    await conn.execute(sa.update(users).where(users.c.id == user_id).values(disabled=disabled))


async def set_admin(conn: AsyncConnection, user_id: str, is_admin: bool) -> None:
    """Make a user an administrator of bastion, or no longer one."""
    await conn.execute(sa.update(users).where(users.c.id == user_id).values(is_admin=is_admin))


async def set_groups(conn: AsyncConnection, user_id: str, groups: list[str]) -> None:
    """Replace a user's groups."""
    await conn.execute(sa.update(users).where(users.c.id == user_id).values(groups=groups))


async def end_sessions_of(conn: AsyncConnection, user_id: str) -> int:
    """End every browser session of a user; how many there were."""
    result = await conn.execute(sa.delete(sessions).where(sessions.c.user_id == user_id))
    return result.rowcount or 0


async def end_other_sessions(conn: AsyncConnection, user_id: str, keep_hash: str) -> int:
    """End every browser session of a user but the one whose id hashes to ``keep_hash``; how
    many ended."""
    result = await conn.execute(
        sa.delete(sessions).where(sessions.c.user_id == user_id, sessions.c.id_hash != keep_hash)
    )
    return result.rowcount or 0


async def delete(conn: AsyncConnection, username: str) -> bool:
    """Remove a user (sessions and consents go with it); True if the user existed."""
    user = await by_username(conn, username)
    if user is None:
        return False
    await conn.execute(sa.delete(sessions).where(sessions.c.user_id == user.id))
    await conn.execute(sa.delete(consents).where(consents.c.user_id == user.id))
    await conn.execute(sa.delete(users).where(users.c.id == user.id))
    return True


async def create_session(
    conn: AsyncConnection, id_hash: str, user_id: str, now: int, expires_at: int
) -> None:
    """Start a browser session (the cookie holds the id; the database only its hash)."""
    await conn.execute(
        sa.insert(sessions).values(
            id_hash=id_hash, user_id=user_id, created_at=now, expires_at=expires_at
        )
    )


async def session_user(conn: AsyncConnection, id_hash: str, now: int) -> User | None:
    """The user of a live session, or None."""
    q = (
        sa.select(users)
        .join(sessions, sessions.c.user_id == users.c.id)
        .where(
            sessions.c.id_hash == id_hash, sessions.c.expires_at > now, users.c.disabled.is_(False)
        )
    )
    row = (await conn.execute(q)).first()
    return _user(row) if row else None


async def session_of(conn: AsyncConnection, id_hash: str, now: int) -> tuple[User, int] | None:
    """The user of a live session and when they signed in to start it, or None."""
    q = (
        sa.select(users, sessions.c.created_at.label("signed_in_at"))
        .join(sessions, sessions.c.user_id == users.c.id)
        .where(
            sessions.c.id_hash == id_hash, sessions.c.expires_at > now, users.c.disabled.is_(False)
        )
    )
    row = (await conn.execute(q)).first()
    return (_user(row), int(row.signed_in_at)) if row else None


async def end_session(conn: AsyncConnection, id_hash: str) -> None:
    """Log out."""
    await conn.execute(sa.delete(sessions).where(sessions.c.id_hash == id_hash))


async def consented_scope(
    conn: AsyncConnection, user_id: str, client_id: str, resource: str, *, since: int = 0
) -> set[str] | None:
    """The scopes a user granted to a client for a resource after ``since``; None if never
    asked (or asked before ``since``: consents expire, ``login.consent_ttl``)."""
    q = sa.select(consents.c.scope).where(
        consents.c.user_id == user_id,
        consents.c.client_id == client_id,
        consents.c.resource == resource,
        consents.c.granted_at > since,
    )
    row = (await conn.execute(q)).first()
    return set(row.scope.split()) if row else None


async def remember_consent(
    conn: AsyncConnection,
    user_id: str,
    client_id: str,
    resource: str,
    scope: set[str],
    now: int,
    *,
    since: int = 0,
) -> None:
    """Record (the union of) what a user granted to a client for a resource (with what they
    granted after ``since``, the consents that have not expired)."""
    known = await consented_scope(conn, user_id, client_id, resource, since=since) or set()
    merged = " ".join(sorted(known | scope))
    where = (
        (consents.c.user_id == user_id)
        & (consents.c.client_id == client_id)
        & (consents.c.resource == resource)
    )
    await conn.execute(sa.delete(consents).where(where))
    await conn.execute(
        sa.insert(consents).values(
            user_id=user_id, client_id=client_id, resource=resource, scope=merged, granted_at=now
        )
    )


@dataclass(frozen=True)
class Consent:
    """A remembered consent: what ``username`` allowed ``client_id`` for ``resource``, and
    when."""

    user_id: str
    username: str
    client_id: str
    resource: str
    scope: str
    granted_at: int


async def list_consents(
    conn: AsyncConnection, *, user_id: str | None = None, client_id: str | None = None
) -> list[Consent]:
    """The remembered consents (of one user, of one client, or all), newest first."""
    q = (
        sa.select(consents, users.c.username)
        .join(users, users.c.id == consents.c.user_id)
        .order_by(consents.c.granted_at.desc(), users.c.username)
    )
    if user_id is not None:
        q = q.where(consents.c.user_id == user_id)
    if client_id is not None:
        q = q.where(consents.c.client_id == client_id)
    return [
        Consent(r.user_id, r.username, r.client_id, r.resource, r.scope, int(r.granted_at))
        for r in await conn.execute(q)
    ]


async def forget_consent(
    conn: AsyncConnection, user_id: str, client_id: str, resource: str
) -> str | None:
    """Delete a remembered consent, so that the person is asked again; the scope it held, or
    None when there was none."""
    where = (
        (consents.c.user_id == user_id)
        & (consents.c.client_id == client_id)
        & (consents.c.resource == resource)
    )
    row = (await conn.execute(sa.select(consents.c.scope).where(where))).first()
    if row is None:
        return None
    await conn.execute(sa.delete(consents).where(where))
    return str(row.scope)


async def forget_consents(conn: AsyncConnection, user_id: str, client_id: str) -> list[str]:
    """Forget what a user allowed a client (it asks again next time); the resources it was
    for."""
    q = (
        sa.delete(consents)
        .where(consents.c.user_id == user_id, consents.c.client_id == client_id)
        .returning(consents.c.resource)
    )
    return sorted(r.resource for r in await conn.execute(q))


async def failures(conn: AsyncConnection, key: str, window_start: int) -> tuple[int, int]:
    """Failed log-ins recorded for ``key`` in a window begun after ``window_start``, and when
    that window began ((0, 0) when none)."""
    q = sa.select(login_failures.c.failures, login_failures.c.window_start).where(
        login_failures.c.key == key, login_failures.c.window_start > window_start
    )
    row = (await conn.execute(q)).first()
    return (int(row.failures), int(row.window_start)) if row else (0, 0)


async def lock_failures(conn: AsyncConnection, key: str) -> tuple[int, int]:
    """The count and time of ``key``'s row (made with 0 failures if missing), locked until the
    transaction ends so that concurrent attempts take turns (PostgreSQL: SELECT ... FOR UPDATE;
    SQLite: the insert takes the database's write lock first)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(login_failures).values(key=key, failures=0, window_start=0)
    await conn.execute(insert.on_conflict_do_nothing(index_elements=["key"]))
    q = sa.select(login_failures).where(login_failures.c.key == key).with_for_update()
    row = (await conn.execute(q)).one()
    return int(row.failures), int(row.window_start)


async def set_failures(conn: AsyncConnection, key: str, failures: int, at: int) -> None:
    """Store ``key``'s failure count and the time of the last one."""
    await conn.execute(
        sa.update(login_failures)
        .where(login_failures.c.key == key)
        .values(failures=failures, window_start=at)
    )


async def record_failure(conn: AsyncConnection, key: str, now: int, window: int) -> None:
    """Count one failed log-in for ``key``, starting a new window when the old one is over."""
    row = (await conn.execute(sa.select(login_failures).where(login_failures.c.key == key))).first()
    if row is None:
        await conn.execute(sa.insert(login_failures).values(key=key, failures=1, window_start=now))
    elif row.window_start <= now - window:
        await conn.execute(
            sa.update(login_failures)
            .where(login_failures.c.key == key)
            .values(failures=1, window_start=now)
        )
    else:
        await conn.execute(
            sa.update(login_failures)
            .where(login_failures.c.key == key)
            .values(failures=login_failures.c.failures + 1)
        )


async def clear_failures(conn: AsyncConnection, *keys: str) -> None:
    """Forget failed log-ins after a success."""
    await conn.execute(sa.delete(login_failures).where(login_failures.c.key.in_(keys)))


__all__ = [
    "Consent",
    "User",
    "by_id",
    "by_username",
    "clear_failures",
    "consented_scope",
    "create_session",
    "delete",
    "end_other_sessions",
    "end_session",
    "end_sessions_of",
    "failures",
    "forget_consent",
    "forget_consents",
    "insert",
    "list_all",
    "list_consents",
    "lock_failures",
    "record_failure",
    "remember_consent",
    "session_of",
    "session_user",
    "set_admin",
    "set_disabled",
    "set_failures",
    "set_groups",
    "set_password",
]
