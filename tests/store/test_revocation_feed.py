"""The database revocation feed (bastion.store.revocation_feed), on SQLite (polling) and
PostgreSQL (LISTEN on ``bastion_revocations``): everything still relevant at start, each new
revocation within a second, nothing from another deployment's schema, and a start before the
database is there (a gateway may start before the authorization server has migrated it)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from bastion.resource import RevocationList
from bastion.resource.revocation import GRACE
from bastion.store import revocations
from bastion.store.database import Database
from bastion.store.revocation_feed import DatabaseRevocationFeed

POLL = 0.02
BOUND = 1.0


@pytest.fixture
async def db(backend: dict[str, Any]) -> AsyncIterator[Database]:
    database = Database(backend["database_url"], schema=backend.get("database_schema"))
    await database.upgrade()
    try:
        yield database
    finally:
        await database.dispose()


async def record(db: Database, kind: revocations.Kind, value: str, ttl: int = 600) -> None:
    now = int(time.time())
    async with db.transaction() as conn:
        await revocations.record(conn, kind, value, now=now, expires_at=now + ttl)


async def until(condition: Any, limit: float = 5.0) -> float:
    """Poll ``condition()`` every 20 ms for at most ``limit`` seconds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, "the condition never held"
        await asyncio.sleep(POLL)
    return time.monotonic() - started


async def test_the_feed_loads_every_live_revocation_when_it_starts(db: Database) -> None:
    await record(db, "grant", "family-1")
    await record(db, "token", "jti-1")
    async with db.transaction() as conn:
        now = int(time.time())
        # Expired longer ago than the grace: covers nothing any verifier still accepts.
        await conn.execute(
            sa.insert(revocations.revocations).values(
                kind="grant", value="old", revoked_at=now - 7200, expires_at=now - GRACE - 60
            )
        )
    revoked = RevocationList()
    feed = DatabaseRevocationFeed(db, revoked, poll_interval=0.25)
    await feed.start()
    try:
        assert feed.ready.is_set()
        assert revoked.covers("family-1", None) and revoked.covers(None, "jti-1")
        assert not revoked.covers("old", None)
    finally:
        await feed.aclose()


async def test_a_revocation_recorded_afterwards_reaches_the_list_within_a_second(
    db: Database,
) -> None:
    """Committed by another connection (as the CLI or another process would): PostgreSQL
    notifies at commit, SQLite is read every poll_interval (0.25 s)."""
    revoked = RevocationList()
    feed = DatabaseRevocationFeed(db, revoked, poll_interval=0.25)
    await feed.start()
    try:
        entries: list[tuple[revocations.Kind, str]] = [
            ("grant", "family-2"),
            ("token", "jti-2"),
            ("grant", "family-3"),
        ]
        for kind, value in entries:
            await record(db, kind, value)
            delay = await until(functools.partial(revoked.covers, value, value))
            assert delay < BOUND
        assert revoked.covers("family-2", "jti-2") and revoked.covers("family-3", None)
        assert revoked.covers(None, "jti-2")
    finally:
        await feed.aclose()


@pytest.mark.postgres
async def test_notifications_of_another_schema_are_ignored(backend: dict[str, Any]) -> None:
    """Several deployments may share a PostgreSQL database, one schema each: the channel is
    shared, the payload names the schema."""
    if "database_schema" not in backend:
        pytest.skip("PostgreSQL only")
    other_schema = f"t_{uuid.uuid4().hex[:16]}"
    mine = Database(backend["database_url"], schema=backend["database_schema"])
    other = Database(backend["database_url"], schema=other_schema)
    await mine.upgrade()
    await other.upgrade()
    revoked = RevocationList()
    feed = DatabaseRevocationFeed(mine, revoked)
    await feed.start()
    try:
        await record(other, "grant", "theirs")
        await record(mine, "grant", "ours")
        await until(lambda: revoked.covers("ours", None))
        assert not revoked.covers("theirs", None)
    finally:
        await feed.aclose()
        async with other.transaction() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{other_schema}" CASCADE'))
        await other.dispose()
        await mine.dispose()


@pytest.mark.empty_database
async def test_the_feed_starts_before_the_tables_exist_and_catches_up(
    backend: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """No migration from the feed: it retries with backoff, says once what is wrong and what
    to check, and loads everything once the authorization server has created the tables,
    revocations recorded before that included."""
    db = Database(backend["database_url"], schema=backend.get("database_schema"))
    revoked = RevocationList()
    feed = DatabaseRevocationFeed(db, revoked, owns_db=True)
    caplog.set_level(logging.WARNING, logger="bastion.revocations")
    try:
        await feed.start(wait=0.2)
        assert not feed.ready.is_set()
        await until(lambda: feed.failures >= 2, limit=10)
        warnings = [r.getMessage() for r in caplog.records if r.name == "bastion.revocations"]
        assert len(warnings) == 1, warnings
        assert "cannot follow" in warnings[0]
        assert "database_url and database_schema" in warnings[0]
        assert "bastion db upgrade" in warnings[0]
        migrated = Database(backend["database_url"], schema=backend.get("database_schema"))
        await migrated.upgrade()
        await record(migrated, "grant", "recorded-while-down")
        await migrated.dispose()
        await until(lambda: revoked.covers("recorded-while-down", None), limit=40)
        assert feed.ready.is_set()
        assert "following" in caplog.records[-1].getMessage()
    finally:
        await feed.aclose()
