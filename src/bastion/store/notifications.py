"""PostgreSQL ``LISTEN`` on a connection of its own (asyncpg), for the processes that follow
changes announced with ``NOTIFY``: client changes (:mod:`bastion.authserver.client_events`) and
revocations (:mod:`bastion.store.revocation_feed`).

A notification sent while nobody listens is lost, so a follower reloads what it keeps every time
:func:`listen` connects (``on_listening``), and reconnects when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bastion.store.database import Database

KEEPALIVE = 30.0


def supports_listen(db: Database) -> bool:
    """Whether ``db`` can LISTEN (PostgreSQL through asyncpg)."""
    return db.engine.dialect.driver == "asyncpg"


async def listen(
    db: Database,
    channel: str,
    *,
    on_listening: Callable[[str], Awaitable[None]],
    on_notify: Callable[[str, str], None],
    on_keepalive: Callable[[], object] | None = None,
) -> None:
    """Connect, LISTEN on ``channel``, await ``on_listening(schema)`` (the connection's
    ``current_schema()``, which payloads name), then call ``on_notify(schema, payload)`` for
    every notification until the connection is lost (raises ConnectionError), checking it (and
    calling ``on_keepalive``) every KEEPALIVE seconds."""
    _, options = db.engine.dialect.create_connect_args(db.engine.sync_engine.url)
    if db.schema:
        options["server_settings"] = {"search_path": db.schema}
    connection = await asyncpg.connect(**options, timeout=10)
    lost = asyncio.Event()
    try:
        schema: str = await connection.fetchval("SELECT current_schema()")

        def notified(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            on_notify(schema, payload)

        connection.add_termination_listener(lambda _conn: lost.set())
        await connection.add_listener(channel, notified)
        await on_listening(schema)
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), KEEPALIVE)
            if not lost.is_set():
                await connection.fetchval("SELECT 1", timeout=10)
                if on_keepalive is not None:
                    on_keepalive()
        raise ConnectionError("the listening connection was closed")
    finally:
        with contextlib.suppress(Exception):
            await connection.close(timeout=5)


__all__ = ["KEEPALIVE", "listen", "supports_listen"]
