"""Quotas on what anyone may make the authorization server store or fetch before
authenticating (L9): client registrations, metadata document fetches, pending authorization
requests. Each has a limit per client address and one overall (``quotas`` settings); beyond
either the request is refused with 429 and ``Retry-After`` (RFC 6585 §4), nothing stored.

- Registrations (RFC 7591): per address and overall per hour, counted in the transaction that
  stores the client, so a refused one leaves no row.
- Client ID Metadata Document fetches: per address and overall per minute, counted only when a
  document is actually fetched (not when the cached copy is fresh), before the fetch.
- Pending authorization requests (those between ``/authorize`` and the redirect back): stored
  and not yet expired, per address and overall, counted in the transaction that stores one.

The address is the connecting peer's as the ASGI server reports it (behind a proxy listed in
``trusted_proxies``, the address that proxy reported; never a header a client can set), grouped
as one party controls addresses: an IPv6 address by its /64, an IPv4-mapped one as IPv4. It is
kept as a digest. Every count lives in the database (:mod:`bastion.store.quotas`), so the limits
hold for a deployment of several processes as a whole.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import Scope

from bastion.authserver.login_throttle import address_group
from bastion.clock import Clock
from bastion.config import QuotaSettings
from bastion.logs import get_logger
from bastion.oauth.errors import TooManyRequests
from bastion.store import grants
from bastion.store import quotas as counts
from bastion.store.database import Database
from bastion.store.grant_records import RequestRecord
from bastion.tokens import secrets as opaque

log = get_logger("bastion.quotas")

REGISTRATION_WINDOW = 3600
FETCH_WINDOW = 60
LONGEST_WINDOW = max(REGISTRATION_WINDOW, FETCH_WINDOW)


def requester(scope: Scope) -> str:
    """Whom a request counts against: the digest of its client's address group."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    return opaque.digest(f"address {address_group(host)}")


class Quotas:
    """Admits or refuses what the ``quotas`` settings limit; made once per app."""

    def __init__(self, db: Database, settings: QuotaSettings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self._scope = db.schema or ""

    async def admit_registration(self, conn: AsyncConnection, who: str, now: int) -> None:
        """Count a client registration in the transaction that stores it, or refuse it."""
        if not self.settings.enabled:
            return
        await counts.serialize(conn, f"registration {self._scope}")
        await counts.add_event(conn, "registration", who, now, REGISTRATION_WINDOW)
        used = await counts.events(conn, "registration", who, now, REGISTRATION_WINDOW)
        limits = self.settings
        _check(REGISTRATIONS, used, now, limits.registrations_per_address, limits.registrations)

    async def save_pending_authorization(
        self, conn: AsyncConnection, who: str, now: int, request: RequestRecord
    ) -> None:
        """Store a pending authorization request (in the caller's transaction), or refuse it
        when pending requests would exceed their limits."""
        limits = self.settings
        if limits.enabled:
            await counts.serialize(conn, f"pending {self._scope}")
        await grants.save_request(conn, request, requester=who)
        if limits.enabled:
            used = await counts.pending_requests(conn, who, now)
            mine, overall = limits.pending_authorizations_per_address, limits.pending_authorizations
            _check(PENDING, used, now, mine, overall)

    async def admit_fetch(self, who: str | None) -> None:
        """Count a metadata document fetch about to happen, or refuse it. ``None``: a fetch no
        request of a known address asked for, counted overall only."""
        limits = self.settings
        if not limits.enabled:
            return
        now = self.clock()
        async with self.db.transaction() as conn:
            await counts.serialize(conn, f"fetch {self._scope}")
            await counts.add_event(conn, "cimd_fetch", who or "", now, FETCH_WINDOW)
            used = await counts.events(conn, "cimd_fetch", who or "", now, FETCH_WINDOW)
            mine = limits.cimd_fetches_per_address if who else None
            _check(FETCHES, used, now, mine, limits.cimd_fetches)


class _Quota(NamedTuple):
    what: str
    per: str
    setting: str  # the name of the overall limit; + "_per_address" for the other


REGISTRATIONS = _Quota("client registrations", "in the last hour", "registrations")
PENDING = _Quota(
    "pending authorization requests", "waiting for a sign-in", "pending_authorizations"
)
FETCHES = _Quota("client metadata document fetches", "in the last minute", "cimd_fetches")


def _check(quota: _Quota, used: counts.Usage, now: int, mine: int | None, overall: int) -> None:
    """Raise TooManyRequests when ``used`` (this request's row included) exceeds a limit."""
    what, per, setting = quota
    if mine is not None and used.mine > mine:
        log.info(
            "refused: one address has %d %s %s (quotas.%s_per_address)", mine, what, per, setting
        )
        raise TooManyRequests(
            f"too many {what} from your address {per}; at most {mine} "
            f"(quotas.{setting}_per_address)",
            retry_after=used.mine_until - now,
        )
    if used.overall > overall:
        log.warning(
            "refused: all addresses together have %d %s %s (quotas.%s); raise it if this is "
            "legitimate load",
            overall,
            what,
            per,
            setting,
        )
        raise TooManyRequests(
            f"the server has too many {what} {per}; at most {overall} (quotas.{setting})",
            retry_after=used.overall_until - now,
        )


__all__ = ["FETCH_WINDOW", "LONGEST_WINDOW", "REGISTRATION_WINDOW", "Quotas", "requester"]
