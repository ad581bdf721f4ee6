"""Hot statements compiled once and, on PostgreSQL, run through asyncpg directly.

SQLAlchemy's execution path (cache key, execution context, cursor adapter, result wrapper)
costs several times the round trip it wraps; the token endpoint's grants run a few statements
per request, always the same ones. A :class:`Prepared` holds a Core statement and its
PostgreSQL text, compiled at import: on a PostgreSQL connection in autocommit mode
(:meth:`bastion.store.database.Database.statements`) it goes to asyncpg (which keeps it
prepared per connection); anywhere else (SQLite, or inside a transaction SQLAlchemy manages)
through SQLAlchemy as usual, so that a transaction is never bypassed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


class Prepared:
    """One statement with named bound parameters, compiled once for PostgreSQL."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=_DIALECT)  # type: ignore[attr-defined]
        self.sql: str = compiled.string
        processors = compiled._bind_processors
        self.names: list[str] = list(compiled.positiontup or [])
        self.processors: list[Callable[[Any], Any] | None] = [
            processors.get(name) for name in self.names
        ]
        # Values given in the statement itself (literals SQLAlchemy binds as parameters).
        self.fixed = {name: compiled.binds[name].value for name in self.names}

    def _args(self, params: Mapping[str, object]) -> list[object]:
        args: list[object] = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = params[name] if name in params else self.fixed[name]
            args.append(value if process is None else process(value))
        return args

    async def first(
        self, conn: AsyncConnection, params: Mapping[str, object]
    ) -> Mapping[str, object] | None:
        """The first row (by column name), or None."""
        raw = _autocommit_asyncpg(conn)
        if raw is not None:
            row: Mapping[str, object] | None = await raw.fetchrow(self.sql, *self._args(params))
            return row
        found = (await conn.execute(self.statement, dict(params))).mappings().first()
        return None if found is None else dict(found)

    async def all(
        self, conn: AsyncConnection, params: Mapping[str, object]
    ) -> list[Mapping[str, object]]:
        """Every row (by column name)."""
        raw = _autocommit_asyncpg(conn)
        if raw is not None:
            rows: list[Mapping[str, object]] = await raw.fetch(self.sql, *self._args(params))
            return rows
        return [dict(row) for row in (await conn.execute(self.statement, dict(params))).mappings()]


def _autocommit_asyncpg(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn`` when each statement commits on its own there
    (no transaction for SQLAlchemy to begin first); else None."""
    if conn.dialect.name != "postgresql":
        return None
    fairy = conn.sync_connection.connection if conn.sync_connection else None
    if fairy is None or not getattr(fairy.dbapi_connection, "autocommit", False):
        return None
    return fairy.driver_connection


def on_autocommit_postgresql(conn: AsyncConnection) -> bool:
    """Whether ``conn`` is a PostgreSQL connection in autocommit mode, where one statement is
    one transaction."""
    return _autocommit_asyncpg(conn) is not None


__all__ = ["Prepared", "on_autocommit_postgresql"]
