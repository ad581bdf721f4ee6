"""Initial access tokens for Dynamic Client Registration (RFC 7591 §3) made by an operator.

Stored by hash; each may expire and may be limited to a number of registrations, spent with one
conditional UPDATE so that racing registrations cannot use a token more often than allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.access.rules import AccessRule
from bastion.store.schema import registration_tokens


@dataclass(frozen=True)
class RegistrationToken:
    """What an initial access token allows: its label, and the rules (resources and scopes)
    a machine client registered with it receives (none: it registers people-only clients)."""

    token_hash: str
    label: str
    machine_rules: tuple[tuple[str, tuple[str, ...]], ...]
    created_at: int
    expires_at: int | None
    uses_left: int | None

    def rules_for(self, client_id: str) -> list[AccessRule]:
        """The access rules of a client registered with this token."""
        who = f"client:{client_id}"
        return [AccessRule(resource, who, scopes) for resource, scopes in self.machine_rules]


def _token(row: sa.Row[Any]) -> RegistrationToken:
    rules = tuple((r["resource"], tuple(r["scopes"])) for r in row.machine_rules or [])
    return RegistrationToken(
        row.token_hash, row.label, rules, row.created_at, row.expires_at, row.uses_left
    )


async def add(conn: AsyncConnection, token: RegistrationToken) -> None:
    """Store a new token (by hash)."""
    await conn.execute(
        sa.insert(registration_tokens).values(
            token_hash=token.token_hash,
            label=token.label,
            machine_rules=[{"resource": r, "scopes": list(s)} for r, s in token.machine_rules],
            created_at=token.created_at,
            expires_at=token.expires_at,
            uses_left=token.uses_left,
        )
    )


async def spend(conn: AsyncConnection, token_hash: str, now: int) -> RegistrationToken | None:
    """Use a token once: the token, or None when it is unknown, expired or used up."""
    t = registration_tokens.c
    q = (
        sa.update(registration_tokens)
        .where(
            t.token_hash == token_hash,
            sa.or_(t.expires_at.is_(None), t.expires_at > now),
            sa.or_(t.uses_left.is_(None), t.uses_left > 0),
        )
        .values(uses_left=sa.case((t.uses_left.is_(None), None), else_=t.uses_left - 1))
        .returning(*registration_tokens.c)
    )
    row = (await conn.execute(q)).first()
    return _token(row) if row else None


async def list_all(conn: AsyncConnection) -> list[RegistrationToken]:
    """Every token, oldest first."""
    rows = await conn.execute(
        sa.select(registration_tokens).order_by(registration_tokens.c.created_at)
    )
    return [_token(r) for r in rows]


async def remove(conn: AsyncConnection, label: str) -> int:
    """Delete the tokens with this label; how many there were."""
    result = await conn.execute(
        sa.delete(registration_tokens).where(registration_tokens.c.label == label)
    )
    return int(result.rowcount or 0)


__all__ = ["RegistrationToken", "add", "list_all", "remove", "spend"]
