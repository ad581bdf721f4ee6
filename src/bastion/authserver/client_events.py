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

import json
from typing import Protocol

from bastion.follower import Follower
from bastion.logs import get_logger
from bastion.store.clients import CHANGES_CHANNEL
from bastion.store.database import Database
from bastion.store.notifications import listen, supports_listen

log = get_logger("bastion.clients")


class ClientCache(Protocol):
    """What the listener invalidates: :class:`bastion.authserver.clients.ClientDirectory`."""

    @property
    def cache_ttl(self) -> float:
        """Seconds a cached client is kept (``client_cache_ttl``)."""
        ...

    def invalidate(self, client_id: str | None = None) -> None:
        """Forget one cached client (or all of them, with None)."""
        ...


class ClientChangeListener(Follower):
    """LISTENs for client changes and invalidates ``directory`` (PostgreSQL with asyncpg only;
    elsewhere :meth:`start` does nothing)."""

    topic = "client changes"

    def __init__(self, db: Database, directory: ClientCache) -> None:
        super().__init__(log)
        self.db = db
        self.directory = directory
        self.consequence = (
            f"cached clients expire after client_cache_ttl = {directory.cache_ttl} s until it "
            "is back"
        )

    @property
    def supported(self) -> bool:
        return supports_listen(self.db)

    @property
    def source(self) -> str:
        return f"PostgreSQL notifications on {CHANGES_CHANNEL}"

    async def start(self, *, wait: float = 5.0) -> None:
        """Start listening (in the background); wait briefly for the first connection so that
        a server that starts listens from its first request."""
        if self.supported:
            await super().start(wait=wait)

    async def _follow(self) -> None:
        await listen(
            self.db, CHANGES_CHANNEL, on_listening=self._listening, on_notify=self._notified
        )

    async def _listening(self, _schema: str) -> None:
        # Changes made while nobody listened were missed: start from an empty cache.
        self.directory.invalidate()
        self._ready()

    def _notified(self, own_schema: str, payload: str) -> None:
        try:
            change = json.loads(payload)
            schema, client_id = change["schema"], change["client_id"]
        except (ValueError, KeyError, TypeError):
            self.directory.invalidate()
            return
        if schema == own_schema:
            self.directory.invalidate(client_id if isinstance(client_id, str) else None)


__all__ = ["ClientCache", "ClientChangeListener"]
