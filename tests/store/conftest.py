"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bastion.store.database import Database


@pytest.fixture
async def pg(backend: dict[str, Any]) -> AsyncIterator[Database]:
    """A migrated PostgreSQL schema (the SQLite run of a test using it is skipped)."""
    if "database_schema" not in backend:
        pytest.skip("PostgreSQL only")
    db = Database(backend["database_url"], schema=backend["database_schema"])
    await db.upgrade()
    try:
        yield db
    finally:
        await db.dispose()
