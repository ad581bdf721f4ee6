"""Registry rows: servers, their published versions (entries), entry groups, and the audit trail.

Times are Unix milliseconds. Visibility is applied in SQL (:func:`visible`) so that pages hold
only what the caller may see and keyset pagination stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store.database import JsonText, serialize_json
from bastion.store.schema import (
    registry_audit,
    registry_entries,
    registry_entry_groups,
    registry_generation,
    registry_servers,
)

STATUSES = ("active", "deprecated", "deleted")


@dataclass(frozen=True)
class Entry:
    """One published version of a server."""

    name: str
    version: str
    description: str
    server: dict[str, Any]
    status: str
    status_message: str | None
    status_changed_at: int
    published_at: int
    updated_at: int
    is_latest: bool
    owner_subject: str
    owner_client_id: str | None
    groups: tuple[str, ...]
    approved: bool


@dataclass(frozen=True)
class Visibility:
    """Which entries a query may return: all (``everything``), or those owned by ``subject`` plus
    approved ones whose groups are empty or meet ``groups``."""

    everything: bool
    subject: str | None
    groups: frozenset[str]


@dataclass(frozen=True)
class ListQuery:
    """A page request: entries strictly after ``after`` in (name, version) order."""

    limit: int
    after: tuple[str, str] | None = None
    name: str | None = None
    search: str | None = None
    updated_since: int | None = None
    version: str | None = None
    latest_only: bool = False
    include_deleted: bool = False
    # Only approved (True) or only waiting for approval (False) entries; None: both.
    approved: bool | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One audited request."""

    at: int
    subject: str | None
    client_id: str | None
    action: str
    server_name: str | None
    version: str | None
    status: int
    result: str
    detail: dict[str, object] | None = field(default=None)
    id: int | None = None
    request_id: str | None = None
    # ``json.dumps(detail)`` when the writer has it already (an answer kept in memory), so
    # that it is not serialized again for every request.
    detail_json: str | None = field(default=None, compare=False, repr=False)


def _entry(row: sa.Row[Any]) -> Entry:
    return Entry(
        name=row.name,
        version=row.version,
        description=row.description,
        server=dict(row.server),
        status=row.status,
        status_message=row.status_message,
        status_changed_at=row.status_changed_at,
        published_at=row.published_at,
        updated_at=row.updated_at,
        is_latest=bool(row.is_latest),
        owner_subject=row.owner_subject,
        owner_client_id=row.owner_client_id,
        groups=tuple(row.groups or ()),
        approved=bool(row.approved),
    )


def visible(view: Visibility) -> sa.ColumnElement[bool]:
    """The SQL condition of entries ``view`` may see."""
    if view.everything:
        return sa.true()
    e = registry_entries.c
    g = registry_entry_groups.c
    no_groups = ~sa.exists().where(g.name == e.name, g.version == e.version)
    audience = no_groups
    if view.groups:
        shared = sa.exists().where(
            g.name == e.name, g.version == e.version, g.group_name.in_(sorted(view.groups))
        )
        audience = sa.or_(no_groups, shared)
    condition = sa.and_(e.approved.is_(True), audience)
    if view.subject is not None:
        condition = sa.or_(e.owner_subject == view.subject, condition)
    return condition


