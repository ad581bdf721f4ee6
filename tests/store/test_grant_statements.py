"""The single-statement rotations of bastion.store.grants on PostgreSQL (``rotate_refresh``,
``redeem_code``): of racing calls for one token or code exactly one writes anything; a spent,
unknown or expired one writes nothing at all (no successor, no access-token record, no audit
record). OAuth 2.1 §4.1.3 and §4.3.1, RFC 9700 §4.14.2."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa

from bastion.store import grants
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.database import Database
from bastion.store.grant_records import CodeRecord, FamilyRecord
from bastion.store.schema import (
    auth_audit,
    authorization_codes,
    family_access_tokens,
    refresh_tokens,
    token_families,
)

pytestmark = pytest.mark.postgres
RACERS = 16
NOW = int(time.time())


def family(family_id: str = "fam") -> FamilyRecord:
    return FamilyRecord(
        id=family_id,
        client_id="client",
        subject="user-1",
        scope="mcp:tools",
        resource="http://localhost:9001/mcp",
        created_at=NOW,
        expires_at=NOW + 3600,
    )


def record(event: Event = Event.GRANT_REFRESHED) -> AuditRecord:
    return AuditRecord(event, NOW * 1000, subject="user-1", client_id="client", grant_id="fam")


async def counts(db: Database) -> dict[str, int]:
    tables = [token_families, refresh_tokens, family_access_tokens, auth_audit]
    async with db.connect() as conn:
        return {
            t.name: (await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one()
            for t in tables
        }


async def with_refresh_token(db: Database) -> None:
    async with db.transaction() as conn:
        await grants.create_family(conn, family())
        await grants.save_refresh(conn, token_hash="old", family_id="fam", issued_at=NOW)


async def rotate(db: Database, n: int) -> bool:
    async with db.statements() as conn:
        return await grants.rotate_refresh(
            conn,
            token_hash="old",
            now=NOW,
            sealed="sealed",
            successor_hash=f"new-{n}",
            issued_at=NOW,
            jti=f"jti-{n}",
            expires_at=NOW + 300,
            audit=record(),
        )


async def test_a_spent_or_unknown_refresh_token_rotates_to_nothing(pg: Database) -> None:
    await with_refresh_token(pg)
    async with pg.transaction() as conn:
        assert await grants.consume_refresh(conn, "old", NOW) is not None
    before = await counts(pg)
    assert await rotate(pg, 0) is False
    async with pg.statements() as conn:
        unknown = await grants.rotate_refresh(
            conn,
            token_hash="never-issued",
            now=NOW,
            sealed=None,
            successor_hash="new-x",
            issued_at=NOW,
            jti="jti-x",
            expires_at=NOW + 300,
            audit=record(),
        )
    assert unknown is False
    assert await counts(pg) == before


async def test_a_refresh_token_of_a_family_revoked_meanwhile_rotates_to_nothing(
    pg: Database,
) -> None:
    """The caller read the family before it was revoked: the rotation still refuses."""
    await with_refresh_token(pg)
    async with pg.transaction() as conn:
        await grants.revoke_family(conn, "fam", NOW, "test")
    before = await counts(pg)
    assert await rotate(pg, 0) is False
    assert await counts(pg) == before
    async with pg.connect() as conn:
        old = await grants.get_refresh(conn, "old")
    assert old is not None and old.used_at is None


async def test_racing_rotations_of_one_refresh_token_write_once(pg: Database) -> None:
    await with_refresh_token(pg)
    before = await counts(pg)
    won = await asyncio.gather(*(rotate(pg, n) for n in range(RACERS)))
    assert won.count(True) == 1
    after = await counts(pg)
    assert after["refresh_tokens"] == before["refresh_tokens"] + 1
    assert after["family_access_tokens"] == before["family_access_tokens"] + 1
    assert after["auth_audit"] == before["auth_audit"] + 1
    winner = won.index(True)
    async with pg.connect() as conn:
        old = await grants.get_refresh(conn, "old")
        successor = await grants.get_refresh(conn, f"new-{winner}")
    assert old is not None and old.used_at == NOW and old.successor_encrypted == "sealed"
    assert successor is not None and successor.used_at is None


async def with_code(db: Database, *, expires_at: int = NOW + 60) -> None:
    code = CodeRecord(
        code_hash="code",
        client_id="client",
        subject="user-1",
        redirect_uri="http://127.0.0.1/cb",
        redirect_uri_sent=True,
        scope="mcp:tools",
        resource="http://localhost:9001/mcp",
        code_challenge="challenge",
        family_id="fam",
        auth_time=NOW,
        expires_at=expires_at,
    )
    async with db.transaction() as conn:
        await grants.save_code(conn, code)


async def redeem(db: Database, n: int, refresh: bool = True) -> bool:
    async with db.statements() as conn:
        return await grants.redeem_code(
            conn,
            code_hash="code",
            now=NOW,
            family=family(),
            jti=f"jti-{n}",
            expires_at=NOW + 300,
            refresh_hash=f"refresh-{n}" if refresh else None,
            issued_at=NOW,
            audit=record(Event.GRANT_CREATED),
        )


async def test_an_expired_or_spent_code_redeems_to_nothing(pg: Database) -> None:
    await with_code(pg, expires_at=NOW)
    before = await counts(pg)
    assert await redeem(pg, 0) is False
    assert await counts(pg) == before
    async with pg.transaction() as conn:
        await conn.execute(sa.update(authorization_codes).values(expires_at=NOW + 60))
        assert await grants.consume_code(conn, "code", NOW) is not None
    assert await redeem(pg, 1) is False
    assert await counts(pg) == before


async def test_racing_redemptions_of_one_code_write_once(pg: Database) -> None:
    await with_code(pg)
    won = await asyncio.gather(*(redeem(pg, n) for n in range(RACERS)))
    assert won.count(True) == 1
    assert await counts(pg) == {
        "token_families": 1,
        "refresh_tokens": 1,
        "family_access_tokens": 1,
        "auth_audit": 1,
    }
    async with pg.connect() as conn:
        stored = await grants.get_family(conn, "fam")
        code = await grants.get_code(conn, "code")
    assert stored == family()
    assert code is not None and code.consumed_at == NOW


async def test_a_code_for_a_client_without_refresh_tokens_stores_none(pg: Database) -> None:
    await with_code(pg)
    assert await redeem(pg, 0, refresh=False) is True
    assert (await counts(pg))["refresh_tokens"] == 0


async def test_a_grant_is_read_with_the_rules_that_decide_for_people_only(pg: Database) -> None:
    """The grant's read brings the rules about its resource and ``*`` that can decide for a
    person; machine clients' rules (``client:ID``, which never do) stay out of it, however many
    there are (each grant used to carry all of them)."""
    from bastion.access.rules import AccessRule
    from bastion.store import access

    await with_refresh_token(pg)
    resource = family().resource
    async with pg.transaction() as conn:
        await access.put_rule(conn, AccessRule(resource, "group:staff", ("mcp:tools",)), NOW)
        await access.put_rule(conn, AccessRule("*", "user:alice", ("*",)), NOW)
        await access.put_rule(conn, AccessRule("http://elsewhere/mcp", "group:x"), NOW)
        for n in range(50):
            await access.put_rule(conn, AccessRule("*", f"client:machine-{n}"), NOW)
            await access.put_rule(conn, AccessRule(resource, f"client:robot-{n}"), NOW)
    async with pg.statements() as conn:
        found = await grants.refresh_grant(conn, "old")
    assert found is not None and found.rules is not None
    assert sorted((r.resource, r.who) for r in found.rules) == [
        ("*", "user:alice"),
        (resource, "group:staff"),
    ]
