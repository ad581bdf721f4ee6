"""The database handle: an async engine with SQLite tuned for concurrency, and migrations."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bastion.ops import metrics
from bastion.private_files import create_private, sqlite_file

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# PostgreSQL connections per process, opened as needed and kept.
POOL_SIZE = 30
# Seconds a pooled PostgreSQL connection may sit unused before a checkout pings it.
IDLE_PING = 30.0
# Autocommit connections statements() keeps checked out between uses, at most: the rest of the
# pool stays free for transactions.
KEPT = POOL_SIZE // 2


class JsonText(str):
    """A JSON value already serialized by ``json.dumps`` (default separators): a JSON column
    stores it as it is instead of serializing it again (:func:`serialize_json`)."""

    __slots__ = ()


def serialize_json(value: object) -> str:
    """The engines' JSON serializer: ``json.dumps``, except for :class:`JsonText`."""
    return str.__str__(value) if isinstance(value, JsonText) else json.dumps(value)


class Database:
    """Owns one async engine. Made in the app's lifespan (or a CLI command) and passed around."""

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        self.url = url
        self.schema = schema
        self.is_sqlite = url.startswith("sqlite")
        args: dict[str, Any] = {}
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            args["timeout"] = 30
        else:
            # Every connection opened is kept: with overflow connections, a load that hovers
            # around the pool's size closed and reopened one per request (a TCP and TLS
            # handshake, authentication and asyncpg's type set-up, milliseconds of CPU each).
            # No pre-ping either: see _PoolHealth.
            kwargs.update(pool_size=POOL_SIZE, max_overflow=0)
            if schema:
                args["server_settings"] = {"search_path": schema}
        self.engine: AsyncEngine = create_async_engine(
            url, connect_args=args, json_serializer=serialize_json, **kwargs
        )
        self._kept = _Kept()
        _count_connections(self.engine.sync_engine)
        if not self.is_sqlite:
            _PoolHealth(self.engine.sync_engine)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            database = sqlite_file(url)
            if database is not None:
                event.listen(self.engine.sync_engine, "do_connect", _PrivateFile(database))

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection inside one transaction, committed on success and rolled back on error."""
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        # statements() and upgrade() use this one, so that each use of the public methods is
        # one transaction of theirs (a subclass counting them sees no others).
        conn = await self._checkout()
        try:
            async with conn.begin():
                yield conn
        finally:
            await conn.close()

    @asynccontextmanager
    async def statements(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads and for changes made in one statement each. On PostgreSQL
        every statement commits on its own (autocommit): no BEGIN, COMMIT or ROLLBACK round
        trips, so a change that must be atomic goes in one statement; the connection is kept
        checked out for the next use (see :class:`_Kept`). On SQLite a transaction, committed
        on success (its separate statements are atomic together)."""
        if self.is_sqlite:
            async with self._transaction() as conn:
                yield conn
            return
        kept = self._kept.take()
        if kept is not None:
            conn = kept
        else:
            conn = await self._checkout()
            try:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            except BaseException:
                await conn.close()
                raise
        try:
            yield conn
        except BaseException:
            # A statement failed or the request was cancelled: the pool resets it.
            await conn.close()
            raise
        if conn.in_transaction() or not self._kept.keep(conn):
            await conn.close()

    def kept(self) -> list[AsyncConnection]:
        """The autocommit connections :meth:`statements` keeps checked out between uses."""
        return [conn for conn, _, _ in self._kept.idle]

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autobegin; nothing is committed)."""
        conn = await self._checkout()
        try:
            yield conn
        finally:
            await conn.close()

    async def _checkout(self) -> AsyncConnection:
        """A connection from the pool. Should every connection be out while some are kept
        idle by :meth:`statements`, one of those goes back first; and none is kept while a
        checkout waits (the pool hands each one returned to a waiter)."""
        if not self.is_sqlite and self.engine.sync_engine.pool.checkedout() >= POOL_SIZE:  # type: ignore[attr-defined]
            await self._kept.release_one()
        self._kept.waiting += 1
        try:
            return await self.engine.connect()
        finally:
            self._kept.waiting -= 1

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (Alembic ``upgrade head``).

        Processes that start together (``--workers N``, several servers) take turns: the first
        migrates, the others then find the schema at head. Without that they race on CREATE
        SCHEMA and CREATE TABLE. On PostgreSQL a transaction-scoped advisory lock serialises
        them; on an SQLite file, a lock on ``<database>.migrations.lock`` beside it (the
        sqlite3 module runs DDL outside transactions, so the database's own lock cannot)."""
        async with _file_lock(sqlite_file(self.url)), self._transaction() as conn:
            if not self.is_sqlite:
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                    {"name": f"bastion migrations {self.schema or ''}"},
                )
            if self.schema and not self.is_sqlite:
                await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self._kept.close()
        await self.engine.dispose()


