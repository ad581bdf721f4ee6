"""Administration of who may use what: access rules and live grants (``bastion access``,
``bastion grants``). Every change applies to tokens already issued: grants the new rules no
longer allow are revoked in the same transaction, and resource servers hear of it within a
second (:mod:`bastion.store.revocations`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.access.policy import reconcile, renew_machine_grant
from bastion.access.rules import AccessRule, check_scopes, check_who
from bastion.authserver.admin import (
    AdminError,
    changed,
    check_known_scopes,
    database,
    resolve_resource,
)
from bastion.clock import system_clock
from bastion.config import Settings
from bastion.store import access as rule_rows
from bastion.store import clients as client_rows
from bastion.store import grants
from bastion.store import users as user_rows
from bastion.store.auth_audit import Event
from bastion.store.database import Database
from bastion.store.schema import token_families, users


async def _withdraw_machine_tokens(
    conn: AsyncConnection, settings: Settings, who: str, now: int, reason: str
) -> None:
    """A machine client's rules narrowed: its tokens stop working, it obtains new ones."""
    client = await client_rows.get(conn, who.removeprefix("client:"))
    if client is not None:
        ttl = settings.tokens.access_token_ttl
        await renew_machine_grant(conn, client, now, token_ttl=ttl, reason=reason)


async def allow(
    settings: Settings,
    resource: str,
    who: str,
    scopes: list[str],
    *,
    db: Database | None = None,
) -> tuple[AccessRule, int]:
    """Add (or replace) the rule that ``who`` may obtain ``scopes`` (none: all) for
    ``resource``; the rule and how many live grants it ended (a first rule about people closes
    the resource to everyone else)."""
    target = resolve_resource(settings, resource)
    try:
        upgraded = settings.upgrade_scopes(scopes, target)
        rule = AccessRule(target, check_who(who), check_scopes(upgraded or ["*"]))
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    check_known_scopes(settings, list(rule.scopes), target)
    if rule.is_machine:
        async with database(settings, db) as store, store.connect() as conn:
            if await client_rows.get(conn, rule.who.removeprefix("client:")) is None:
                raise AdminError(f"no client {rule.who[7:]!r}; see `bastion clients list`")
    now = system_clock()
    async with database(settings, db) as store, store.transaction() as conn:
        before = [r for r in await rule_rows.list_rules(conn) if r.resource == target]
        replaced = next((r for r in before if r.who == rule.who), None)
        await rule_rows.put_rule(conn, rule, now)
        ended = 0
        if rule.is_machine:
            if replaced is not None and replaced.scopes != rule.scopes:
                await _withdraw_machine_tokens(conn, settings, rule.who, now, "access changed")
        else:
            ended = await reconcile(
                conn,
                now,
                resource=target,
                reason="access rules changed",
                upgrade=settings.upgrade_scopes,
            )
        detail = {"who": rule.who, "scopes": list(rule.scopes), "grants_revoked": ended}
        await changed(conn, Event.ACCESS_ALLOWED, "resource", target, detail)
    return rule, ended


async def remove(settings: Settings, resource: str, who: str, *, db: Database | None = None) -> int:
    """Delete a rule; how many live grants of people it ended."""
    target = resolve_resource(settings, resource)
    now = system_clock()
    async with database(settings, db) as store, store.transaction() as conn:
        if not await rule_rows.delete_rule(conn, target, who):
            raise AdminError(
                f"no rule for {who!r} on {target}; see `bastion access list {resource}`"
            )
        await changed(conn, Event.ACCESS_REMOVED, "resource", target, {"who": who})
        if who.startswith("client:"):
            await _withdraw_machine_tokens(conn, settings, who, now, "access removed")
            return 0
        return await reconcile(
            conn,
            now,
            resource=target,
            reason="access rules changed",
            upgrade=settings.upgrade_scopes,
        )


async def list_rules(
    settings: Settings, resource: str | None = None, *, db: Database | None = None
) -> list[AccessRule]:
    """The rules (about ``resource`` and every resource, or all of them)."""
    target = resolve_resource(settings, resource) if resource else None
    async with database(settings, db) as store, store.connect() as conn:
        return await rule_rows.list_rules(conn, target)


