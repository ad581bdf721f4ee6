"""Slowing down password guessing at the log-in form, per address and per account.

- Per address and user name: after ``login.max_failures`` failures within
  ``login.failure_window`` the pair waits until the window has passed. Addresses are grouped as
  one client controls them: an IPv6 address by its /64 (one customer's network), an IPv4-mapped
  IPv6 address as the IPv4 address. The address is the connecting peer's, or the one a trusted
  proxy reported (``trusted_proxies``): a client cannot pick it.
- Per user name, from any address: once ``login.account_max_failures`` attempts have failed,
  each further attempt must wait 1 s after the last, then 2, 4, 8… up to ``login.max_backoff``;
  the count starts again after a success or ``login.account_failure_window`` quiet seconds. The
  attempt is counted before the password is checked, in a transaction that holds the account's
  row, so concurrent guesses cannot all slip through one opening; a correct password during a
  wait is refused like any other, and the wait is bounded so nobody is locked out for long.

Counts live in the database (every process sees them), keyed by digests, never by the name.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.config import LoginSettings
from bastion.store import users as user_rows
from bastion.store.database import Database
from bastion.tokens import secrets as opaque


def address_group(host: str) -> str:
    """The address a count is kept for: an IPv6 address's /64 network, an IPv4-mapped IPv6
    address's IPv4 address, anything else (IPv4, or not an address) as it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def backoff(excess: int, cap: int) -> int:
    """Seconds to wait after the ``excess``-th failure beyond the free ones (0-based): 1, 2, 4…
    never more than ``cap``."""
    return min(cap, 1 << min(excess, 32))


class LoginThrottle:
    """The two counts of one log-in attempt (see the module docstring)."""

    def __init__(self, db: Database, limits: LoginSettings, address: str, username: str) -> None:
        self.db = db
        self.limits = limits
        self._address_key = opaque.digest(f"{address_group(address)}|{username}")
        self._account_key = opaque.digest(f"account|{username}")

    async def admit(self, now: int) -> int:
        """0 when the attempt may check its password (it is counted against the account
        already), else the seconds to wait."""
        limits = self.limits
        async with self.db.connect() as conn:
            failed, started = await user_rows.failures(
                conn, self._address_key, now - limits.failure_window
            )
        if failed >= limits.max_failures:
            return started + limits.failure_window - now
        async with self.db.transaction() as conn:
            failed, last = await user_rows.lock_failures(conn, self._account_key)
            if now - last >= limits.account_failure_window:
                failed = 0
            excess = failed - limits.account_max_failures
            if excess >= 0 and now < last + backoff(excess, limits.max_backoff):
                return last + backoff(excess, limits.max_backoff) - now
            await user_rows.set_failures(conn, self._account_key, failed + 1, now)
        return 0

    async def failed(self, conn: AsyncConnection, now: int) -> None:
        """Count a wrong password against the address (the account counted it in admit), in
        the transaction that records the failure."""
        await user_rows.record_failure(conn, self._address_key, now, self.limits.failure_window)

    async def succeeded(self, conn: AsyncConnection) -> None:
        """Forget both counts, in the transaction that starts the session."""
        await user_rows.clear_failures(conn, self._address_key, self._account_key)


def wait_message(seconds: int) -> str:
    """What the log-in page says about a pause of ``seconds``."""
    if seconds < 120:
        unit = "second" if seconds == 1 else "seconds"
        return f"Too many failed attempts. Wait {seconds} {unit} before trying again."
    return f"Too many failed attempts. Wait {-(-seconds // 60)} minutes before trying again."


__all__ = ["LoginThrottle", "address_group", "backoff", "wait_message"]
