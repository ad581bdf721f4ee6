"""The database-backed replay guard: single-use identifiers shared by every process on one
database (the ``used_assertions`` table; see :mod:`bastion.oauth.replay`)."""

from __future__ import annotations

from bastion.store import grants
from bastion.store.database import Database
from bastion.tokens import secrets as opaque

# Seconds between two sweeps of expired ids by one guard. The authorization server's
# housekeeping sweeps too; this keeps the table small where a gateway writes most of the rows.
PURGE_INTERVAL = 60


class DatabaseReplayGuard:
    """Records identifiers in ``used_assertions``; ``purpose`` keeps one use of the table (DPoP
    proofs at the token endpoint, at a resource, ID-JAGs...) apart from the others. A first
    use costs one statement; expired ids are swept at most every :data:`PURGE_INTERVAL` seconds."""

    def __init__(self, db: Database, purpose: str) -> None:
        self._db = db
        self.purpose = purpose
        self._purged_at: int | None = None

    def __repr__(self) -> str:
        return f"DatabaseReplayGuard(purpose={self.purpose!r})"

    async def first_use(self, key: str, expires_at: int, now: int) -> bool:
        """Record ``key`` until ``expires_at``; False if any process recorded it before."""
        digest = opaque.digest(f"{self.purpose} {key}")
        # One statement, atomic on its own: on PostgreSQL it commits without BEGIN/COMMIT.
        async with self._db.statements() as conn:
            if self._purged_at is None or now - self._purged_at >= PURGE_INTERVAL:
                self._purged_at = now
                await grants.purge_used_assertions(conn, now)
            return await grants.use_assertion_once(conn, digest, expires_at, now)


__all__ = ["PURGE_INTERVAL", "DatabaseReplayGuard"]
