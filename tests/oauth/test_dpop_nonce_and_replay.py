"""Stateless DPoP nonces (RFC 9449 §8, §9; checklist X04) and the replay guards (RFC 9449
§11.1, RFC 7523 §3) on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from bastion.oauth.dpop_nonce import DPoPNonces
from bastion.oauth.replay import MemoryReplayGuard
from bastion.store import grants
from bastion.store.database import Database
from bastion.store.replays import DatabaseReplayGuard
from bastion.store.schema import used_assertions

SECRET = b"k" * 32


@pytest.fixture
async def database(backend: dict[str, Any]) -> AsyncIterator[Database]:
    db = Database(backend["database_url"], schema=backend.get("database_schema"))
    await db.upgrade()
    try:
        yield db
    finally:
        await db.dispose()


def test_x04_a_nonce_of_another_key_a_past_window_or_garbage_is_refused() -> None:
    nonces = DPoPNonces(SECRET, lifetime=60)
    other = DPoPNonces(b"o" * 32, lifetime=60)
    now = 1_000_000
    assert not nonces.accepts(other.current(now), now)
    assert not nonces.accepts(nonces.current(now - 120), now)
    assert not nonces.accepts(nonces.current(now + 60), now)
    for garbage in ["", "x", "!!!!", "A" * 65, nonces.current(now)[:-1]]:
        assert not nonces.accepts(garbage, now)


def test_x04_a_nonce_is_accepted_in_its_window_and_the_next_by_every_holder_of_the_key() -> None:
    nonces = DPoPNonces(SECRET, lifetime=60)
    now = 1_000_000
    nonce = nonces.current(now)
    assert nonces.accepts(nonce, now)
    assert nonces.accepts(nonce, now + 60)
    assert DPoPNonces(SECRET, lifetime=60).accepts(nonce, now)
    assert nonces.current(now + 60) != nonce


def test_x04_a_short_key_or_lifetime_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DPoPNonces(b"short")
    with pytest.raises(ValueError, match="10 seconds"):
        DPoPNonces(SECRET, lifetime=1)


async def test_rfc9449_11_1_memory_guard_refuses_a_second_use_until_expiry() -> None:
    guard = MemoryReplayGuard(max_entries=3)
    assert await guard.first_use("a", 100, 10)
    assert not await guard.first_use("a", 100, 50)
    assert await guard.first_use("a", 200, 100)  # expired: a new use
    for key in "bcd":
        assert await guard.first_use(key, 300, 100)
    assert len(guard) == 3


async def test_rfc9449_11_1_database_guard_is_shared_and_separated_by_purpose(
    database: Database,
) -> None:
    first = DatabaseReplayGuard(database, "dpop-token")
    second = DatabaseReplayGuard(database, "dpop-token")
    other = DatabaseReplayGuard(database, "id-jag")
    assert await first.first_use("jti-1", 2_000, 1_000)
    assert not await second.first_use("jti-1", 2_000, 1_500)
    assert await other.first_use("jti-1", 2_000, 1_500)
    assert await second.first_use("jti-1", 3_000, 2_000)


async def test_rfc7523_3_an_id_is_refused_until_it_expires_even_before_any_sweep(
    database: Database,
) -> None:
    """The first use is one insert; a second use of a live id is a replay, a use after its
    expiry is a first use again (the stale row is replaced), and the sweep removes only what
    has expired."""
    async with database.transaction() as conn:
        assert await grants.use_assertion_once(conn, "k", 100, 10)
        assert not await grants.use_assertion_once(conn, "k", 100, 99)
        assert await grants.use_assertion_once(conn, "k", 300, 100)
        assert not await grants.use_assertion_once(conn, "k", 300, 250)
        assert await grants.use_assertion_once(conn, "other", 150, 100)
        await grants.purge_expired(conn, 200)
        left = (await conn.execute(sa.select(used_assertions.c.expires_at))).scalars().all()
    assert left == [300]


async def test_rfc9449_11_1_racing_uses_of_one_id_on_separate_connections_admit_exactly_one(
    database: Database,
) -> None:
    """Sixteen first uses of one proof id at once, each on a connection of its own (replicas
    sharing the database): one is admitted, fifteen are replays. Then the same with a stale row
    left behind by an expired id: exactly one replaces it."""
    import asyncio

    guards = [DatabaseReplayGuard(database, "dpop-resource") for _ in range(16)]
    fresh = await asyncio.gather(*(g.first_use("jti-race", 2_000, 1_000) for g in guards))
    assert sorted(fresh) == [False] * 15 + [True]
    again = await asyncio.gather(*(g.first_use("jti-race", 4_000, 3_000) for g in guards))
    assert sorted(again) == [False] * 15 + [True]
    assert not await guards[0].first_use("jti-race", 4_000, 3_999)


async def test_rfc9449_11_1_a_replay_inside_a_transaction_leaves_it_usable(
    database: Database,
) -> None:
    """A refused second use raises nothing and aborts nothing: the transaction it ran in
    goes on (client_auth checks assertions inside the token request's transaction)."""
    async with database.transaction() as conn:
        assert await grants.use_assertion_once(conn, "same", 500, 100)
        assert not await grants.use_assertion_once(conn, "same", 500, 200)
        assert await grants.use_assertion_once(conn, "next", 500, 200)
    async with database.connect() as conn:
        keys = (await conn.execute(sa.select(used_assertions.c.key))).scalars().all()
    assert sorted(keys) == ["next", "same"]
