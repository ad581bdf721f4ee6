"""The access rules as an authorization-server process applies them.

Decisions about people read the rules of the resource from the database each time (they are
made at sign-in, code exchange and refresh, which read the database anyway), so a rule changed
by another process or the CLI applies to the very next one. Machine clients' decisions are the
hot path of the client_credentials grant: :class:`AccessPolicy` keeps the rules in memory for
them, and reads them again before refusing, so a rule just added is never missed. A rule removed
applies at once in the process that removed it and, on PostgreSQL, everywhere (NOTIFY);
otherwise within ``client_cache_ttl`` seconds, and the client's tokens were revoked anyway
(:func:`renew_machine_grant`).

:func:`reconcile` revokes the grants that the rules (or a person's groups) no longer allow, so a
change reaches tokens already issued, not only future ones.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.access.rules import LOCAL_IDP, AccessRule, Decision, Person, decide_machine
from bastion.access.rules import decide_person as _decide_person
from bastion.store import access as rule_rows
from bastion.store import clients as client_rows
from bastion.store import grants, revocations
from bastion.store import users as user_rows
from bastion.store.access import RULES_CHANGED
from bastion.store.clients import Client
from bastion.store.database import Database
from bastion.store.federation import links_of
from bastion.store.schema import token_families
from bastion.store.users import User

# The registry's old scope names renamed to the configured ones, for a resource
# (Settings.upgrade_scopes): rules and grants made before the rename decide as they did.
ScopeUpgrade = Callable[[Iterable[str], str], list[str]]


def _same(scopes: Iterable[str], resource: str) -> list[str]:
    return list(scopes)


def _upgraded(
    rules: Iterable[AccessRule], resource: str, upgrade: ScopeUpgrade
) -> list[AccessRule]:
    return [
        AccessRule(r.resource, r.who, tuple(upgrade(r.scopes, resource)))
        if r.applies_to(resource)
        else r
        for r in rules
    ]


def _needs_providers(rules: Iterable[AccessRule], resource: str) -> bool:
    return any(r.who.startswith("idp:") and r.applies_to(resource) for r in rules)


async def person_of(conn: AsyncConnection, user: User, *, with_providers: bool = True) -> Person:
    """The facts rules are matched against, for ``user`` (identity providers read only when
    ``with_providers``: only ``idp:`` rules need them)."""
    providers: set[str] = set()
    if with_providers:
        providers = {link.provider for link in await links_of(conn, user.id)}
        if user.password_hash:
            providers.add(LOCAL_IDP)
    return Person(
        username=user.username,
        groups=frozenset(user.groups),
        email=user.email,
        providers=frozenset(providers),
    )


async def decide_for_user(
    conn: AsyncConnection,
    rules: list[AccessRule],
    user: User,
    resource: str,
    requested: Iterable[str],
    upgrade: ScopeUpgrade = _same,
) -> Decision:
    """:func:`~bastion.access.rules.decide_person` for a stored user (rules and request with
    ``upgrade`` applied)."""
    person = await person_of(conn, user, with_providers=_needs_providers(rules, resource))
    rules = _upgraded(rules, resource, upgrade)
    return _decide_person(rules, resource, person, upgrade(requested, resource))


class AccessPolicy:
    """The rules of one process, cached for ``cache_ttl`` seconds (0: read on every use)."""

    def __init__(
        self,
        db: Database,
        *,
        cache_ttl: float,
        monotonic: Callable[[], float] = time.monotonic,
        upgrade: ScopeUpgrade = _same,
    ) -> None:
        self.db = db
        self.cache_ttl = cache_ttl
        self.upgrade = upgrade
        self._monotonic = monotonic
        self._rules: list[AccessRule] | None = None
        # The rules by whom they are about, for the rules list they were made from.
        self._by_who: tuple[list[AccessRule], dict[str, list[AccessRule]]] | None = None
        self._until = 0.0
        self._generation = 0
        self._lock = asyncio.Lock()

    def changed(self, what: str | None = None) -> None:
        """Forget the cached rules (``what``: the client-change payload; None: anything)."""
        if what is None or what == RULES_CHANGED:
            self._generation += 1
            self._rules = None

    async def rules(self) -> list[AccessRule]:
        """Every rule, from the cache when fresh."""
        if self._rules is not None and self._monotonic() < self._until:
            return self._rules
        async with self._lock:
            if self._rules is not None and self._monotonic() < self._until:
                return self._rules
            generation = self._generation
            started = self._monotonic()
            async with self.db.statements() as conn:  # one round trip on PostgreSQL
                found = await rule_rows.list_rules(conn)
            if generation == self._generation and self.cache_ttl > 0:
                self._rules, self._until = found, started + self.cache_ttl
            return found

    async def for_user(
        self, conn: AsyncConnection, user: User, resource: str, requested: Iterable[str]
    ) -> Decision:
        """What ``user`` may obtain for ``resource`` of the ``requested`` scopes (the rules
        read now, through ``conn``)."""
        rules = await rule_rows.list_rules(conn, resource)
        return await decide_for_user(conn, rules, user, resource, requested, self.upgrade)

    async def for_machine(
        self,
        client_id: str,
        resource: str,
        requested: Iterable[str],
        resource_scopes: Iterable[str],
    ) -> Decision:
        """What machine client ``client_id`` may obtain for ``resource``."""
        asked = self.upgrade(requested, resource)
        who = f"client:{client_id}"
        rules = _upgraded(self._about(await self.rules(), who), resource, self.upgrade)
        decision = decide_machine(rules, resource, client_id, asked, resource_scopes)
        if not decision.rules and self._rules is not None:
            self.changed()  # a rule added by another process is not missed
            rules = _upgraded(self._about(await self.rules(), who), resource, self.upgrade)
            decision = decide_machine(rules, resource, client_id, asked, resource_scopes)
        return decision

    def _about(self, rules: list[AccessRule], who: str) -> list[AccessRule]:
        """The rules of ``rules`` about ``who`` (only those can decide for a machine client):
        a lookup, not a walk through every client's rules on every token request."""
        if self._by_who is None or self._by_who[0] is not rules:
            index: dict[str, list[AccessRule]] = {}
            for rule in rules:
                index.setdefault(rule.who, []).append(rule)
            self._by_who = (rules, index)
        return self._by_who[1].get(who, [])


