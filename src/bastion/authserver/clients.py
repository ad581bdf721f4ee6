"""Finding the client behind a client_id: the three registration routes of MCP 2026-07-28.

1. Pre-registered and dynamically registered clients (RFC 7591) live in the database.
2. A client_id that is an https URL is a Client ID Metadata Document, fetched and validated.
3. Anything else is unknown: refused, or, by the ``unknown_clients.policy = "loopback_public"``
   setting, admitted as a public client that may only redirect to loopback addresses. It is never
   stored: nothing is registered silently.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from bastion.authserver.cimd import MetadataDocumentResolver
from bastion.authserver.client_events import ClientChangeListener
from bastion.authserver.http import is_vschar
from bastion.clock import Clock
from bastion.config import Settings
from bastion.logs import get_logger
from bastion.oauth.client_metadata import ClientMetadata
from bastion.oauth.errors import InvalidClient
from bastion.oauth.redirect_uri import is_loopback_uri, matches
from bastion.store import clients as client_rows
from bastion.store.access import RULES_CHANGED
from bastion.store.clients import Client
from bastion.store.database import Database

log = get_logger("bastion.clients")

UNKNOWN_LOOPBACK = "unknown_loopback"


class ClientDirectory:
    """Resolves client_ids to :class:`Client` objects.

    Stored clients (pre-registered and dynamic) are kept in memory for ``cache_ttl`` seconds
    (``client_cache_ttl``; 0 disables it), at most ``cache_size`` of them, so that the token
    endpoint needs no database read per request. Only registered clients are cached, each for
    a few seconds, so the bound is rarely reached (about 2 KB a client): it is well above the
    clients a large deployment has, as a full cache drops the oldest entries first and clients
    taking turns would then each miss it. A change made through this process
    (RFC 7592 update or delete, first use) drops the entry at once (:meth:`invalidate`); on
    PostgreSQL every change, from any process or the CLI, is announced with NOTIFY and dropped
    by every listening process (:mod:`bastion.authserver.client_events`). Otherwise, and while a
    listener is reconnecting, another process's change is seen within ``cache_ttl`` seconds.
    Unknown client_ids are never cached: a client registered elsewhere works here at once.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        resolver: MetadataDocumentResolver,
        clock: Clock,
        *,
        cache_ttl: float | None = None,
        cache_size: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.settings = settings
        self.resolver = resolver
        self.clock = clock
        self.cache_ttl = settings.client_cache_ttl if cache_ttl is None else cache_ttl
        self.cache_size = cache_size
        self._monotonic = monotonic
        self._cache: OrderedDict[str, tuple[Client, float]] = OrderedDict()
        self._generation = 0
        self._reads: dict[str, asyncio.Lock] = {}
        self._listener: ClientChangeListener | None = None
        # Called with the changed client_id (None: any) on every invalidation; the access
        # policy hears of rule changes this way (bastion.store.access.RULES_CHANGED).
        self.on_change: list[Callable[[str | None], None]] = []

    async def start(self) -> None:
        """Listen for changes other processes make (PostgreSQL; a no-op elsewhere)."""
        if self._listener is None and self.cache_ttl > 0:
            self._listener = ClientChangeListener(self.db, self)
            await self._listener.start()

    async def aclose(self) -> None:
        """Stop listening."""
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None

    def invalidate(self, client_id: str | None = None) -> None:
        """Forget one cached client (or all of them, with None) after a change to it."""
        if client_id == RULES_CHANGED:
            # The access rules changed, not a client: only the listeners care.
            for listener in self.on_change:
                listener(client_id)
            return
        self._generation += 1
        if client_id is None:
            self._cache.clear()
        else:
            self._cache.pop(client_id, None)
        for listener in self.on_change:
            listener(client_id)

    def _cached(self, client_id: str) -> Client | None:
        hit = self._cache.get(client_id)
        if hit is not None:
            if hit[1] > self._monotonic():
                return hit[0]
            del self._cache[client_id]
        return None

    async def _stored(self, client_id: str) -> Client | None:
        """The stored client, from the cache when fresh, else from the database. Concurrent
        misses for one client_id wait for a single read (when an entry expires under load, one
        query refreshes it instead of one per request in flight)."""
        client = self._cached(client_id)
        if client is not None:
            return client
        lock = self._reads.setdefault(client_id, asyncio.Lock())
        try:
            async with lock:
                client = self._cached(client_id)
                if client is not None:
                    return client
                generation = self._generation
                now = self._monotonic()
                async with self.db.statements() as conn:  # one round trip on PostgreSQL
                    client = await client_rows.get(conn, client_id)
                # Not cached if a change was announced meanwhile: the row may be the old one.
                if client is not None and self.cache_ttl > 0 and generation == self._generation:
                    self._cache[client_id] = (client, now + self.cache_ttl)
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
                return client
        finally:
            if not lock.locked() and self._reads.get(client_id) is lock:
                del self._reads[client_id]

    async def find(
        self, client_id: str, *, requester: str | Callable[[], str] | None = None
    ) -> Client:
        """The client for ``client_id``; raise InvalidClient with a reason when there is none.

        ``requester`` (:func:`bastion.authserver.quotas.requester`, or a function that works it
        out, called only when needed) is whom fetching a client metadata document counts
        against; TooManyRequests when that quota is used up."""
        if not client_id or len(client_id) > 2048:
            raise InvalidClient("client_id is missing or too long")
        if not is_vschar(client_id):
            raise InvalidClient("client_id has characters RFC 6749 appendix A.1 does not allow")
        client = await self._stored(client_id)
        if client is not None:
            secret_expired = client.secret_expires_at and client.secret_expires_at < self.clock()
            if secret_expired:
                raise InvalidClient(f"the secret of client {client_id} has expired")
            return client
        cimd = self.settings.cimd
        if cimd.enabled and self.resolver.is_metadata_document_id(
            client_id, allow_http=cimd.allow_private_addresses
        ):
            who = requester() if callable(requester) else requester
            metadata = await self.resolver.resolve(client_id, requester=who)
            return Client(client_id=client_id, origin="metadata_document", metadata=metadata)
        if self.settings.unknown_clients.policy == "loopback_public":
            log.warning(
                "admitting unregistered client_id %r as a public client limited to loopback "
                "redirect URIs (unknown_clients.policy = loopback_public)",
                client_id,
            )
            return Client(
                client_id=client_id,
                origin=UNKNOWN_LOOPBACK,
                metadata=ClientMetadata(
                    token_endpoint_auth_method="none",
                    grant_types=["authorization_code", "refresh_token"],
                    response_types=["code"],
                    application_type="native",
                    client_name=None,
                ),
            )
        raise InvalidClient(
            f"client_id {client_id!r} is not registered with this authorization server. Register "
            "it (`bastion clients add`), use dynamic registration, use a client ID metadata "
            "document URL, or set unknown_clients.policy = loopback_public"
        )

    @staticmethod
    def redirect_allowed(client: Client, redirect_uri: str) -> bool:
        """Exact redirect URI matching (loopback ports may vary, RFC 8252 §7.3)."""
        if client.origin == UNKNOWN_LOOPBACK:
            return is_loopback_uri(redirect_uri) and "#" not in redirect_uri
        return matches(redirect_uri, client.metadata.redirect_uris)


__all__ = ["UNKNOWN_LOOPBACK", "ClientDirectory"]
