"""Authorization requests, codes, refresh-token families and revoked access tokens.

Single-use items are consumed with one conditional UPDATE ... RETURNING, so of any number of
racing redemptions exactly one sees the row (SQLite >= 3.35 and PostgreSQL both support it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.access.rules import AccessRule
from bastion.store import auth_audit, revocations, rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.grant_records import CodeRecord, FamilyRecord, RefreshRecord, RequestRecord
from bastion.store.prepared import Prepared
from bastion.store.schema import (
    access_rules,
    authorization_codes,
    authorization_requests,
    family_access_tokens,
    refresh_tokens,
    revoked_access_tokens,
    token_families,
    used_assertions,
    users,
)
from bastion.store.users import User


async def save_request(conn: AsyncConnection, request: RequestRecord, *, requester: str) -> None:
    """Store a pending authorization request, counted against ``requester`` (the digest of an
    address group)."""
    await conn.execute(
        sa.insert(authorization_requests).values(**asdict(request), requester=requester)
    )


async def get_request(conn: AsyncConnection, request_id: str, now: int) -> RequestRecord | None:
    """A pending authorization request that has not expired."""
    q = sa.select(authorization_requests).where(
        authorization_requests.c.id == request_id, authorization_requests.c.expires_at > now
    )
    return rows.first(RequestRecord, await conn.execute(q))


async def finish_request(conn: AsyncConnection, request_id: str, now: int) -> RequestRecord | None:
    """Delete a pending request and return it, atomically: a consent form submits once."""
    q = (
        sa.delete(authorization_requests)
        .where(authorization_requests.c.id == request_id, authorization_requests.c.expires_at > now)
        .returning(*authorization_requests.c)
    )
    return rows.first(RequestRecord, await conn.execute(q))


async def save_code(conn: AsyncConnection, code: CodeRecord) -> None:
    """Store an issued authorization code (by hash)."""
    await conn.execute(sa.insert(authorization_codes).values(**asdict(code)))


async def consume_code(conn: AsyncConnection, code_hash: str, now: int) -> CodeRecord | None:
    """Mark a code used and return it; None if it is unknown, expired or already used."""
    q = (
        sa.update(authorization_codes)
        .where(
            authorization_codes.c.code_hash == code_hash,
            authorization_codes.c.consumed_at.is_(None),
            authorization_codes.c.expires_at > now,
        )
        .values(consumed_at=now)
        .returning(*authorization_codes.c)
    )
    return rows.first(CodeRecord, await conn.execute(q))


async def get_code(conn: AsyncConnection, code_hash: str) -> CodeRecord | None:
    """A code in any state (to tell a replay from an unknown code)."""
    q = sa.select(authorization_codes).where(authorization_codes.c.code_hash == code_hash)
    return rows.first(CodeRecord, await conn.execute(q))


async def create_family(conn: AsyncConnection, family: FamilyRecord) -> None:
    """Start a refresh-token family."""
    await conn.execute(sa.insert(token_families).values(**asdict(family)))


async def get_family(conn: AsyncConnection, family_id: str) -> FamilyRecord | None:
    """A family by id."""
    q = sa.select(token_families).where(token_families.c.id == family_id)
    return rows.first(FamilyRecord, await conn.execute(q))


async def bind_family(conn: AsyncConnection, family_id: str, jkt: str) -> None:
    """Bind a family's refresh tokens to a DPoP key (RFC 9449 §5), unless already bound."""
    await conn.execute(
        sa.update(token_families)
        .where(token_families.c.id == family_id, token_families.c.dpop_jkt.is_(None))
        .values(dpop_jkt=jkt)
    )


async def save_refresh(
    conn: AsyncConnection, *, token_hash: str, family_id: str, issued_at: int
) -> None:
    """Store an issued refresh token (by hash)."""
    await conn.execute(
        sa.insert(refresh_tokens).values(
            used_at=None, token_hash=token_hash, family_id=family_id, issued_at=issued_at
        )
    )


