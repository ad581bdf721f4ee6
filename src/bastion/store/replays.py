"""The database-backed replay guard: single-use identifiers shared by every process on one
database (the ``used_assertions`` table; see :mod:`bastion.oauth.replay`)."""

from __future__ import annotations

from bastion.store import grants
from bastion.store.database import Database
from bastion.tokens import secrets as opaque


class DatabaseReplayGuard:
    """Records identifiers in ``used_assertions``; ``purpose`` keeps one use of the table (DPoP
    proofs at the token endpoint, at a resource, ID-JAGs...) apart from the others."""

    def __init__(self, db: Database, purpose: str) -> None:
        self._db = db
        self.purpose = purpose

    def __repr__(self) -> str:
        return f"DatabaseReplayGuard(purpose={self.purpose!r})"

    async def first_use(self, key: str, expires_at: int, now: int) -> bool:
        """Record ``key`` until ``expires_at``; False if any process recorded it before."""
        digest = opaque.digest(f"{self.purpose} {key}")
        async with self._db.transaction() as conn:
            return await grants.use_assertion_once(conn, digest, expires_at, now)


__all__ = ["DatabaseReplayGuard"]
