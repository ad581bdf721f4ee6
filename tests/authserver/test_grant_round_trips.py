"""What the code and refresh grants send to PostgreSQL: one read of the grant with its user
and the access rules about its resource, and one statement that writes the whole rotation;
no BEGIN, COMMIT or ROLLBACK, no ping. Counted on the wire: SQLAlchemy's statements by its
cursor events, the ones sent through asyncpg directly (and asyncpg's transaction commands)
by asyncpg's query logger."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from bastion.config import Settings
from tests.authserver._tokens import code_grant, refresh
from tests.support.asgi import running
from tests.support.flow import add_user, authorize, exchange


@contextmanager
def wire(client: httpx.AsyncClient) -> Iterator[list[str]]:
    """Every statement the requests of this task send while the block runs."""
    db = client.app.state.bastion.db  # type: ignore[attr-defined]
    engine = db.engine.sync_engine
    seen: list[str] = []
    task = asyncio.current_task()  # the requests' (ASGITransport), not housekeeping's

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if asyncio.current_task() is task:
            seen.append(sql)

    def logged(query: Any) -> None:
        seen.append(query.query)

    # asyncpg calls its loggers later, from the loop: listen only while this task holds the
    # connection, checked out from the pool or one of those Database.statements() keeps
    # checked out between uses (listened to until the block ends).
    def checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        if asyncio.current_task() is task:
            record.driver_connection.add_query_logger(logged)
            listening.append(record.driver_connection)

    def checkin(_dbapi: Any, record: Any) -> None:
        record.driver_connection.remove_query_logger(logged)

    listening = [conn.sync_connection.connection.driver_connection for conn in db.kept()]  # type: ignore[union-attr]
    for driver in listening:
        driver.add_query_logger(logged)
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        yield seen
    finally:
        for driver in listening:
            driver.remove_query_logger(logged)
        for name, listener in [
            ("checkin", checkin),
            ("checkout", checkout),
            ("before_cursor_execute", statement),
        ]:
            event.remove(engine, name, listener)


async def test_code_and_refresh_grants_take_two_statements_each_on_postgresql(
    settings: Settings,
) -> None:
    if not settings.effective_database_url.startswith("postgresql"):
        pytest.skip("SQLite runs the grants in a transaction, one statement at a time")
    async with running(settings) as client:
        await add_user(settings)
        first = await code_grant(client)  # the client's first use is recorded apart
        done = await authorize(client, first.client_id)
        with wire(client) as redeemed:
            tokens = (await exchange(client, first.client_id, done)).json()
        with wire(client) as refreshed:
            response = await refresh(client, first.client_id, tokens["refresh_token"])
        assert response.status_code == 200, response.text
        await asyncio.sleep(0)  # asyncpg's loggers run from the loop
    for sent in (redeemed, refreshed):
        assert len(sent) == 2, sent
        assert "FROM access_rules" in sent[0]
        assert sent[1].startswith("WITH spent AS")
        assert not any(s.strip(" ;").upper() in ("BEGIN", "COMMIT", "ROLLBACK") for s in sent)
