"""The scopes a person may hold at a resource under the access rules, for grants that issue a
person's token without a consent page here (token exchange, ID-JAG)."""

from __future__ import annotations

from collections.abc import Iterable

from bastion.authserver.context import AuthServer
from bastion.oauth import scopes as scope_syntax
from bastion.oauth.errors import InvalidScope, InvalidTarget
from bastion.store.users import User


async def admitted_scopes(
    bastion: AuthServer, user: User, resource: str, wanted: Iterable[str], *, asked: bool
) -> str:
    """Of ``wanted``, what the access rules give ``user`` at ``resource``, as a scope string.
    Raises invalid_target when the rules do not admit the person there (RFC 8707 §2, RFC 8693
    §2.2.2), invalid_scope when they withhold a scope the request named (``asked``) or leave
    none."""
    async with bastion.db.connect() as conn:
        decision = await bastion.access.for_user(conn, user, resource, sorted(wanted))
    if not decision.allowed:
        raise InvalidTarget(
            f"{user.username} may not use {resource}: the access rules do not admit them"
        )
    if decision.withheld and (asked or not decision.scopes):
        raise InvalidScope(
            f"{user.username} may not obtain scope {' '.join(sorted(decision.withheld))} "
            f"at {resource}"
        )
    return scope_syntax.join(decision.scopes)


__all__ = ["admitted_scopes"]
