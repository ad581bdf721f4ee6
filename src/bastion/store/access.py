"""Access rules (bastion.access) in the database: the operator changes them with
``bastion access`` while servers run; every change is announced to the other processes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.access.rules import AccessRule
from bastion.store.clients import announce_change
from bastion.store.prepared import Prepared
from bastion.store.schema import access_rules

# The payload a client-cache listener sees for a change of the rules (not of one client).
RULES_CHANGED = "access-rules"


_ALL = sa.select(access_rules).order_by(access_rules.c.resource, access_rules.c.who)
# Read at every refresh and code redemption: built once.
_FOR_RESOURCE = Prepared(
    _ALL.where(
        access_rules.c.resource.in_([sa.bindparam("resource", type_=sa.String), sa.literal("*")])
    )
)


async def list_rules(conn: AsyncConnection, resource: str | None = None) -> list[AccessRule]:
    """Every rule (or those about ``resource``, ``*`` rules included), by resource and who."""
    if resource is None:
        found = (await conn.execute(_ALL)).mappings()
    else:
        found = await _FOR_RESOURCE.all(conn, {"resource": resource})  # type: ignore[assignment]
    return [AccessRule(r["resource"], r["who"], tuple(r["scopes"])) for r in found]


async def put_rule(conn: AsyncConnection, rule: AccessRule, now: int) -> bool:
    """Add a rule, or replace the scopes of the rule for the same resource and who; True when
    it is new."""
    where = (access_rules.c.resource == rule.resource) & (access_rules.c.who == rule.who)
    existed = await conn.execute(sa.delete(access_rules).where(where))
    await conn.execute(
        sa.insert(access_rules).values(
            resource=rule.resource, who=rule.who, scopes=list(rule.scopes), created_at=now
        )
    )
    await announce_change(conn, RULES_CHANGED)
    return not existed.rowcount


async def delete_rule(conn: AsyncConnection, resource: str, who: str) -> bool:
    """Remove a rule; True if it existed."""
    result = await conn.execute(
        sa.delete(access_rules).where(
            access_rules.c.resource == resource, access_rules.c.who == who
        )
    )
    await announce_change(conn, RULES_CHANGED)
    return bool(result.rowcount)


async def delete_rules_of(conn: AsyncConnection, who: str) -> int:
    """Remove every rule naming ``who`` (a client that is removed); how many there were."""
    result = await conn.execute(sa.delete(access_rules).where(access_rules.c.who == who))
    await announce_change(conn, RULES_CHANGED)
    return int(result.rowcount or 0)


__all__ = ["RULES_CHANGED", "delete_rule", "delete_rules_of", "list_rules", "put_rule"]
