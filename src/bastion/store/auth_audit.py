"""The authorization server's audit trail (table ``auth_audit``): what happened, to whom, by
whom; never a secret.

A record is written in the transaction of the change it describes (a grant created, rotated or
revoked, a consent, a registration, an operator's change), so that a change without its record
and a record without its change are both impossible, at the price of one more INSERT and no
extra commit. The request id and whether the trail is on come from :data:`CONTEXT`, which the
authorization server's endpoints set for the request they serve (:func:`bind`); code running
outside a request (the CLI, housekeeping) writes with no request id.

Records hold ids (user ids, client ids, grant ids), never the values of tokens, codes, client
secrets, passwords or registration access tokens; ``detail`` is a small JSON object of names and
reasons, cut to :data:`DETAIL_MAX` characters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store import rows
from bastion.store.schema import auth_audit

DETAIL_MAX = 2000


class Event(StrEnum):
    """The closed vocabulary of ``auth_audit.type``; ``admin.*`` are operators' changes."""

    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    CONSENT_GIVEN = "consent_given"
    CONSENT_DENIED = "consent_denied"
    APPLICATION_REVOKED = "application_revoked"
    GRANT_CREATED = "grant_created"
    GRANT_REFRESHED = "grant_refreshed"
    GRANT_REVOKED = "grant_revoked"
    TOKEN_REVOKED = "token_revoked"
    TOKEN_EXCHANGED = "token_exchanged"
    WORKLOAD_TOKEN_ISSUED = "workload_token_issued"
    SESSIONS_ENDED = "sessions_ended"
    UPSTREAM_DISCONNECTED = "upstream_disconnected"
    CLIENT_REGISTERED = "client_registered"
    CLIENT_UPDATED = "client_updated"
    CLIENT_DELETED = "client_deleted"
    CLIENT_ADDED = "admin.client_added"
    CLIENT_CHANGED = "admin.client_updated"
    CLIENT_REMOVED = "admin.client_removed"
    CLIENT_SECRET_ROTATED = "admin.client_secret_rotated"
    USER_ADDED = "admin.user_added"
    USER_REMOVED = "admin.user_removed"
    USER_PASSWORD_SET = "admin.user_password_set"
    USER_DISABLED = "admin.user_disabled"
    USER_ENABLED = "admin.user_enabled"
    USER_GROUPS_CHANGED = "admin.user_groups_changed"
    USER_SESSIONS_ENDED = "admin.user_sessions_ended"
    USER_ADMIN_CHANGED = "admin.user_admin_changed"
    ACCESS_ALLOWED = "admin.access_allowed"
    ACCESS_REMOVED = "admin.access_removed"
    GRANTS_REVOKED = "admin.grants_revoked"
    CONSENT_WITHDRAWN = "admin.consent_withdrawn"
    UPSTREAM_CONNECTION_REVOKED = "admin.upstream_disconnected"
    KEYS_ROTATED = "admin.keys_rotated"
    SECRETS_REKEYED = "admin.secrets_rekeyed"
    REGISTRATION_TOKEN_ADDED = "admin.registration_token_added"
    REGISTRATION_TOKEN_REMOVED = "admin.registration_token_removed"
    REGISTRY_ENTRY_APPROVED = "admin.registry_entry_approved"
    REGISTRY_ENTRY_STATUS_CHANGED = "admin.registry_entry_status_changed"
    REGISTRY_ENTRY_GROUPS_CHANGED = "admin.registry_entry_groups_changed"
    UPSTREAM_CONNECTED = "upstream_connected"
    UPSTREAM_CONNECT_FAILED = "upstream_connect_failed"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of ``auth_audit`` (``id`` is None until stored; ``at`` in milliseconds)."""

    type: str
    at: int
    outcome: str = "ok"
    subject: str | None = None
    client_id: str | None = None
    method: str | None = None
    provider: str | None = None
    address: str | None = None
    grant_id: str | None = None
    actor: str | None = None
    target_kind: str | None = None
    target_id: str | None = None
    detail: dict[str, object] | None = None
    request_id: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What the request being served says about its records."""

    request_id: str | None = None
    enabled: bool = True
    # Who makes the changes (an operator: "cli:<os user>"), for records that name no actor.
    actor: str | None = None