@asynccontextmanager
async def _file_lock(database: Path | None) -> AsyncIterator[None]:
    """An exclusive lock on ``<database>.migrations.lock`` while the block runs (nothing for
    ``None``); waited for in a thread, so the event loop goes on meanwhile."""
    if database is None:
        yield
        return
    lock = database.with_name(database.name + ".migrations.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _count_connections(engine: sa.Engine) -> None:
    """Count ``engine``'s pooled connections in the metrics (open, checked out) from the pool's
    own events, so that the sum over worker processes is right in multiprocess mode too."""
    event.listen(engine, "connect", lambda *_: metrics.DB_OPEN.inc())
    event.listen(engine, "close", lambda *_: metrics.DB_OPEN.dec())
    event.listen(engine, "close_detached", lambda *_: metrics.DB_OPEN.dec())
    event.listen(engine, "checkout", lambda *_: metrics.DB_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: metrics.DB_IN_USE.dec())


class _PoolHealth:
    """Replaces ``pool_pre_ping`` (which asyncpg runs as BEGIN, ";", ROLLBACK: three round trips
    per checkout). A pooled connection the server ended (a restart, ``pg_terminate_backend``, an
    idle timeout) is known closed to asyncpg, whose socket's end the event loop read while it
    sat in the pool: refused at no cost, and the pool opens another. Only a connection idle
    for :data:`IDLE_PING` seconds, which a silent network path may have lost, is pinged."""

    def __init__(self, engine: sa.Engine) -> None:
        self.dialect = engine.dialect
        event.listen(engine, "checkin", self.checkin)
        event.listen(engine, "checkout", self.checkout)

    @staticmethod
    def checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    def checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.driver_connection.is_closed():
            raise DisconnectionError("the PostgreSQL server closed this pooled connection")
        idle_since = record.info.pop("idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since > IDLE_PING:
            try:
                self.dialect.do_ping(dbapi_connection)
            except Exception as exc:
                raise DisconnectionError(f"a pooled connection did not answer: {exc}") from exc


class _Kept:
    """The autocommit connections :meth:`Database.statements` keeps checked out between uses,
    last in first out: taking one is a ``pop``, where a checkout from SQLAlchemy's pool and
    the switch to autocommit cost about 65 µs of CPU, a tenth of a refresh. They are checked as
    the pool checks its own (see :class:`_PoolHealth`): one the server closed is returned to
    the pool (which replaces it), one unused for :data:`IDLE_PING` seconds is dropped."""

    def __init__(self) -> None:
        self.idle: list[tuple[AsyncConnection, float, asyncio.AbstractEventLoop]] = []
        self.waiting = 0  # checkouts from the pool under way

    def take(self) -> AsyncConnection | None:
        loop = asyncio.get_running_loop()
        while self.idle:
            conn, since, owner = self.idle.pop()
            driver = _driver(conn)
            if (
                owner is loop
                and driver is not None
                and not driver.is_closed()
                and time.monotonic() - since <= IDLE_PING
            ):
                metrics.DB_IN_USE.inc()
                return conn
            self._discard(conn, owner, loop)
        return None

    def keep(self, conn: AsyncConnection) -> bool:
        """Keep ``conn`` for the next use; False when enough are kept (the caller closes it)."""
        if self.waiting or len(self.idle) >= KEPT or conn.invalidated or _driver(conn) is None:
            return False
        self.idle.append((conn, time.monotonic(), asyncio.get_running_loop()))
        metrics.DB_IN_USE.dec()
        return True

    def _discard(
        self,
        conn: AsyncConnection,
        owner: asyncio.AbstractEventLoop,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if owner is loop:
            metrics.DB_IN_USE.inc()  # closing checks it in
            # Invalidated: a connection unused for IDLE_PING may have been lost silently.
            task = loop.create_task(_invalidate(conn))
            _closing.add(task)
            task.add_done_callback(_closing.discard)

    async def release_one(self) -> None:
        """Return one kept connection to the pool, if there is one of this event loop."""
        loop = asyncio.get_running_loop()
        for index, (conn, _, owner) in enumerate(self.idle):
            if owner is loop:
                del self.idle[index]
                metrics.DB_IN_USE.inc()
                await conn.close()
                return

    async def close(self) -> None:
        """Return every kept connection to the pool (before the engine is disposed)."""
        loop = asyncio.get_running_loop()
        while self.idle:
            conn, _, owner = self.idle.pop()
            if owner is loop:
                metrics.DB_IN_USE.inc()
                await conn.close()


_closing: set[asyncio.Task[None]] = set()


async def _invalidate(conn: AsyncConnection) -> None:
    try:
        await conn.invalidate()
    finally:
        await conn.close()


def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn`` (None once it is gone)."""
    fairy = conn.sync_connection.connection if conn.sync_connection else None
    return None if fairy is None else fairy.driver_connection


class _PrivateFile:
    """Before each connection: create the database file with mode 0600 if it is missing, so
    that SQLite (which gives -wal and -shm the database's mode) never creates it itself."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, *_connect_arguments: Any) -> None:
        create_private(self.path)  # returns None: SQLAlchemy then connects as usual


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit is synced to disk before it returns. With NORMAL (WAL's usual choice) a
    # process crash loses nothing either, but a power loss may undo the last commits: a spent
    # code or refresh token would come back usable, and a revocation would be forgotten.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic Config pointing at bastion's migrations, optionally bound to a connection."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: sa.Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


__all__ = ["Database", "alembic_config"]
