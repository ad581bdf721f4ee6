"""What the token endpoint asks of the database, and how cached client registrations follow
changes.

OAuth 2.1 §4.2 (client_credentials): a JWT access token (RFC 9068) needs nothing stored, so the
grant writes nothing; the client's registration is served from the process's cache
(``client_cache_ttl``). Changes to a client (RFC 7592 §2.2 update, §2.3 delete, secret rotation,
removal) apply at once in the process that made them and, on PostgreSQL, in every process
(LISTEN/NOTIFY); elsewhere within ``client_cache_ttl``. Statements are counted with a
SQLAlchemy ``before_cursor_execute`` listener on the app's own engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from bastion.authserver import admin
from bastion.authserver.app import housekeeping
from bastion.config import Settings
from bastion.store import schema
from bastion.store.database import Database
from tests.authserver._tokens import (
    RESOURCE,
    Confidential,
    FakeClock,
    assert_error,
    basic,
    confidential_client,
)
from tests.support.asgi import running

WRITES = ("INSERT", "UPDATE", "DELETE", "MERGE")


class Statements:
    """Every SQL statement the app's engine sends for the test's requests while :func:`counting`
    is active (ASGITransport runs the app in the test's task; the housekeeping task, which the
    lifespan starts, is left out): SQLAlchemy's by its cursor events, the ones sent through
    asyncpg directly (:mod:`bastion.store.prepared`) by asyncpg's query logger."""

    def __init__(self, *, every_task: bool = False) -> None:
        self.seen: list[str] = []
        self.task = None if every_task else asyncio.current_task()

    def _ours(self) -> bool:
        return self.task is None or asyncio.current_task() is self.task

    def record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self._ours():
            self.seen.append(" ".join(statement.split()))

    def logged(self, query: Any) -> None:
        self.seen.append(" ".join(query.query.split()))

    def checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        # asyncpg calls its loggers later, from the loop: listen only while a request of the
        # test holds the connection.
        add = getattr(record.driver_connection, "add_query_logger", None)  # asyncpg only
        if add is not None and self._ours():
            add(self.logged)

    def checkin(self, _dbapi: Any, record: Any) -> None:
        remove = getattr(record.driver_connection, "remove_query_logger", None)
        if remove is not None:
            remove(self.logged)

    @property
    def writes(self) -> list[str]:
        return [s for s in self.seen if s.lstrip("(").upper().startswith(WRITES)]

    def on(self, table: str) -> list[str]:
        """The SELECTs that read ``table``."""
        return [s for s in self.seen if s.startswith("SELECT") and f"FROM {table}" in s]


@asynccontextmanager
async def counting(
    app_client: httpx.AsyncClient, *, every_task: bool = False
) -> AsyncIterator[Statements]:
    engine = app_client.app.state.bastion.db.engine.sync_engine  # type: ignore[attr-defined]
    statements = Statements(every_task=every_task)
    listeners = [
        ("before_cursor_execute", statements.record),
        ("checkout", statements.checkout),
        ("checkin", statements.checkin),
    ]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield statements
        await asyncio.sleep(0)  # asyncpg's loggers run from the loop
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)


async def register_machine(
    settings: Settings, client: httpx.AsyncClient, **extra: Any
) -> httpx.Response:
    """RFC 7591 registration of a client_credentials client, with an initial access token an
    operator made for machine clients (the only way a machine client registers itself)."""
    token = await admin.add_registration_token(
        settings, label="robots", machine=[("*", ["mcp:tools"])]
    )
    return await client.post(
        "/register",
        headers={"Authorization": f"Bearer {token}"},
        json={"grant_types": ["client_credentials"], "response_types": [], **extra},
    )


def cc(client: Confidential) -> dict[str, Any]:
    return {
        "data": {"grant_type": "client_credentials", "resource": RESOURCE},
        "headers": client.authorization,
    }


@pytest.fixture
async def service(settings: Settings, app_client: httpx.AsyncClient) -> Confidential:
    return await confidential_client(settings)


