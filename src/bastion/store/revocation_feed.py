"""Keeping a :class:`~bastion.resource.revocation.RevocationList` current from bastion's
database, in every process that can reach it: the authorization server, the registry, the
gateway.

- Start (and every reconnection): every revocation still relevant is loaded
  (:func:`bastion.store.revocations.live`).
- PostgreSQL: the feed LISTENs on ``bastion_revocations``; each notification carries the entry
  (schema, id, kind, value, expires_at) and is applied at once, so a revocation committed by any
  process or the CLI reaches the list within a round trip. Notifications sent while the
  connection was down are lost, hence the reload on reconnecting.
- SQLite (no notifications): the feed reads the rows added after the last id it saw every
  ``revocations.poll_interval`` seconds (one indexed query). Ids are never reused and SQLite
  commits one writer at a time, so ids appear in the order they commit.

The feed never migrates the database: a gateway may start before the authorization server has
created the table, and simply retries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import httpx

from bastion.clock import Clock, system_clock
from bastion.config import Settings
from bastion.ops import metrics
from bastion.resource.revocation import RevocationList
from bastion.resource.revocation_feed import HttpRevocationFeed, RevocationFeed
from bastion.store import revocations as rows
from bastion.store.database import Database
from bastion.store.notifications import listen, supports_listen


class DatabaseRevocationFeed(RevocationFeed):
    """Follow the ``revocations`` table of ``db`` into ``revocations`` (see the module
    docstring); ``poll_interval`` seconds between reads on SQLite. With ``owns_db``,
    :meth:`aclose` also disposes of ``db``."""

    def __init__(
        self,
        db: Database,
        revocations: RevocationList,
        *,
        poll_interval: float = 0.25,
        clock: Clock = system_clock,
        owns_db: bool = False,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        super().__init__(revocations)
        self.db = db
        self._owns_db = owns_db
        self.poll_interval = poll_interval
        self.clock = clock
        self.hint = (
            "check database_url and database_schema, and that `bastion serve` or "
            "`bastion db upgrade` has created bastion's tables there"
        )

    def __repr__(self) -> str:
        return f"DatabaseRevocationFeed({self.source!r})"

    async def aclose(self) -> None:
        """Stop following; dispose of the database handle if this feed was given it to own."""
        await super().aclose()
        if self._owns_db:
            await self.db.dispose()

    @property
    def source(self) -> str:
        url = self.db.engine.url.render_as_string(hide_password=True)
        return f"{url} (schema {self.db.schema})" if self.db.schema else url

    async def _follow(self) -> None:
        if supports_listen(self.db):
            await listen(
                self.db,
                rows.CHANNEL,
                on_listening=self._listening,
                on_notify=self._notified,
                on_keepalive=self.revocations.prune,
            )
        else:
            await self._poll()

    def _since(self) -> int:
        """Rows that expired less than the list's grace ago still count."""
        return self.clock() - self.revocations.grace

    def _apply(self, found: Sequence[rows.Revocation]) -> None:
        grants = {r.value: r.expires_at for r in found if r.kind == "grant"}
        tokens = {r.value: r.expires_at for r in found if r.kind == "token"}
        self.revocations.update(grants, tokens)
        self.revocations.prune()

    async def _listening(self, _schema: str) -> None:
        await self._reload()

    async def _reload(self) -> int:
        """Load every relevant revocation; the id of the newest row at that moment."""
        async with self.db.connect() as conn:
            # The newest id first: a row committed between the two reads is read again by the
            # next poll rather than missed.
            newest = await rows.last_id(conn)
            found = await rows.live(conn, self._since())
        self._apply(found)
        self._ready()
        return newest

    async def _poll(self) -> None:
        last = await self._reload()
        while True:
            await asyncio.sleep(self.poll_interval)
            async with self.db.connect() as conn:
                found = await rows.after(conn, last, self._since())
            if found:
                last = found[-1].id
            self._apply(found)
            now = self.clock()
            for row in found:
                metrics.revocation_applied(now - row.revoked_at)

    def _notified(self, own_schema: str, payload: str) -> None:
        try:
            entry = json.loads(payload)
            schema, kind, value, expires_at = (
                entry["schema"],
                entry["kind"],
                entry["value"],
                entry["expires_at"],
            )
        except (ValueError, KeyError, TypeError):
            return  # not one of ours; the next reload covers anything missed
        if schema == own_schema and kind in ("grant", "token") and isinstance(expires_at, int):
            self.revocations.add(kind, value, expires_at)
            self.revocations.prune()
            if isinstance(entry.get("revoked_at"), int):
                metrics.revocation_applied(self.clock() - entry["revoked_at"])


def revocation_feed(
    settings: Settings,
    revocations: RevocationList,
    *,
    db: Database | None = None,
    http: httpx.AsyncClient | None = None,
) -> RevocationFeed:
    """The feed that keeps ``revocations`` current for a resource of ``settings`` running apart
    from the authorization server (the gateway, a registry on its own origin): bastion's
    database (``db``, or one opened here from ``settings`` and never migrated), or the
    authorization server's revocation document when ``revocations.feed = "http"`` (fetched with
    ``http`` if given)."""
    config = settings.revocations
    if config.feed == "http":
        url = config.url or f"{settings.issuer}/revocations"
        return HttpRevocationFeed(url, revocations, http=http, wait=config.max_wait)
    own = db is None
    if db is None:
        db = Database(settings.effective_database_url, schema=settings.database_schema)
    return DatabaseRevocationFeed(db, revocations, poll_interval=config.poll_interval, owns_db=own)


__all__ = ["DatabaseRevocationFeed", "revocation_feed"]