async def reconcile(
    conn: AsyncConnection,
    now: int,
    *,
    resource: str | None = None,
    user_id: str | None = None,
    reason: str = "access withdrawn",
    upgrade: ScopeUpgrade = _same,
) -> int:
    """Revoke every live grant of people (all, those for ``resource``, or those of ``user_id``)
    that the current rules and the person's current groups would no longer give in full; how
    many were revoked. Run in the transaction that changed the rules or the person; ``upgrade``
    renames old scope names in rules and grants alike, so a grant made under an old name is not
    ended by a rule that says the same under the new one."""
    rules = await rule_rows.list_rules(conn)
    q = sa.select(token_families).where(
        token_families.c.revoked_at.is_(None), token_families.c.expires_at > now
    )
    if resource is not None and resource != "*":
        q = q.where(token_families.c.resource == resource)
    if user_id is not None:
        q = q.where(token_families.c.subject == user_id)
    revoked = 0
    people: dict[str, User | None] = {}
    for family in list(await conn.execute(q)):
        if family.subject not in people:
            people[family.subject] = await user_rows.by_id(conn, family.subject)
        user = people[family.subject]
        decision = (
            await decide_for_user(conn, rules, user, family.resource, family.scope.split(), upgrade)
            if user is not None
            else None
        )
        if decision is None or not decision.allowed or decision.withheld:
            await grants.revoke_family(conn, family.id, now, reason)
            revoked += 1
    return revoked


async def withdraw_client(
    conn: AsyncConnection,
    client: Client,
    now: int,
    *,
    token_ttl: int,
    reason: str,
    keep: bool,
) -> int:
    """Revoke every grant of ``client``: the grants people gave it and its own machine tokens;
    a client that stays (``keep``) gets a new grant id for the tokens it obtains from now on.
    How many grants of people were revoked."""
    revoked = await grants.revoke_families_of(conn, None, now, reason, client_id=client.client_id)
    await renew_machine_grant(conn, client, now, token_ttl=token_ttl, reason=reason, keep=keep)
    return revoked


async def renew_machine_grant(
    conn: AsyncConnection,
    client: Client,
    now: int,
    *,
    token_ttl: int,
    reason: str,
    keep: bool = True,
) -> None:
    """Revoke the tokens ``client`` obtained for itself (client_credentials); a client that
    stays (``keep``) gets a new grant id for the tokens it obtains from now on."""
    if client.grant_id:
        await revocations.record(
            conn, "grant", client.grant_id, now=now, expires_at=now + token_ttl, reason=reason
        )
    if keep:
        await client_rows.update(conn, client.client_id, now, grant_id=secrets.token_hex(16))


__all__ = [
    "AccessPolicy",
    "ScopeUpgrade",
    "decide_for_user",
    "person_of",
    "reconcile",
    "renew_machine_grant",
    "withdraw_client",
]
