"""Migration 0007 (the registry audit's request_id) on SQLite and PostgreSQL: it follows 0006,
downgrades without losing audit records, and upgrades again to exactly schema.py."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from alembic import command

from bastion.config import Settings
from bastion.store import registry as rows
from bastion.store.database import Database, alembic_config
from tests.registry.test_audit_writer import record
from tests.registry.test_migration import _chain, _diff, _head, _revision

# Each test migrates its own database from nothing.
pytestmark = pytest.mark.empty_database


def _columns(connection: sa.Connection) -> set[str]:
    return {column["name"] for column in sa.inspect(connection).get_columns("registry_audit")}


def test_migration_0007_follows_0006() -> None:
    chain = _chain()
    assert chain[chain.index("0006") + 1] == "0007"


async def test_migration_0007_downgrades_to_0006_and_upgrades_again(settings: Settings) -> None:
    """Down to 0006 drops request_id and keeps the records; up again the column is back (empty
    for the records made meanwhile) and the database matches schema.py."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    made = dataclasses.replace(record(1), request_id="trace-0007")
    try:
        await db.upgrade()
        async with db.transaction() as conn:
            await rows.add_audits(conn, [made])
        async with db.connect() as conn:
            [stored] = await rows.audit_records(conn, limit=10)
            assert stored.request_id == "trace-0007"
        async with db.transaction() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0006"))
        async with db.connect() as conn:
            assert await conn.run_sync(_revision) == "0006"
            assert "request_id" not in await conn.run_sync(_columns)
            count = await conn.scalar(sa.text("SELECT count(*) FROM registry_audit"))
            assert count == 1
        await db.upgrade()
        async with db.connect() as conn:
            assert await conn.run_sync(_revision) == _head()
            assert "request_id" in await conn.run_sync(_columns)
            assert await conn.run_sync(_diff) == []
            [kept] = await rows.audit_records(conn, limit=10)
            assert (kept.subject, kept.request_id) == (made.subject, None)
    finally:
        await db.dispose()
