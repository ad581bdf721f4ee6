"""The authorization server's audit trail: who did what, recorded where it happens, read back
by ``bastion audit`` (docs/audit.md).

Records are written by :mod:`bastion.store.auth_audit` inside the transaction of the change
they describe; this module binds each request's context (:func:`audited`), names the operator of
a CLI change (:func:`cli_actor`), reads the trail page by page (:func:`export`) and keeps it to
``audit.retention_days`` (:func:`purge_old`).

Issuing a client_credentials token is not recorded: it writes nothing to the database (a
machine client's tokens cost no transaction), and what decides them is recorded instead: the
client's creation with its grant id, which every one of its tokens carries as ``grant_id``, its
access rules, secret rotations and removal.
"""

from __future__ import annotations

import functools
import getpass
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from bastion.authserver.context import server
from bastion.config import Settings
from bastion.store import auth_audit
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Context, Filters
from bastion.store.database import Database
from bastion.store.schema import linked_accounts

REQUEST_ID = "bastion.request_id"
PAGE = 500
# Records deleted per statement and per sweep: a sweep never holds the table for long, and a
# backlog (retention shortened) is worked off over the following sweeps.
PURGE_BATCH = 1000
PURGE_BATCHES = 50

Endpoint = Callable[[Request], Awaitable[Response]]
Answer = TypeVar("Answer")


def audited(
    endpoint: Callable[[Request], Awaitable[Answer]],
) -> Callable[[Request], Awaitable[Answer]]:
    """Run ``endpoint`` with its request's audit context: the request id the request-id
    middleware put in the scope (if any), and whether the trail is on."""

    @functools.wraps(endpoint)
    async def bound(request: Request) -> Answer:
        request_id = request.scope.get(REQUEST_ID)
        context = Context(
            request_id=request_id if isinstance(request_id, str) else None,
            enabled=server(request).settings.audit.enabled,
        )
        with auth_audit.bind(context):
            return await endpoint(request)

    return bound


def cli_actor() -> str:
    """Who made a change from the command line: ``cli:`` and the operating-system user."""
    try:
        name = getpass.getuser()
    except Exception:  # no user name in the environment nor in the password database
        name = "unknown"
    return f"cli:{name}"


def rfc3339(millis: int) -> str:
    """An RFC 3339 UTC time with milliseconds, like 2026-12-06T12:00:00.123Z."""
    at = datetime.fromtimestamp(millis / 1000, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def address_of(request: Request) -> str | None:
    """The client address as the server sees it (after trusted proxies)."""
    return request.client.host if request.client else None


async def user_ids(conn: AsyncConnection, username: str) -> list[str] | None:
    """The user id behind a local user name, or None when no user has that name."""
    user = await user_rows.by_username(conn, username)
    return None if user is None else [user.id]


async def user_names(conn: AsyncConnection, ids: set[str]) -> dict[str, str]:
    """The user names of user ids (a linked account's provider when it has no local name)."""
    import sqlalchemy as sa

    from bastion.store.schema import users

    if not ids:
        return {}
    found = await conn.execute(sa.select(users.c.id, users.c.username).where(users.c.id.in_(ids)))
    names = {row.id: row.username for row in found}
    linked = await conn.execute(
        sa.select(linked_accounts.c.user_id, linked_accounts.c.provider).where(
            linked_accounts.c.user_id.in_(ids)
        )
    )
    for row in linked:
        names.setdefault(row.user_id, f"({row.provider} account)")
    return names


def line_of(record: AuditRecord, names: dict[str, str]) -> dict[str, object]:
    """The JSON-lines form of a record, with the user names of the ids it holds."""
    return {
        "id": record.id,
        "time": rfc3339(record.at),
        "type": record.type,
        "outcome": record.outcome,
        "sub": record.subject,
        "user": names.get(record.subject or ""),
        "client_id": record.client_id,
        "method": record.method,
        "provider": record.provider,
        "address": record.address,
        "grant_id": record.grant_id,
        "actor": record.actor,
        "target": (
            {
                "kind": record.target_kind,
                "id": record.target_id,
                "name": names.get(record.target_id or ""),
            }
            if record.target_kind
            else None
        ),
        "detail": record.detail,
        "request_id": record.request_id,
    }


async def export(
    db: Database, filters: Filters, *, newest: int | None = None
) -> AsyncIterator[dict[str, object]]:
    """The matching records, oldest first, as JSON-lines objects, read a page at a time (never
    all at once); with ``newest``, only the last ``newest`` of them."""
    if newest is not None:
        async with db.connect() as conn:
            last = list(reversed(await auth_audit.page(conn, filters, before_id=0, limit=newest)))
            names = await user_names(conn, _ids(last))
        for record in last:
            yield line_of(record, names)
        return
    after: int | None = None
    while True:
        async with db.connect() as conn:
            found = await auth_audit.page(conn, filters, after_id=after, limit=PAGE)
            names = await user_names(conn, _ids(found))
        for record in found:
            yield line_of(record, names)
        if len(found) < PAGE:
            return
        after = found[-1].id


def _ids(records: list[AuditRecord]) -> set[str]:
    return {i for r in records for i in (r.subject, r.target_id) if i}


async def purge_old(db: Database, settings: Settings, now: int) -> int:
    """Delete the records older than ``audit.retention_days`` (none when 0), in batches of
    :data:`PURGE_BATCH`, at most :data:`PURGE_BATCHES` per call; how many were deleted."""
    days = settings.audit.retention_days
    if not days:
        return 0
    before = (now - days * 86400) * 1000
    removed = 0
    for _ in range(PURGE_BATCHES):
        async with db.transaction() as conn:
            done = await auth_audit.purge(conn, before, limit=PURGE_BATCH)
        removed += done
        if done < PURGE_BATCH:
            break
    return removed


__all__ = [
    "PAGE",
    "PURGE_BATCH",
    "PURGE_BATCHES",
    "REQUEST_ID",
    "address_of",
    "audited",
    "cli_actor",
    "export",
    "line_of",
    "purge_old",
    "rfc3339",
    "user_ids",
    "user_names",
]
