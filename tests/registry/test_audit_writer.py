"""Group commit of the audit trail: every request's record is committed before its answer ends,
and records of concurrent requests share transactions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.config import Settings
from bastion.registry.audit import AuditWriter
from bastion.store import registry as rows
from bastion.store.database import Database
from bastion.store.schema import registry_audit


class CountingDatabase(Database):
    """A Database that counts the transactions it opens: ``transaction()``, and
    ``statements()`` (a transaction on SQLite; on PostgreSQL each statement commits alone, and
    the writer makes one per batch)."""

    transactions = 0

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        self.transactions += 1
        return super().transaction()

    def statements(self) -> AbstractAsyncContextManager[AsyncConnection]:
        self.transactions += 1
        return super().statements()


@pytest.fixture
async def db(make_settings: Callable[..., Settings]) -> AsyncIterator[CountingDatabase]:
    settings = make_settings()
    database = CountingDatabase(settings.effective_database_url, schema=settings.database_schema)
    await database.upgrade()
    yield database
    await database.dispose()


def record(n: int) -> rows.AuditRecord:
    return rows.AuditRecord(
        at=1_760_000_000_000 + n,
        subject=f"user-{n}",
        client_id="c",
        action="list",
        server_name=None,
        version=None,
        status=200,
        result="ok",
    )


async def stored(db: Database) -> list[rows.AuditRecord]:
    async with db.connect() as conn:
        return await rows.audit_records(conn, limit=10_000)


async def test_each_write_returns_once_its_record_is_committed(db: CountingDatabase) -> None:
    writer = AuditWriter(db)
    await writer.write(record(1))
    assert [r.subject for r in await stored(db)] == ["user-1"]
    await writer.write(record(2))
    assert [r.subject for r in await stored(db)] == ["user-1", "user-2"]


async def test_concurrent_records_share_transactions_in_arrival_order(
    db: CountingDatabase,
) -> None:
    writer = AuditWriter(db, max_batch=20)
    before = db.transactions
    await asyncio.gather(*(writer.write(record(n)) for n in range(50)))
    assert [r.subject for r in await stored(db)] == [f"user-{n}" for n in range(50)]
    # All 50 are waiting before the flush starts: batches of 20, 20 and 10.
    assert db.transactions - before == 3


class OverlapDatabase(CountingDatabase):
    """A CountingDatabase that also counts the most statements() connections open at once."""

    open_now = 0
    most_open = 0

    @asynccontextmanager
    async def _tracked(self) -> AsyncIterator[AsyncConnection]:
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            async with Database.statements(self) as conn:
                await asyncio.sleep(0.01)  # long enough for the other flush to start
                yield conn
        finally:
            self.open_now -= 1

    def statements(self) -> AbstractAsyncContextManager[AsyncConnection]:
        self.transactions += 1
        return self._tracked()


async def test_with_two_flushes_a_batch_commits_while_another_does(
    make_settings: Callable[..., Settings],
) -> None:
    """flushes=2: two commits under way at once, never three; every record committed once."""
    settings = make_settings()
    db = OverlapDatabase(settings.effective_database_url, schema=settings.database_schema)
    await db.upgrade()
    try:
        writer = AuditWriter(db, max_batch=20, flushes=2)
        await asyncio.gather(*(writer.write(record(n)) for n in range(50)))
        await writer.aclose()
        assert sorted(r.subject for r in await stored(db)) == sorted(f"user-{n}" for n in range(50))
        # 0-19 and 20-39 commit together; the first flush to finish takes 40-49.
        assert (db.transactions, db.most_open) == (3, 2)
        for n in range(50, 60):
            await writer.write(record(n))
        await writer.aclose()
        assert db.most_open == 2 and "flushing=0" in repr(writer)
    finally:
        await db.dispose()


@pytest.mark.empty_database
async def test_a_failed_commit_reaches_every_writer_of_the_batch(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    unmigrated = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        writer = AuditWriter(unmigrated)
        results = await asyncio.gather(
            *(writer.write(record(n)) for n in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, Exception) for r in results), results
        assert "pending=0" in repr(writer)
    finally:
        await unmigrated.dispose()


async def test_a_cancelled_request_does_not_cancel_its_commit(db: CountingDatabase) -> None:
    writer = AuditWriter(db)
    first = asyncio.create_task(writer.write(record(1)))
    second = asyncio.create_task(writer.write(record(2)))
    await asyncio.sleep(0)
    second.cancel()
    await first
    await writer.aclose()
    assert [r.subject for r in await stored(db)] == ["user-1", "user-2"]


async def test_records_are_stored_as_sqlalchemys_insert_stores_them(db: CountingDatabase) -> None:
    """add_audits (on SQLite straight to the driver) stores each column exactly as a plain
    SQLAlchemy insert of the same record does: a missing detail as JSON null, text as JSON
    text, a detail serialized ahead (detail_json) as that text."""
    detail: dict[str, object] = {"entries": ["io.x/é@1"], "count": 1}
    records = [
        rows.AuditRecord(
            at=1,
            subject="s",
            client_id=None,
            action="get",
            server_name="io.x/y",
            version="1.0.0",
            status=200,
            result="ok",
            request_id="r1",
        ),
        rows.AuditRecord(
            at=2,
            subject=None,
            client_id="c",
            action="list",
            server_name=None,
            version=None,
            status=401,
            result="unauthorized",
            detail=detail,
        ),
        rows.AuditRecord(
            at=3,
            subject="s",
            client_id="c",
            action="list",
            server_name=None,
            version=None,
            status=200,
            result="ok",
            detail=detail,
            detail_json=json.dumps(detail),
        ),
    ]
    async with db.statements() as conn:
        await rows.add_audits(conn, records)
    async with db.transaction() as conn:
        await conn.execute(
            sa.insert(registry_audit),
            [{**rows._audit_row(r), "at": r.at + 100, "detail": r.detail} for r in records],
        )
    columns = sa.select(
        *(c for c in registry_audit.c if c.name not in ("id", "at", "detail")),
        sa.cast(registry_audit.c.detail, sa.Text),
    ).order_by(registry_audit.c.at)
    async with db.connect() as conn:
        stored = [tuple(row) for row in (await conn.execute(columns)).all()]
    assert stored[:3] == stored[3:]
    assert stored[0][-1] == "null"