# Outside a request: records are written, with no request id and no actor of their own.
_OUTSIDE = Context()
CONTEXT: ContextVar[Context] = ContextVar("bastion.auth_audit", default=_OUTSIDE)


@contextmanager
def bind(context: Context) -> Iterator[None]:
    """Records written inside carry ``context`` (set per request by the authorization server)."""
    token = CONTEXT.set(context)
    try:
        yield
    finally:
        CONTEXT.reset(token)


def millis(now: int) -> int:
    """``now`` (Unix seconds, from the injected clock) in milliseconds: the wall clock's when
    the two agree, else ``now`` itself (a test's clock), so records sort with the clock used."""
    wall = time.time_ns() // 1_000_000
    return wall if abs(wall // 1000 - now) <= 1 else now * 1000


def bounded(detail: dict[str, object] | None) -> dict[str, object] | None:
    """``detail`` as stored: unchanged when its JSON is short, else a marker with a prefix."""
    if not detail:
        return None
    text = json.dumps(detail, sort_keys=True, default=str)
    if len(text) <= DETAIL_MAX:
        return detail
    return {"truncated": text[: DETAIL_MAX - 100]}


def cut(value: str | None, limit: int) -> str | None:
    """A column value no longer than its column."""
    return None if value is None else value[:limit]


_INSERT = sa.insert(auth_audit)
_COLUMNS = [f.name for f in fields(AuditRecord) if f.name != "id"]


def _row(record: AuditRecord, context: Context) -> dict[str, object]:
    row = {name: getattr(record, name) for name in _COLUMNS}
    row["detail"] = bounded(record.detail)
    row["request_id"] = cut(record.request_id or context.request_id, 128)
    row["actor"] = cut(record.actor or context.actor, 255)
    row["client_id"] = cut(record.client_id, 2048)
    row["target_id"] = cut(record.target_id, 2048)
    row["address"] = cut(record.address, 64)
    return row


async def add(conn: AsyncConnection, *records: AuditRecord) -> None:
    """Store ``records`` in the caller's transaction (nothing when the trail is off)."""
    context = CONTEXT.get()
    if not context.enabled or not records:
        return
    # One record (the usual case) as one execute: a list of one would take the slower
    # executemany path of the driver.
    if len(records) == 1:
        await conn.execute(_INSERT, _row(records[0], context))
    else:
        await conn.execute(_INSERT, [_row(record, context) for record in records])


_AUDIT_VALUES = {c: sa.bindparam(f"a_{c}", type_=auth_audit.c[c].type) for c in _COLUMNS}


def with_audit(statement: sa.Insert) -> sa.Insert:
    """``statement`` with one audit record in front of it as a data-modifying WITH
    (PostgreSQL), the record's values as the parameters ``a_<column>``. Build it once (at
    import): SQLAlchemy then reuses its cache key, where building it for each token request
    cost the token endpoint about 5 % of its rate."""
    return statement.add_cte(sa.insert(auth_audit).values(_AUDIT_VALUES).cte("audit"))


def audit_after(source: sa.CTE) -> sa.CTE:
    """A data-modifying WITH (PostgreSQL) that stores one audit record, parameters
    ``a_<column>`` as for :func:`with_audit`, once for each row of ``source``: a statement
    whose change may find nothing to change writes the record only when it changed
    something. Build it once (at import)."""
    values = sa.select(*(_AUDIT_VALUES[c] for c in _COLUMNS)).select_from(source)
    return sa.insert(auth_audit).from_select(_COLUMNS, values).cte(f"audit_{source.name}")


def audit_params(record: AuditRecord) -> dict[str, object] | None:
    """The ``a_<column>`` parameters of ``record`` for :func:`with_audit` and
    :func:`audit_after`; None when the trail is off for this request."""
    context = CONTEXT.get()
    if not context.enabled:
        return None
    return {f"a_{k}": v for k, v in _row(record, context).items()}


async def execute_with(
    conn: AsyncConnection,
    statement: sa.Insert,
    audited: sa.Insert,
    params: dict[str, object],
    *records: AuditRecord,
) -> None:
    """Execute ``statement`` with ``params`` and store ``records``. On PostgreSQL one record
    goes in the same statement (``audited``, made by :func:`with_audit` from ``statement``),
    so that the token endpoint's transactions make no extra round trip for it; otherwise in a
    statement of its own."""
    if len(records) == 1 and conn.dialect.name == "postgresql":
        audit = audit_params(records[0])
        if audit is not None:
            await conn.execute(audited, {**params, **audit})
            return
    await conn.execute(statement, params)
    await add(conn, *records)


@dataclass(frozen=True, slots=True)
class Filters:
    """Which records a query returns: all of the given conditions hold."""

    subjects: Sequence[str] | None = None
    client_id: str | None = None
    # Exact types, or prefixes written as "admin.*".
    types: Sequence[str] = ()
    since: int | None = None  # milliseconds
    until: int | None = None  # milliseconds, excluded


def _where(query: sa.Select[tuple[object, ...]], filters: Filters) -> sa.Select[tuple[object, ...]]:
    c = auth_audit.c
    if filters.subjects is not None:
        query = query.where(
            sa.or_(c.subject.in_(filters.subjects), c.target_id.in_(filters.subjects))
        )
    if filters.client_id is not None:
        query = query.where(c.client_id == filters.client_id)
    if filters.types:
        exact = [t for t in filters.types if not t.endswith("*")]
        prefixes = [t[:-1] for t in filters.types if t.endswith("*")]
        conditions: list[sa.ColumnElement[bool]] = [c.type.in_(exact)] if exact else []
        conditions += [c.type.startswith(p, autoescape=True) for p in prefixes]
        query = query.where(sa.or_(*conditions))
    if filters.since is not None:
        query = query.where(c.at >= filters.since)
    if filters.until is not None:
        query = query.where(c.at < filters.until)
    return query


async def page(
    conn: AsyncConnection,
    filters: Filters,
    *,
    after_id: int | None = None,
    before_id: int | None = None,
    limit: int,
) -> list[AuditRecord]:
    """Up to ``limit`` records matching ``filters``: the oldest after ``after_id``, or (with
    ``before_id``, which may be 0 for "the newest") the newest before it, newest first."""
    query = _where(sa.select(auth_audit), filters).limit(limit)
    if before_id is not None:
        if before_id:
            query = query.where(auth_audit.c.id < before_id)
        query = query.order_by(auth_audit.c.id.desc())
    else:
        if after_id is not None:
            query = query.where(auth_audit.c.id > after_id)
        query = query.order_by(auth_audit.c.id)
    return rows.every(AuditRecord, await conn.execute(query))


async def purge(conn: AsyncConnection, before: int, *, limit: int) -> int:
    """Delete up to ``limit`` of the oldest records made before ``before`` (milliseconds); how
    many were deleted."""
    oldest = (
        sa.select(auth_audit.c.id)
        .where(auth_audit.c.at < before)
        .order_by(auth_audit.c.id)
        .limit(limit)
    )
    ids = [row.id for row in await conn.execute(oldest)]
    if ids:
        await conn.execute(sa.delete(auth_audit).where(auth_audit.c.id.in_(ids)))
    return len(ids)


__all__ = [
    "CONTEXT",
    "DETAIL_MAX",
    "AuditRecord",
    "Context",
    "Event",
    "Filters",
    "add",
    "audit_after",
    "audit_params",
    "bind",
    "bounded",
    "cut",
    "execute_with",
    "millis",
    "page",
    "purge",
    "with_audit",
]