async def lock_server(conn: AsyncConnection, name: str, now: int) -> None:
    """Create the server row if needed and lock it until the transaction ends, so that changes
    to one server's versions run one after the other (PostgreSQL: SELECT ... FOR UPDATE; SQLite:
    the insert takes the database's write lock first)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(registry_servers).values(name=name, created_at=now)
    await conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
    await conn.execute(
        sa.select(registry_servers.c.name).where(registry_servers.c.name == name).with_for_update()
    )


async def insert_entry(conn: AsyncConnection, entry: Entry) -> None:
    """Store a new version (the server row must exist: :func:`lock_server`)."""
    await conn.execute(
        sa.insert(registry_entries).values(
            name=entry.name,
            version=entry.version,
            description=entry.description,
            server=entry.server,
            status=entry.status,
            status_message=entry.status_message,
            status_changed_at=entry.status_changed_at,
            published_at=entry.published_at,
            updated_at=entry.updated_at,
            is_latest=entry.is_latest,
            owner_subject=entry.owner_subject,
            owner_client_id=entry.owner_client_id,
            groups=list(entry.groups),
            approved=entry.approved,
        )
    )
    await _write_groups(conn, entry.name, entry.version, entry.groups)


async def _write_groups(
    conn: AsyncConnection, name: str, version: str, groups: Sequence[str]
) -> None:
    g = registry_entry_groups.c
    await conn.execute(sa.delete(registry_entry_groups).where(g.name == name, g.version == version))
    if groups:
        await conn.execute(
            sa.insert(registry_entry_groups),
            [{"name": name, "version": version, "group_name": group} for group in groups],
        )


async def get_entry(
    conn: AsyncConnection, name: str, version: str, view: Visibility | None = None
) -> Entry | None:
    """One version (None if absent or, with ``view``, not visible)."""
    e = registry_entries.c
    query = sa.select(registry_entries).where(e.name == name, e.version == version)
    if view is not None:
        query = query.where(visible(view))
    row = (await conn.execute(query)).first()
    return _entry(row) if row else None


async def versions_of(
    conn: AsyncConnection, name: str, view: Visibility | None = None
) -> list[Entry]:
    """Every version of a server (with ``view``: those visible), newest publication first."""
    e = registry_entries.c
    query = sa.select(registry_entries).where(e.name == name)
    if view is not None:
        query = query.where(visible(view))
    query = query.order_by(e.published_at.desc(), e.version.desc())
    return [_entry(r) for r in await conn.execute(query)]


async def names_owned_by(conn: AsyncConnection, owner_subject: str) -> list[str]:
    """The servers with a version stored for ``owner_subject`` by bastion itself (no client:
    never a token's publication), in name order."""
    e = registry_entries.c
    query = (
        sa.select(e.name)
        .where(e.owner_subject == owner_subject, e.owner_client_id.is_(None))
        .distinct()
        .order_by(e.name)
    )
    return [row.name for row in await conn.execute(query)]


def _contains(
    conn: AsyncConnection, column: sa.ColumnElement[str], term: str
) -> sa.ColumnElement[bool]:
    """``column`` contains ``term`` (already lower case), ignoring case. SQLite's LIKE ignores
    the case of ASCII letters only and its built-in lower() lowers ASCII letters only, so there
    lower() is left out: the same matches, without a copy of every string."""
    if conn.dialect.name == "sqlite":
        return column.contains(term, autoescape=True)
    return sa.func.lower(column).contains(term, autoescape=True)


async def list_entries(conn: AsyncConnection, query: ListQuery, view: Visibility) -> list[Entry]:
    """One page of entries in (name, version) order; at most ``query.limit`` rows.

    The keyset condition carries ``name >= :name`` so that both databases start the index scan
    at the cursor (with the OR alone, PostgreSQL reads the list from its start). Visibility
    comes last: SQLite evaluates the terms in the order written, and it runs a subquery.
    """
    e = registry_entries.c
    stmt = sa.select(registry_entries)
    if query.after is not None:
        name, version = query.after
        stmt = stmt.where(
            e.name >= name, sa.or_(e.name > name, sa.and_(e.name == name, e.version > version))
        )
    if query.name is not None:
        stmt = stmt.where(e.name == query.name)
    if query.search:
        term = query.search.lower()
        stmt = stmt.where(
            sa.or_(_contains(conn, e.name, term), _contains(conn, e.description, term))
        )
    if query.updated_since is not None:
        stmt = stmt.where(e.updated_at > query.updated_since)
    if query.latest_only:
        stmt = stmt.where(e.is_latest.is_(True))
    elif query.version is not None:
        stmt = stmt.where(e.version == query.version)
    if not query.include_deleted:
        stmt = stmt.where(e.status != "deleted")
    if query.approved is not None:
        stmt = stmt.where(e.approved.is_(query.approved))
    stmt = stmt.where(visible(view)).order_by(e.name, e.version).limit(query.limit)
    return [_entry(r) for r in await conn.execute(stmt)]


async def update_entry(conn: AsyncConnection, name: str, version: str, **values: Any) -> None:
    """Change columns of one version; ``groups`` also rewrites its group rows."""
    e = registry_entries.c
    if "groups" in values:
        groups = tuple(values["groups"])
        values["groups"] = list(groups)
        await _write_groups(conn, name, version, groups)
    await conn.execute(
        sa.update(registry_entries).where(e.name == name, e.version == version).values(**values)
    )


async def set_latest(conn: AsyncConnection, name: str, latest: str | None, now: int) -> None:
    """Make ``latest`` the only version of ``name`` with is_latest; versions whose flag changes
    get ``updated_at = now`` (so ``updated_since`` synchronisation sees the change)."""
    e = registry_entries.c
    is_it = e.version == latest if latest is not None else sa.false()
    await conn.execute(
        sa.update(registry_entries)
        .where(e.name == name, e.is_latest.is_(True), ~is_it)
        .values(is_latest=False, updated_at=now)
    )
    if latest is not None:
        await conn.execute(
            sa.update(registry_entries)
            .where(e.name == name, e.version == latest, e.is_latest.is_(False))
            .values(is_latest=True, updated_at=now)
        )


async def generation(conn: AsyncConnection) -> int | None:
    """The registry's generation: a number that changes with every write to the entries or
    their groups (triggers of migration 0012); None when its row is missing."""
    g = registry_generation.c
    value = (await conn.execute(sa.select(g.value).where(g.id == 1))).scalar()
    return None if value is None else int(value)


def _audit_row(record: AuditRecord) -> dict[str, Any]:
    return {
        "at": record.at,
        "subject": record.subject,
        "client_id": record.client_id,
        "action": record.action,
        "server_name": record.server_name,
        "version": record.version,
        "status": record.status,
        "result": record.result,
        "detail": record.detail if record.detail_json is None else JsonText(record.detail_json),
        "request_id": record.request_id,
    }


async def add_audit(conn: AsyncConnection, record: AuditRecord) -> None:
    """Append one audit record."""
    await conn.execute(sa.insert(registry_audit).values(**_audit_row(record)))


async def add_audits(conn: AsyncConnection, records: Sequence[AuditRecord]) -> None:
    """Append audit records in order, in one statement. On SQLite the statement goes to the
    driver as it is (two calls to its thread instead of four, and no statement compiled or
    parameters processed per record); the values are those SQLAlchemy would send (the detail
    as its JSON text, ``null`` for none), and the caller's transaction commits them."""
    if not records:
        return
    if conn.dialect.name == "sqlite":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection  # aiosqlite's connection
        assert driver is not None
        await driver.executemany(_SQLITE_AUDIT_INSERT, [_sqlite_audit_values(r) for r in records])
        return
    await conn.execute(sa.insert(registry_audit), [_audit_row(r) for r in records])


# The columns of _audit_row, in the order of the SQLite statement made from them.
_AUDIT_COLUMNS = (
    "at",
    "subject",
    "client_id",
    "action",
    "server_name",
    "version",
    "status",
    "result",
    "detail",
    "request_id",
)
_SQLITE_AUDIT_INSERT = str(
    sa.insert(registry_audit)
    .values({column: sa.bindparam(column) for column in _AUDIT_COLUMNS})
    .compile(dialect=sqlite.dialect())
)


def _sqlite_audit_values(r: AuditRecord) -> tuple[object, ...]:
    """The values of :data:`_SQLITE_AUDIT_INSERT` for ``r``, as SQLAlchemy's SQLite dialect
    binds them: the detail as its JSON text (``null`` for none: JSON's ``none_as_null`` is
    off)."""
    row = _audit_row(r)
    row["detail"] = r.detail_json if r.detail_json is not None else serialize_json(r.detail)
    return tuple(row[column] for column in _AUDIT_COLUMNS)


def _audit_record(r: sa.Row[Any]) -> AuditRecord:
    return AuditRecord(
        at=r.at,
        subject=r.subject,
        client_id=r.client_id,
        action=r.action,
        server_name=r.server_name,
        version=r.version,
        status=r.status,
        result=r.result,
        detail=r.detail,
        id=r.id,
        request_id=r.request_id,
    )


async def audit_records(
    conn: AsyncConnection,
    *,
    since: int | None = None,
    subject: str | None = None,
    after_id: int | None = None,
    limit: int = 1000,
) -> list[AuditRecord]:
    """Audit records in the order they were written, filtered; at most ``limit``."""
    a = registry_audit.c
    stmt = sa.select(registry_audit)
    if since is not None:
        stmt = stmt.where(a.at >= since)
    if subject is not None:
        stmt = stmt.where(a.subject == subject)
    if after_id is not None:
        stmt = stmt.where(a.id > after_id)
    stmt = stmt.order_by(a.id).limit(limit)
    return [_audit_record(r) for r in await conn.execute(stmt)]


async def recent_audit(
    conn: AsyncConnection,
    *,
    skip_actions: Sequence[str] = (),
    server_name: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditRecord]:
    """The newest audit records before ``before_id`` (all when None), newest first, leaving
    out the ``skip_actions`` (reads) and, with ``server_name``, other servers'."""
    a = registry_audit.c
    stmt = sa.select(registry_audit)
    if skip_actions:
        stmt = stmt.where(a.action.not_in(list(skip_actions)))
    if server_name is not None:
        stmt = stmt.where(a.server_name == server_name)
    if before_id is not None:
        stmt = stmt.where(a.id < before_id)
    stmt = stmt.order_by(a.id.desc()).limit(limit)
    return [_audit_record(r) for r in await conn.execute(stmt)]


__all__ = [
    "STATUSES",
    "AuditRecord",
    "Entry",
    "ListQuery",
    "Visibility",
    "add_audit",
    "add_audits",
    "audit_records",
    "generation",
    "get_entry",
    "insert_entry",
    "list_entries",
    "lock_server",
    "names_owned_by",
    "recent_audit",
    "set_latest",
    "update_entry",
    "versions_of",
]
