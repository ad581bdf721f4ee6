"""AccessPolicy.for_machine looks a client's rules up instead of walking every rule: among many
clients' rules it decides exactly as the rules themselves do (bastion.access.rules), refusals
first, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.access.policy import AccessPolicy
from bastion.access.rules import AccessRule, decide_machine
from bastion.config import Settings
from bastion.store import access as rule_rows
from bastion.store.database import Database

A = "https://a.example/mcp"
B = "https://b.example/mcp"
SCOPES = ["read", "write"]
RULES = [
    *(AccessRule(A, f"client:c{i}", ("read",)) for i in range(40)),
    AccessRule(B, "client:c1", ("write",)),
    AccessRule("*", "client:everywhere", ("*",)),
    AccessRule(A, "group:staff", ("*",)),
]


@pytest.fixture
async def policy(settings: Settings) -> AsyncIterator[AccessPolicy]:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    await db.upgrade()
    async with db.transaction() as conn:
        for rule in RULES:
            await rule_rows.put_rule(conn, rule, 0)
    try:
        yield AccessPolicy(db, cache_ttl=60)
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("client", "resource", "asked", "allowed"),
    [
        ("nobody", A, ["read"], False),  # no rule at all
        ("staff", A, ["read"], False),  # a rule about people never admits a machine
        ("c2", B, ["read"], False),  # its rule is for another resource
        ("c1", A, ["write"], False),  # write is given on B only
        ("c1", A, ["read", "write"], False),
        ("c1", A, ["read"], True),
        ("c1", B, ["write"], True),
        ("c39", A, [], True),
        ("everywhere", B, ["read", "write"], True),
    ],
)
async def test_machine_decisions_among_many_rules(
    policy: AccessPolicy, client: str, resource: str, asked: list[str], allowed: bool
) -> None:
    decision = await policy.for_machine(client, resource, asked, SCOPES)
    assert decision == decide_machine(RULES, resource, client, asked, SCOPES)
    assert decision.allowed is allowed


async def test_a_rule_added_later_is_seen(policy: AccessPolicy) -> None:
    assert not (await policy.for_machine("late", A, ["read"], SCOPES)).allowed
    async with policy.db.transaction() as conn:
        await rule_rows.put_rule(conn, AccessRule(A, "client:late", ("read",)), 0)
    assert (await policy.for_machine("late", A, ["read"], SCOPES)).allowed