@dataclass(frozen=True)
class Grant:
    """A live grant a person gave a client: its id (the tokens' grant_id), who, to which
    client, for which resource and scopes, and when it began and ends."""

    grant_id: str
    subject: str
    username: str | None
    client_id: str
    resource: str
    scope: str
    created_at: int
    expires_at: int


def _grants_query(user_id: str | None, client_id: str | None, now: int) -> sa.Select[Any]:
    q = (
        sa.select(token_families, users.c.username)
        .outerjoin(users, users.c.id == token_families.c.subject)
        .where(token_families.c.revoked_at.is_(None), token_families.c.expires_at > now)
        .order_by(token_families.c.created_at)
    )
    if user_id is not None:
        q = q.where(token_families.c.subject == user_id)
    if client_id is not None:
        q = q.where(token_families.c.client_id == client_id)
    return q


async def _user_id(conn: AsyncConnection, username: str | None) -> str | None:
    if username is None:
        return None
    user = await user_rows.by_username(conn, username)
    if user is None:
        raise AdminError(f"no user {username!r}; see `bastion users list`")
    return user.id


async def list_grants(
    settings: Settings,
    *,
    username: str | None = None,
    client_id: str | None = None,
    db: Database | None = None,
) -> list[Grant]:
    """The live grants (of one user, of one client, or all)."""
    now = system_clock()
    async with database(settings, db) as store, store.connect() as conn:
        rows = await conn.execute(_grants_query(await _user_id(conn, username), client_id, now))
        return [
            Grant(
                r.id,
                r.subject,
                r.username,
                r.client_id,
                r.resource,
                r.scope,
                r.created_at,
                r.expires_at,
            )
            for r in rows
        ]


async def revoke_grants(
    settings: Settings,
    *,
    grant_id: str | None = None,
    username: str | None = None,
    client_id: str | None = None,
    db: Database | None = None,
) -> int:
    """Revoke one grant, or every grant of a user or of a client (refresh and access tokens
    stop working everywhere); how many were revoked."""
    if grant_id is None and username is None and client_id is None:
        raise AdminError("name a grant id, --user or --client")
    now = system_clock()
    async with database(settings, db) as store, store.transaction() as conn:
        if grant_id is not None:
            family = await grants.get_family(conn, grant_id)
            if family is None or family.revoked_at is not None:
                raise AdminError(f"no live grant {grant_id!r}; see `bastion grants list`")
            await grants.revoke_family(conn, grant_id, now, "revoked by an operator")
            await changed(conn, Event.GRANTS_REVOKED, "grant", grant_id, {"count": 1})
            return 1
        user_id = await _user_id(conn, username)
        count = await grants.revoke_families_of(
            conn, user_id, now, "revoked by an operator", client_id=client_id
        )
        detail = {"user": username, "client_id": client_id, "count": count}
        await changed(
            conn,
            Event.GRANTS_REVOKED,
            "user" if user_id else "client",
            user_id or client_id or "",
            detail,
            client_id=client_id,
        )
        return count


async def list_consents(
    settings: Settings,
    *,
    username: str | None = None,
    client_id: str | None = None,
    db: Database | None = None,
) -> list[user_rows.Consent]:
    """The remembered consents (of one user, of one client, or all), newest first."""
    async with database(settings, db) as store, store.connect() as conn:
        user_id = await _user_id(conn, username)
        return await user_rows.list_consents(conn, user_id=user_id, client_id=client_id)


async def withdraw_consent(
    settings: Settings,
    username: str,
    client_id: str,
    resource: str,
    *,
    db: Database | None = None,
) -> None:
    """Forget what ``username`` allowed ``client_id`` for ``resource``: their next
    authorization asks them again. Grants already given are left alone (revoke them apart)."""
    async with database(settings, db) as store, store.transaction() as conn:
        user_id = await _user_id(conn, username) or ""
        scope = await user_rows.forget_consent(conn, user_id, client_id, resource)
        if scope is None:
            raise AdminError(
                f"{username} has no remembered consent for client {client_id!r} on {resource}"
            )
        detail = {"username": username, "resource": resource, "scope": scope}
        await changed(conn, Event.CONSENT_WITHDRAWN, "user", user_id, detail, client_id=client_id)


__all__ = [
    "Grant",
    "allow",
    "list_consents",
    "list_grants",
    "list_rules",
    "remove",
    "revoke_grants",
    "withdraw_consent",
]
