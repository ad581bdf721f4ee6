"""audit.retention_days: the housekeeping sweep deletes older records, in bounded batches, and
0 keeps them forever."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from bastion.authserver.app import close_server, housekeeping, open_server
from bastion.config import Settings
from bastion.store import auth_audit
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.database import Database
from bastion.store.schema import auth_audit as table

NOW = 1_900_000_000
DAY = 86400


async def _fill(db: Database, ages_in_days: list[float]) -> None:
    async with db.transaction() as conn:
        for age in ages_in_days:
            at = int((NOW - age * DAY) * 1000)
            await auth_audit.add(conn, AuditRecord(Event.SIGN_IN, at, subject=f"{age}"))


async def _subjects(db: Database) -> list[str]:
    async with db.connect() as conn:
        found = await conn.execute(sa.select(table.c.subject).order_by(table.c.id))
        return [row.subject for row in found]


async def _sweep(settings: Settings, ages: list[float]) -> list[str]:
    bastion = await open_server(settings, clock=lambda: NOW)
    try:
        await _fill(bastion.db, ages)
        await housekeeping(bastion)
        return await _subjects(bastion.db)
    finally:
        await close_server(bastion)


async def test_the_sweep_deletes_records_older_than_the_retention(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(audit={"retention_days": 30})
    assert await _sweep(settings, [400, 31, 30.01, 29.99, 1, 0]) == ["29.99", "1", "0"]


async def test_a_retention_of_0_keeps_everything(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(audit={"retention_days": 0})
    assert await _sweep(settings, [4000, 400, 1]) == ["4000", "400", "1"]


async def test_a_purge_deletes_at_most_its_batch_oldest_first(settings: Settings) -> None:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        await _fill(db, [50, 40, 30, 20, 10])
        async with db.transaction() as conn:
            deleted = await auth_audit.purge(conn, (NOW - 15 * DAY) * 1000, limit=2)
        assert deleted == 2
        assert await _subjects(db) == ["30", "20", "10"]
    finally:
        await db.dispose()