async def test_a01_client_credentials_with_a_jwt_writes_nothing_and_reads_the_client_once(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """OAuth 2.1 §4.2, RFC 9068 §2: the token is self-contained. After the first request has
    loaded the client's registration and the access rules, further requests send no statement
    at all."""
    async with counting(app_client) as statements:
        for _ in range(20):
            response = await app_client.post("/token", **cc(service))
            assert response.status_code == 200, response.text
    assert statements.writes == []
    assert len(statements.on("clients")) == 1, statements.seen
    assert len(statements.on("access_rules")) == 1, statements.seen
    assert len(statements.seen) == 2, statements.seen


async def test_a01_concurrent_requests_of_an_uncached_client_read_its_registration_once(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """Twenty token requests arriving together for a client not yet cached wait for one read
    of its registration, instead of one query each (the same holds when an entry expires)."""
    async with counting(app_client, every_task=True) as statements:
        answers = await asyncio.gather(
            *(app_client.post("/token", **cc(service)) for _ in range(20))
        )
    assert [a.status_code for a in answers] == [200] * 20
    assert len(statements.on("clients")) == 1, statements.seen


async def test_a01_a_client_cache_ttl_of_zero_reads_the_client_on_every_request(
    make_settings: Callable[..., Settings],
) -> None:
    """client_cache_ttl = 0 turns the cache off: one read of the client per request, and still
    no write."""
    settings = make_settings(client_cache_ttl=0)
    async with running(settings) as client:
        service = await confidential_client(settings)
        async with counting(client) as statements:
            for _ in range(5):
                assert (await client.post("/token", **cc(service))).status_code == 200
    assert statements.writes == []
    assert len(statements.on("clients")) == 5


async def test_a04_a_dynamic_client_records_its_first_use_once_and_is_kept_by_housekeeping(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 7591 + registration.unused_client_ttl: a registration that obtains tokens only with
    client_credentials is used all the same: its first token records that (one UPDATE, once),
    and housekeeping does not delete it."""
    settings = make_settings(registration={"unused_client_ttl": 3600})
    clock = FakeClock()
    async with running(settings, clock=clock) as client:
        registered = await register_machine(settings, client, scope="mcp:tools")
        assert registered.status_code == 201, registered.text
        body = registered.json()
        robot = Confidential(body["client_id"], body["client_secret"])
        async with counting(client) as statements:
            for _ in range(5):
                assert (await client.post("/token", **cc(robot))).status_code == 200
        assert [s.split()[0] for s in statements.writes] == ["UPDATE"]
        clock.advance(3601)
        await housekeeping(client.app.state.bastion)  # type: ignore[attr-defined]
        assert (await client.post("/token", **cc(robot))).status_code == 200


async def test_a04_deleting_a_registration_stops_its_cached_client_at_once(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 7592 §2.3: after DELETE the client_id is invalid, also for a client whose
    registration this process had cached a moment before."""
    registered = await register_machine(settings, app_client, scope="mcp:tools")
    body = registered.json()
    robot = Confidential(body["client_id"], body["client_secret"])
    assert (await app_client.post("/token", **cc(robot))).status_code == 200
    gone = await app_client.delete(
        body["registration_client_uri"],
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
    )
    assert gone.status_code == 204
    assert_error(await app_client.post("/token", **cc(robot)), 401, "invalid_client")


async def test_a04_updating_a_registration_applies_at_once_to_the_cached_client(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 7592 §2.2: a PUT replaces the metadata; dropping client_credentials from grant_types
    makes the next token request unauthorized_client, although the client was cached."""
    registered = await register_machine(
        settings, app_client, scope="mcp:tools", client_name="Robot"
    )
    body = registered.json()
    robot = Confidential(body["client_id"], body["client_secret"])
    assert (await app_client.post("/token", **cc(robot))).status_code == 200
    replaced = await app_client.put(
        body["registration_client_uri"],
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
        json={
            "client_id": body["client_id"],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "redirect_uris": ["https://robot.example.com/cb"],
            "client_name": "Robot",
        },
    )
    assert replaced.status_code == 200, replaced.text
    assert_error(await app_client.post("/token", **cc(robot)), 400, "unauthorized_client")


async def _until_refused(client: httpx.AsyncClient, request: dict[str, Any]) -> httpx.Response:
    """Ask until the token endpoint refuses (bounded: 100 tries, 50 ms apart)."""
    response = await client.post("/token", **request)
    for _ in range(100):
        if response.status_code != 200:
            break
        await asyncio.sleep(0.05)
        response = await client.post("/token", **request)
    return response


@pytest.fixture
async def short_cache(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    settings = make_settings(client_cache_ttl=1)
    async with running(settings) as client:
        yield settings, client


async def test_a01_a_secret_rotated_by_another_process_stops_working(
    short_cache: tuple[Settings, httpx.AsyncClient],
) -> None:
    """OAuth 2.1 §2.4.1: after ``bastion clients rotate-secret`` (another process, its own
    database handle) the old secret is refused and the new one works: at once on PostgreSQL
    (NOTIFY), within client_cache_ttl elsewhere."""
    settings, client = short_cache
    service = await confidential_client(settings)
    assert (await client.post("/token", **cc(service))).status_code == 200
    new_secret = await admin.rotate_client_secret(settings, service.client_id)
    assert_error(await _until_refused(client, cc(service)), 401, "invalid_client")
    rotated = Confidential(service.client_id, new_secret)
    assert (await client.post("/token", **cc(rotated))).status_code == 200


async def test_a01_a_client_removed_by_another_process_stops_working(
    short_cache: tuple[Settings, httpx.AsyncClient],
) -> None:
    """``bastion clients remove`` in another process: the client_id is unknown from then on
    (PostgreSQL: at once; elsewhere within client_cache_ttl)."""
    settings, client = short_cache
    service = await confidential_client(settings)
    assert (await client.post("/token", **cc(service))).status_code == 200
    await admin.remove_client(settings, service.client_id)
    assert_error(await _until_refused(client, cc(service)), 401, "invalid_client")


async def test_a01_on_postgresql_other_processes_drop_a_changed_client_without_waiting(
    make_settings: Callable[..., Settings],
) -> None:
    """With a cache TTL far longer than the test, a rotation in another process is seen anyway:
    the change is announced on the ``bastion_clients`` channel and the listener drops the
    entry (the first request after the commit may still race the notification, hence the
    bounded wait)."""
    settings = make_settings(client_cache_ttl=300)
    if settings.database_schema is None:
        pytest.skip("NOTIFY is a PostgreSQL feature; this backend bounds staleness by the TTL")
    async with running(settings) as client:
        service = await confidential_client(settings)
        assert (await client.post("/token", **cc(service))).status_code == 200
        await admin.rotate_client_secret(settings, service.client_id)
        assert_error(await _until_refused(client, cc(service)), 401, "invalid_client")


async def test_a01_an_unknown_client_id_is_not_cached_so_a_later_registration_works(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """A refused client_id is not remembered: a client added afterwards (here through the
    admin API, as by another process) works on its first request."""
    request = {
        "data": {"grant_type": "client_credentials", "resource": RESOURCE},
        "headers": {"Authorization": basic("later", "not-yet")},
    }
    assert_error(await app_client.post("/token", **request), 401, "invalid_client")
    later = await confidential_client(settings, client_id="later")
    assert (await app_client.post("/token", **cc(later))).status_code == 200


async def test_a01_no_database_write_happens_for_refused_client_credentials_requests(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """A wrong secret is refused (RFC 6749 §5.2 invalid_client) without writing anything."""
    wrong = Confidential(service.client_id, "wrong-secret")
    async with counting(app_client) as statements:
        for _ in range(3):
            assert_error(await app_client.post("/token", **cc(wrong)), 401, "invalid_client")
    assert statements.writes == []


async def test_clients_table_rows_are_unchanged_by_token_requests(
    settings: Settings, app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """Issuing tokens to a pre-registered client leaves its row as it was (no first-use or
    last-use bookkeeping for clients that never expire)."""

    async def row() -> Any:
        db = Database(settings.effective_database_url, schema=settings.database_schema)
        try:
            async with db.connect() as conn:
                query = sa.select(schema.clients).where(
                    schema.clients.c.client_id == service.client_id
                )
                return (await conn.execute(query)).one()
        finally:
            await db.dispose()

    before = await row()
    for _ in range(3):
        assert (await app_client.post("/token", **cc(service))).status_code == 200
    assert await row() == before
