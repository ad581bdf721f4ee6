"""Cross-process invalidation of cached clients on PostgreSQL (LISTEN/NOTIFY).

Every change to a stored client (RFC 7592 update or delete, ``bastion clients rotate-secret`` or
``remove``, housekeeping) sends a NOTIFY on ``bastion_clients`` in its transaction
(:func:`bastion.store.clients.announce_change`). Each server process keeps one connection of its
own (outside the pool) LISTENing there and drops the cached copy as soon as the change commits,
so that a removed client or a rotated secret stops working in every process at once, not after
``client_cache_ttl``.

If the connection is lost, notifications sent meanwhile are lost too: the listener reconnects
with backoff and then drops the whole cache. Until it is back, cached clients expire after
``client_cache_ttl`` as on SQLite, which has no such channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bastion.authserver.clients import ClientDirectory
from bastion.logs import get_logger
from bastion.store.clients import CHANGES_CHANNEL
from bastion.store.database import Database

log = get_logger("bastion.clients")

KEEPALIVE = 30.0
MAX_BACKOFF = 30.0


class ClientChangeListener:
    """LISTENs for client changes and invalidates ``directory`` (PostgreSQL with asyncpg only;
    elsewhere :meth:`start` does nothing)."""

    def __init__(self, db: Database, directory: ClientDirectory) -> None:
        self.db = db
        self.directory = directory
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._schema: str | None = None

    @property
    def supported(self) -> bool:
        return self.db.engine.dialect.driver == "asyncpg"

    async def start(self) -> None:
        """Start listening (in the background); wait briefly for the first connection so that
        a server that starts listens from its first request."""
        if not self.supported or self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="bastion client change listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 5)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._listen()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be restarting: try again later
                log.warning(
                    "listening for client changes failed (%s); cached clients expire after "
                    "client_cache_ttl = %s s until it is back; retrying in %.0f s",
                    exc,
                    self.directory.cache_ttl,
                    backoff,
                )
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _listen(self) -> None:
        _, options = self.db.engine.dialect.create_connect_args(self.db.engine.sync_engine.url)
        if self.db.schema:
            options["server_settings"] = {"search_path": self.db.schema}
        connection = await asyncpg.connect(**options, timeout=10)
        lost = asyncio.Event()
        try:
            self._schema = await connection.fetchval("SELECT current_schema()")
            connection.add_termination_listener(lambda _conn: lost.set())
            await connection.add_listener(CHANGES_CHANNEL, self._notified)
            # Changes made while nobody listened were missed: start from an empty cache.
            self.directory.invalidate()
            self.connected.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), KEEPALIVE)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=10)
            raise ConnectionError("the listening connection was closed")
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=5)

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            change = json.loads(payload)
            schema, client_id = change["schema"], change["client_id"]
        except (ValueError, KeyError, TypeError):
            self.directory.invalidate()
            return
        if schema == self._schema:
            self.directory.invalidate(client_id if isinstance(client_id, str) else None)


__all__ = ["ClientChangeListener"]
