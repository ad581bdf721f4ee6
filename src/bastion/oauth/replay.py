"""Single-use identifiers: the replay check of DPoP proofs (RFC 9449 §11.1) and of assertions
(RFC 7523 §3) by their ``jti``.

:class:`ReplayGuard` is what a checker needs; :class:`MemoryReplayGuard` keeps the identifiers
in this process (a resource without a database), and
:class:`bastion.store.replays.DatabaseReplayGuard` in the database, so that every process behind
one load balancer refuses a proof any of them has seen.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol

log = logging.getLogger("bastion.replay")


class ReplayGuard(Protocol):
    """Remembers identifiers until they expire."""

    async def first_use(self, key: str, expires_at: int, now: int) -> bool:
        """Record ``key`` until ``expires_at``; False if it is already recorded (a replay)."""
        ...


class MemoryReplayGuard:
    """Identifiers kept in this process, at most ``max_entries`` of them.

    When full of identifiers that have not expired, the oldest is forgotten (and a warning
    logged once): a proof that old could then be replayed to this process, so size it above
    the requests a process takes in one proof window."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._warned = False

    def __repr__(self) -> str:
        return f"MemoryReplayGuard(max_entries={self.max_entries})"

    def __len__(self) -> int:
        return len(self._seen)

    async def first_use(self, key: str, expires_at: int, now: int) -> bool:
        """Record ``key`` until ``expires_at``; False if it is already recorded and live."""
        seen = self._seen.get(key)
        if seen is not None and seen > now:
            return False
        # Insertion order is nearly expiry order (one window for all); drop expired from the front.
        while self._seen:
            oldest_key, oldest_exp = next(iter(self._seen.items()))
            if oldest_exp > now:
                break
            del self._seen[oldest_key]
        if len(self._seen) >= self.max_entries:
            self._seen.popitem(last=False)
            if not self._warned:
                self._warned = True
                log.warning(
                    "the in-process replay guard is full (%d identifiers live): the oldest are "
                    "forgotten early; raise its size or use the database-backed guard",
                    self.max_entries,
                )
        self._seen[key] = expires_at
        return True


__all__ = ["MemoryReplayGuard", "ReplayGuard"]
