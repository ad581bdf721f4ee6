"""The PostgreSQL pool (bastion.store.database): connections the server ended are replaced
at checkout without a pre-ping, whether they sat idle in the pool or were in use."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.store import database as database_module
from bastion.store.database import Database
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres
PARALLEL = 4


async def pooled_backends(db: Database) -> tuple[set[int], list[Any]]:
    """Check out PARALLEL connections at once; their server pids and asyncpg connections
    (returned to the pool before this returns)."""
    ready = asyncio.Event()
    seen: list[tuple[int, Any]] = []

    async def hold() -> None:
        async with db.connect() as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            seen.append((pid, (await conn.get_raw_connection()).driver_connection))
            if len(seen) == PARALLEL:
                ready.set()
            await asyncio.wait_for(ready.wait(), 10)

    await asyncio.gather(*(hold() for _ in range(PARALLEL)))
    return {pid for pid, _ in seen}, [raw for _, raw in seen]


async def terminate(pids: set[int]) -> None:
    """End these backends from another connection, as a restart or an operator would."""
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.begin() as conn:
            for pid in pids:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await engine.dispose()


async def until_closed(connections: list[Any]) -> None:
    """Wait (at most 10 s) until asyncpg has read the end of every connection."""
    deadline = time.monotonic() + 10
    while not all(c.is_closed() for c in connections):
        assert time.monotonic() < deadline, "asyncpg never saw the connections close"
        await asyncio.sleep(0.02)


async def test_connections_ended_by_the_server_while_pooled_are_replaced(pg: Database) -> None:
    pids, connections = await pooled_backends(pg)
    await terminate(pids)
    await until_closed(connections)

    async def one() -> int:
        async with pg.transaction() as conn:
            return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())

    fresh = await asyncio.gather(*(one() for _ in range(PARALLEL)))
    assert not pids & set(fresh)


async def test_a_connection_idle_longer_than_the_ping_interval_is_pinged(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle connections are pinged; a ping that fails replaces the connection (a dead peer
    whose end asyncpg has not read, as on a silent network path, looks like this)."""
    pids, _connections = await pooled_backends(pg)
    pings: list[Any] = []
    dialect = pg.engine.sync_engine.dialect

    def failing_ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        raise OSError("no answer")

    monkeypatch.setattr(database_module, "IDLE_PING", 0.0)
    monkeypatch.setattr(dialect, "do_ping", failing_ping)
    async with pg.connect() as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
    assert len(pings) == 1
    assert pid not in pids


async def test_no_ping_for_a_connection_in_steady_use(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pooled_backends(pg)
    pings: list[Any] = []
    monkeypatch.setattr(pg.engine.sync_engine.dialect, "do_ping", pings.append)
    async with pg.transaction() as conn:
        await conn.execute(sa.text("SELECT 1"))
    assert pings == []


async def statements_backends(db: Database, count: int) -> list[int]:
    """``count`` uses of :meth:`Database.statements` at once; their server pids."""
    ready = asyncio.Event()
    seen: list[int] = []

    async def hold() -> None:
        async with db.statements() as conn:
            seen.append(int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()))
            await conn.rollback()  # SQLAlchemy's autobegin: kept only without one
            if len(seen) == count:
                ready.set()
            await asyncio.wait_for(ready.wait(), 10)

    await asyncio.gather(*(hold() for _ in range(count)))
    return seen


async def test_statements_keeps_some_autocommit_connections_and_returns_the_rest(
    pg: Database,
) -> None:
    """The connections statements() keeps between uses are at most KEPT, the rest go back to
    the pool for transactions; a kept one is in autocommit and serves the next use."""
    used = await statements_backends(pg, database_module.KEPT + 3)
    kept = pg.kept()
    assert len(kept) == database_module.KEPT
    assert pg.engine.sync_engine.pool.checkedin() == 3  # type: ignore[attr-defined]
    async with pg.statements() as conn:
        pid = int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())
        assert conn.sync_connection is not None
        assert conn.sync_connection.connection.dbapi_connection.autocommit  # type: ignore[union-attr]
        await conn.rollback()
    assert pid in used
    await pg.dispose()
    assert pg.kept() == []
    assert pg.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def pid_of_next_use(db: Database) -> int:
    async with db.statements() as conn:
        pid = int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())
        await conn.rollback()
    return pid


async def test_kept_connections_the_server_ended_are_not_used_again(pg: Database) -> None:
    """A kept connection whose end asyncpg has read is dropped; the pool opens another."""
    first = await statements_backends(pg, 2)
    drivers = [conn.sync_connection.connection.driver_connection for conn in pg.kept()]  # type: ignore[union-attr]
    await terminate(set(first))
    await until_closed(drivers)
    assert await pid_of_next_use(pg) not in first
    assert len(pg.kept()) == 1


async def test_a_kept_connection_left_idle_longer_than_the_ping_interval_is_dropped(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One unused for IDLE_PING seconds, which a silent network path may have lost, is not
    used again (nor pinged: the pool's checkout pings its own)."""
    first = await pid_of_next_use(pg)
    assert await pid_of_next_use(pg) == first  # kept, and used again
    monkeypatch.setattr(database_module, "IDLE_PING", 0.0)
    await asyncio.sleep(0.01)
    assert await pid_of_next_use(pg) != first


async def test_a_checkout_when_every_connection_is_out_takes_back_a_kept_one(
    pg: Database,
) -> None:
    """Kept connections are checked out as far as the pool knows: when all POOL_SIZE are out,
    some of them kept idle, a transaction gets one of those back at once instead of waiting
    for the pool's timeout."""
    await statements_backends(pg, database_module.KEPT)
    assert len(pg.kept()) == database_module.KEPT
    holding = database_module.POOL_SIZE - database_module.KEPT
    held = asyncio.Event()
    release = asyncio.Event()
    count = 0

    async def hold() -> None:
        nonlocal count
        async with pg.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            count += 1
            if count == holding:
                held.set()
            await asyncio.wait_for(release.wait(), 10)

    holders = [asyncio.create_task(hold()) for _ in range(holding)]
    try:
        await asyncio.wait_for(held.wait(), 10)
        assert pg.engine.sync_engine.pool.checkedout() == database_module.POOL_SIZE  # type: ignore[attr-defined]
        async with asyncio.timeout(5), pg.transaction() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
        assert len(pg.kept()) == database_module.KEPT - 1
    finally:
        release.set()
        await asyncio.gather(*holders)
