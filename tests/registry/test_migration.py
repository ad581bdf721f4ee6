"""Migration 0002 (registry tables) on SQLite and PostgreSQL: up, down, up, and no drift between
schema.py and the migrations."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from bastion.config import Settings
from bastion.store.database import Database, alembic_config
from bastion.store.schema import metadata

# Each test migrates its own database from nothing.
pytestmark = pytest.mark.empty_database

REGISTRY_TABLES = {
    "registry_servers",
    "registry_entries",
    "registry_entry_groups",
    "registry_audit",
}


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _chain() -> list[str]:
    """Revision ids from the first migration to the head."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _diff(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_create_exactly_the_tables_of_schema_py(settings: Settings) -> None:
    """Alembic autogenerate finds nothing to do after ``upgrade head``: schema.py and the
    migrations describe the same database (tables, columns, types, indexes, keys)."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        async with db.connect() as conn:
            assert await conn.run_sync(_revision) == _head()
            assert await conn.run_sync(_tables) >= REGISTRY_TABLES
            assert await conn.run_sync(_diff) == []
    finally:
        await db.dispose()


def test_migration_0002_follows_0001_in_one_linear_chain() -> None:
    """Revision "0002" revises "0001" (the initial schema, unchanged) with no branch."""
    chain = _chain()
    assert chain[:2] == ["0001", "0002"]
    assert len(chain) == len(set(chain))


async def test_migration_0002_downgrades_to_0001_and_upgrades_again(settings: Settings) -> None:
    """0002 is reversible: downgrading to 0001 drops the registry tables and nothing else of
    0001."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        async with db.transaction() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0001"))
        async with db.connect() as conn:
            assert await conn.run_sync(_revision) == "0001"
            tables = await conn.run_sync(_tables)
            assert not REGISTRY_TABLES & tables and "users" in tables
        await db.upgrade()
        async with db.connect() as conn:
            assert await conn.run_sync(_revision) == _head()
            assert await conn.run_sync(_tables) >= REGISTRY_TABLES
            assert await conn.run_sync(_diff) == []
    finally:
        await db.dispose()