async def consume_refresh(conn: AsyncConnection, token_hash: str, now: int) -> RefreshRecord | None:
    """Mark a refresh token used (rotated) and return it; None if unknown or already used."""
    q = (
        sa.update(refresh_tokens)
        .where(refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.used_at.is_(None))
        .values(used_at=now)
        .returning(*refresh_tokens.c)
    )
    return rows.first(RefreshRecord, await conn.execute(q))


async def set_successor(conn: AsyncConnection, token_hash: str, sealed: str) -> None:
    """Remember (encrypted) the token that replaced a rotated refresh token."""
    await conn.execute(
        sa.update(refresh_tokens)
        .where(refresh_tokens.c.token_hash == token_hash)
        .values(successor_encrypted=sealed)
    )


async def get_refresh(conn: AsyncConnection, token_hash: str) -> RefreshRecord | None:
    """A refresh token in any state."""
    q = sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
    return rows.first(RefreshRecord, await conn.execute(q))


def _labelled(table: sa.Table, prefix: str) -> list[sa.Label[object]]:
    return [column.label(prefix + column.name) for column in table.c]


class _Unlabelled:
    """A table's columns out of a row read with :func:`_labelled` (by name, no scan of the
    row's other columns)."""

    def __init__(self, table: sa.Table, prefix: str) -> None:
        self.names = [(prefix + column.name, column.name) for column in table.c]

    def __call__(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {name: row[label] for label, name in self.names}


_REFRESH_COLUMNS = _Unlabelled(refresh_tokens, "r_")
_FAMILY_COLUMNS = _Unlabelled(token_families, "f_")
_CODE_COLUMNS = _Unlabelled(authorization_codes, "c_")
_USER_COLUMNS = _Unlabelled(users, "u_")


def _user_of(row: Mapping[str, Any]) -> User | None:
    if row["u_id"] is None:
        return None
    found = _USER_COLUMNS(row)
    found["groups"] = list(found["groups"] or [])
    found["is_admin"] = bool(found["is_admin"])
    found["disabled"] = bool(found["disabled"])
    return User(**found)


def _rules_for(resource: sa.ColumnElement[str]) -> sa.Label[Any]:
    """PostgreSQL: the access rules about ``resource`` (and ``*``) that can decide for a person
    as one JSON column, in the order of :func:`bastion.store.access.list_rules`: no round trip
    of their own. Machine clients' rules (``client:ID``) never decide for a person
    (:func:`bastion.access.rules.decide_person`) and are left out: with 10,000 machine clients
    admitted to ``*``, each grant carried all of their rules (1-2 s per token)."""
    rule = sa.func.json_build_array(
        access_rules.c.resource, access_rules.c.who, access_rules.c.scopes
    )
    ordered = aggregate_order_by(rule, access_rules.c.resource, access_rules.c.who)
    return (
        sa.select(sa.func.json_agg(ordered))
        .where(
            access_rules.c.resource.in_([resource, sa.literal_column("'*'")]),
            sa.not_(access_rules.c.who.like(sa.literal_column("'client:%'"))),
        )
        .scalar_subquery()
        .label("rules")
    )


def _rules_of(row: Mapping[str, Any]) -> list[AccessRule] | None:
    if "rules" not in row:
        return None
    return [
        AccessRule(resource, who, tuple(scopes)) for resource, who, scopes in row["rules"] or []
    ]


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """A refresh token with its family, the family's user (None if removed) and, when read
    with them (PostgreSQL), the access rules about the family's resource."""

    token: RefreshRecord
    family: FamilyRecord
    user: User | None
    rules: list[AccessRule] | None


def _refresh_grant(with_rules: bool) -> Prepared:
    columns = [*_labelled(refresh_tokens, "r_"), *_labelled(token_families, "f_")]
    columns += _labelled(users, "u_")
    if with_rules:
        columns.append(_rules_for(token_families.c.resource))
    return Prepared(
        sa.select(*columns)
        .select_from(
            refresh_tokens.join(
                token_families, token_families.c.id == refresh_tokens.c.family_id
            ).outerjoin(users, users.c.id == token_families.c.subject)
        )
        .where(refresh_tokens.c.token_hash == sa.bindparam("token_hash", type_=sa.String))
    )


_REFRESH_GRANT = {postgres: _refresh_grant(postgres) for postgres in (True, False)}


async def refresh_grant(conn: AsyncConnection, token_hash: str) -> RefreshGrant | None:
    """A refresh token in any state with its family, user and (PostgreSQL) rules, in one
    query; None if the token is unknown."""
    statement = _REFRESH_GRANT[conn.dialect.name == "postgresql"]
    row = await statement.first(conn, {"token_hash": token_hash})
    if row is None:
        return None
    return RefreshGrant(
        RefreshRecord(**_REFRESH_COLUMNS(row)),
        FamilyRecord(**_FAMILY_COLUMNS(row)),
        _user_of(row),
        _rules_of(row),
    )


def _refresh_row(token_hash: str, family_id: sa.ColumnElement[str], name: str) -> sa.CTE:
    """A data-modifying WITH storing a refresh token (parameters ``token_hash`` and
    ``issued_at``) for each family id ``family_id`` gives."""
    values = sa.select(
        sa.bindparam(token_hash, type_=sa.String),
        family_id,
        sa.bindparam("issued_at", type_=sa.BigInteger),
    )
    columns = ["token_hash", "family_id", "issued_at"]
    return sa.insert(refresh_tokens).from_select(columns, values).cte(name)


def _access_row(family_id: sa.ColumnElement[str]) -> sa.CTE:
    """A data-modifying WITH recording the access token (parameters ``jti`` and
    ``expires_at``) in each family ``family_id`` gives."""
    values = sa.select(
        sa.bindparam("jti", type_=sa.String),
        family_id,
        sa.bindparam("expires_at", type_=sa.BigInteger),
    )
    columns = ["jti", "family_id", "expires_at"]
    return sa.insert(family_access_tokens).from_select(columns, values).cte("access")


def _rotation(audited: bool) -> Prepared:
    spent = (
        sa.update(refresh_tokens)
        .where(
            refresh_tokens.c.token_hash == sa.bindparam("token_hash", type_=sa.String),
            refresh_tokens.c.used_at.is_(None),
            # A family revoked since the caller read it rotates no more.
            sa.exists().where(
                token_families.c.id == refresh_tokens.c.family_id,
                token_families.c.revoked_at.is_(None),
            ),
        )
        .values(
            used_at=sa.bindparam("now", type_=sa.BigInteger),
            successor_encrypted=sa.bindparam("sealed", type_=sa.Text),
        )
        .returning(refresh_tokens.c.family_id)
        .cte("spent")
    )
    successor = _refresh_row("successor_hash", spent.c.family_id, "successor")
    access = _access_row(spent.c.family_id)
    ctes = [successor, access, *([auth_audit.audit_after(spent)] if audited else [])]
    return Prepared(sa.select(spent.c.family_id).add_cte(*ctes))


_ROTATION = {audited: _rotation(audited) for audited in (True, False)}


async def rotate_refresh(
    conn: AsyncConnection,
    *,
    token_hash: str,
    now: int,
    sealed: str | None,
    successor_hash: str,
    issued_at: int,
    jti: str,
    expires_at: int,
    audit: AuditRecord,
) -> bool:
    """PostgreSQL: in one statement, spend a refresh token (remembering its ``sealed``
    successor), store the successor, record the access token ``jti`` in the family and the
    ``audit`` record; all of it only if the token was unspent and its family not revoked.
    False if not (spent or revoked concurrently, or before): then nothing was written. Of
    racing rotations of one token exactly one finds it unspent (the row lock orders them; the
    later one re-checks ``used_at``)."""
    params: dict[str, object] = {
        "token_hash": token_hash,
        "now": now,
        "sealed": sealed,
        "successor_hash": successor_hash,
        "issued_at": issued_at,
        "jti": jti,
        "expires_at": expires_at,
    }
    audited = auth_audit.audit_params(audit)
    statement = _ROTATION[audited is not None]
    return await statement.first(conn, {**params, **(audited or {})}) is not None


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """An authorization code with its user (None if removed) and, when read with them
    (PostgreSQL), the access rules about its resource."""

    code: CodeRecord
    user: User | None
    rules: list[AccessRule] | None


def _code_grant(with_rules: bool) -> Prepared:
    columns = [*_labelled(authorization_codes, "c_"), *_labelled(users, "u_")]
    if with_rules:
        columns.append(_rules_for(authorization_codes.c.resource))
    return Prepared(
        sa.select(*columns)
        .select_from(
            authorization_codes.outerjoin(users, users.c.id == authorization_codes.c.subject)
        )
        .where(authorization_codes.c.code_hash == sa.bindparam("code_hash", type_=sa.String))
    )


_CODE_GRANT = {postgres: _code_grant(postgres) for postgres in (True, False)}


async def code_grant(conn: AsyncConnection, code_hash: str) -> CodeGrant | None:
    """A code in any state with its user and (PostgreSQL) rules, in one query; None if
    unknown."""
    statement = _CODE_GRANT[conn.dialect.name == "postgresql"]
    row = await statement.first(conn, {"code_hash": code_hash})
    if row is None:
        return None
    return CodeGrant(CodeRecord(**_CODE_COLUMNS(row)), _user_of(row), _rules_of(row))


def _redemption(audited: bool, refresh: bool) -> Prepared:
    spent = (
        sa.update(authorization_codes)
        .where(
            authorization_codes.c.code_hash == sa.bindparam("code_hash", type_=sa.String),
            authorization_codes.c.consumed_at.is_(None),
            authorization_codes.c.expires_at > sa.bindparam("now", type_=sa.BigInteger),
        )
        .values(consumed_at=sa.bindparam("now", type_=sa.BigInteger))
        .returning(authorization_codes.c.family_id)
        .cte("spent")
    )
    columns = ["client_id", "subject", "scope", "resource", "created_at", "expires_at", "dpop_jkt"]
    family = (
        sa.insert(token_families)
        .from_select(
            ["id", *columns],
            sa.select(
                spent.c.family_id,
                *(sa.bindparam(f"f_{c}", type_=token_families.c[c].type) for c in columns),
            ),
        )
        .returning(token_families.c.id)
        .cte("family")
    )
    ctes = [family, _access_row(family.c.id)]
    if refresh:
        ctes.append(_refresh_row("refresh_hash", family.c.id, "refresh"))
    if audited:
        ctes.append(auth_audit.audit_after(spent))
    return Prepared(sa.select(spent.c.family_id).add_cte(*ctes))


_REDEMPTION = {(a, r): _redemption(a, r) for a in (True, False) for r in (True, False)}
# The family's fields as the redemption's parameters (a shallow copy: asdict copies deeply).
_FAMILY_PARAMS = [(f"f_{field.name}", field.name) for field in fields(FamilyRecord)]


async def redeem_code(
    conn: AsyncConnection,
    *,
    code_hash: str,
    now: int,
    family: FamilyRecord,
    jti: str,
    expires_at: int,
    refresh_hash: str | None,
    issued_at: int,
    audit: AuditRecord,
) -> bool:
    """PostgreSQL: in one statement, spend a code and store its ``family`` (whose id the code
    names), the access token ``jti``, the first refresh token (``refresh_hash``, if any) and
    the ``audit`` record; all of it only if the code was unspent and unexpired. False if it
    was not: then nothing was written. Of racing redemptions exactly one spends the code."""
    params: dict[str, object] = {
        "code_hash": code_hash,
        "now": now,
        "jti": jti,
        "expires_at": expires_at,
        "refresh_hash": refresh_hash,
        "issued_at": issued_at,
        **{label: getattr(family, name) for label, name in _FAMILY_PARAMS},
    }
    audited = auth_audit.audit_params(audit)
    statement = _REDEMPTION[audited is not None, refresh_hash is not None]
    return await statement.first(conn, {**params, **(audited or {})}) is not None


async def revoke_family(conn: AsyncConnection, family_id: str, now: int, reason: str) -> None:
    """Revoke a family: its refresh tokens stop working, and while some of its access tokens
    live, the grant is recorded as revoked (resource servers refuse every token carrying its
    grant_id; introspection reports them inactive)."""
    revoked = await conn.execute(
        sa.update(token_families)
        .where(token_families.c.id == family_id, token_families.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .returning(token_families.c.subject, token_families.c.client_id)
    )
    for subject, client_id in revoked:
        await auth_audit.add(
            conn,
            AuditRecord(
                Event.GRANT_REVOKED,
                auth_audit.millis(now),
                subject=subject,
                client_id=client_id,
                grant_id=family_id,
                detail={"reason": reason},
            ),
        )
    live = list(
        await conn.execute(
            sa.select(family_access_tokens.c.jti, family_access_tokens.c.expires_at).where(
                family_access_tokens.c.family_id == family_id,
                family_access_tokens.c.expires_at > now,
            )
        )
    )
    for jti, exp in live:
        await revoke_access_token(conn, jti, exp, now=now, announce=False)
    if live:
        last = max(exp for _, exp in live)
        await revocations.record(conn, "grant", family_id, now=now, expires_at=last, reason=reason)


async def revoke_families_of(
    conn: AsyncConnection,
    subject: str | None,
    now: int,
    reason: str,
    *,
    client_id: str | None = None,
) -> int:
    """Revoke every live family of ``subject`` (a user removed, disabled, given a new password
    or removed from a group) or of ``client_id`` (a client removed or changed), or of both;
    how many there were."""
    if subject is None and client_id is None:
        raise ValueError("name the subject, the client or both whose grants to revoke")
    q = sa.select(token_families.c.id).where(
        token_families.c.revoked_at.is_(None), token_families.c.expires_at > now
    )
    if subject is not None:
        q = q.where(token_families.c.subject == subject)
    if client_id is not None:
        q = q.where(token_families.c.client_id == client_id)
    found = await conn.execute(q)
    ids = [row.id for row in found]
    for family_id in ids:
        await revoke_family(conn, family_id, now, reason)
    return len(ids)


_RECORD_ACCESS_TOKEN = sa.insert(family_access_tokens).values(
    jti=sa.bindparam("jti"),
    family_id=sa.bindparam("family_id"),
    expires_at=sa.bindparam("expires_at"),
)
_RECORD_ACCESS_TOKEN_AUDITED = auth_audit.with_audit(_RECORD_ACCESS_TOKEN)


async def record_access_token(
    conn: AsyncConnection, family_id: str, jti: str, expires_at: int, *audit: AuditRecord
) -> None:
    """Remember that an access token was issued in a family (with the ``audit`` records of
    its issuance, in the same statement where the database allows)."""
    params = {"jti": jti, "family_id": family_id, "expires_at": expires_at}
    await auth_audit.execute_with(
        conn, _RECORD_ACCESS_TOKEN, _RECORD_ACCESS_TOKEN_AUDITED, params, *audit
    )


async def revoke_access_token(
    conn: AsyncConnection, jti: str, expires_at: int, *, now: int, announce: bool = True
) -> None:
    """Record an access token as revoked until it expires (idempotent, also when two
    transactions revoke the same token at once: the loser's insert meets the primary key);
    with ``announce``, also for resource servers (a family's tokens are announced as its
    grant instead)."""
    from sqlalchemy.exc import IntegrityError

    exists = await conn.execute(
        sa.select(revoked_access_tokens.c.jti).where(revoked_access_tokens.c.jti == jti)
    )
    if exists.first() is not None:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                sa.insert(revoked_access_tokens).values(jti=jti, expires_at=expires_at)
            )
    except IntegrityError:
        return  # revoked concurrently by another transaction: the record exists
    if announce:
        await revocations.record(
            conn, "token", jti, now=now, expires_at=expires_at, reason="access token revoked"
        )


async def is_access_token_revoked(conn: AsyncConnection, jti: str) -> bool:
    """Whether an access token was revoked."""
    q = sa.select(revoked_access_tokens.c.jti).where(revoked_access_tokens.c.jti == jti)
    return (await conn.execute(q)).first() is not None


async def family_of_access_token(conn: AsyncConnection, jti: str) -> str | None:
    """The family an access token was issued in (code and refresh grants), if any."""
    q = sa.select(family_access_tokens.c.family_id).where(family_access_tokens.c.jti == jti)
    row = (await conn.execute(q)).first()
    return row.family_id if row else None


async def purge_expired(conn: AsyncConnection, now: int) -> None:
    """Delete expired requests, codes, families and revocation records."""
    await conn.execute(
        sa.delete(authorization_requests).where(authorization_requests.c.expires_at <= now)
    )
    await conn.execute(
        sa.delete(authorization_codes).where(authorization_codes.c.expires_at <= now - 3600)
    )
    await conn.execute(
        sa.delete(revoked_access_tokens).where(revoked_access_tokens.c.expires_at <= now)
    )
    await revocations.purge(conn, now)
    expired = sa.select(token_families.c.id).where(token_families.c.expires_at <= now)
    await conn.execute(sa.delete(refresh_tokens).where(refresh_tokens.c.family_id.in_(expired)))
    await conn.execute(
        sa.delete(family_access_tokens).where(family_access_tokens.c.expires_at <= now)
    )
    await conn.execute(sa.delete(token_families).where(token_families.c.expires_at <= now))
    await purge_used_assertions(conn, now)


def _use_once(dialect: Any) -> sa.Insert:
    """Insert the id, or replace its row when that has expired; RETURNING says which."""
    insert = dialect.insert(used_assertions).values(
        key=sa.bindparam("key", type_=sa.String),
        expires_at=sa.bindparam("expires_at", type_=sa.BigInteger),
    )
    statement: sa.Insert = insert.on_conflict_do_update(
        index_elements=["key"],
        set_={"expires_at": insert.excluded.expires_at},
        where=used_assertions.c.expires_at <= sa.bindparam("now", type_=sa.BigInteger),
    ).returning(used_assertions.c.key)
    return statement


_USE_ONCE_POSTGRES = Prepared(_use_once(postgresql))
_USE_ONCE_SQLITE = _use_once(sqlite)


async def use_assertion_once(conn: AsyncConnection, key: str, expires_at: int, now: int) -> bool:
    """Record a single-use id (a client assertion's, a DPoP proof's...); False if it is
    recorded and has not expired (a replay). One statement, atomic on its own: an insert that,
    on a conflict, takes over the row only if it has expired (expired rows are otherwise left
    to :func:`purge_expired` and :func:`purge_used_assertions`). Concurrent first uses of one
    id wait for each other on PostgreSQL's unique index: exactly one gets the row."""
    params = {"key": key, "expires_at": expires_at, "now": now}
    if conn.dialect.name == "postgresql":
        return await _USE_ONCE_POSTGRES.first(conn, params) is not None
    return (await conn.execute(_USE_ONCE_SQLITE, params)).first() is not None


async def purge_used_assertions(conn: AsyncConnection, now: int) -> None:
    """Delete the single-use ids whose time is over."""
    await conn.execute(sa.delete(used_assertions).where(used_assertions.c.expires_at <= now))


__all__ = [
    "CodeGrant",
    "RefreshGrant",
    "bind_family",
    "code_grant",
    "consume_code",
    "consume_refresh",
    "create_family",
    "family_of_access_token",
    "finish_request",
    "get_code",
    "get_family",
    "get_refresh",
    "get_request",
    "is_access_token_revoked",
    "purge_expired",
    "purge_used_assertions",
    "record_access_token",
    "redeem_code",
    "refresh_grant",
    "revoke_access_token",
    "revoke_families_of",
    "revoke_family",
    "rotate_refresh",
    "save_code",
    "save_refresh",
    "save_request",
    "set_successor",
    "use_assertion_once",
]
