"""Migration 0006 (registry mirrors) on SQLite and PostgreSQL: it follows 0005, downgrades
without touching the registry's entries, and upgrades again to exactly schema.py."""

from __future__ import annotations

import pytest
from alembic import command

from bastion.config import Settings
from bastion.registry.service import new_entry
from bastion.registry.validation import validate_server
from bastion.store import registry as rows
from bastion.store.database import Database, alembic_config
from tests.registry.harness import server_json
from tests.registry.test_migration import _chain, _diff, _head, _revision, _tables

# Each test migrates its own database from nothing.
pytestmark = pytest.mark.empty_database

MIRROR_TABLES = {"registry_mirrors", "registry_mirrored"}


def test_migration_0006_follows_0005() -> None:
    chain = _chain()
    assert chain[chain.index("0005") + 1] == "0006"


async def test_migration_0006_downgrades_to_0005_and_upgrades_again(settings: Settings) -> None:
    """Down to 0005 drops the mirror tables and keeps the entries; up again matches schema.py."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        entry = new_entry(
            validate_server(server_json("io.github.acme/kept")),
            1,
            owner_subject="ops",
            owner_client_id=None,
            groups=(),
            approved=True,
        )
        async with db.transaction() as conn:
            await rows.lock_server(conn, entry.name, 1)
            await rows.insert_entry(conn, entry)
        async with db.transaction() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0005"))
        async with db.connect() as conn:
            assert await conn.run_sync(_revision) == "0005"
            assert not MIRROR_TABLES & await conn.run_sync(_tables)
            assert await rows.get_entry(conn, entry.name, entry.version) is not None
        await db.upgrade()
        async with db.connect() as conn:
            assert await conn.run_sync(_revision) == _head()
            assert await conn.run_sync(_tables) >= MIRROR_TABLES
            assert await conn.run_sync(_diff) == []
    finally:
        await db.dispose()
