"""Every column that holds a value encrypted under the secret key, and what each value is
bound to (the additional data it was sealed with), in one place: what ``bastion keys rekey``
re-encrypts when the secret key changes. A new encrypted column belongs in :data:`SEALED`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store.schema import (
    federation_states,
    linked_accounts,
    signing_keys,
    upstream_clients,
    upstream_connect_states,
    upstream_connections,
)


def connection_binding(user_id: str, upstream: str, kind: str) -> str:
    """What a person's upstream ``kind`` ("access" or "refresh") token is sealed to."""
    return f"connection:{user_id}|{upstream}|{kind}"


@dataclass(frozen=True)
class SealedColumn:
    """A column of encrypted values: its table's key columns, and the ``bound_to`` of a row."""

    name: str
    table: sa.Table
    column: str
    keys: tuple[str, ...]
    bound_to: Callable[[RowMapping], str]


SEALED = (
    SealedColumn(
        "signing keys", signing_keys, "private_jwk_encrypted", ("kid",), lambda r: r["kid"]
    ),
    SealedColumn(
        "upstream refresh tokens",
        linked_accounts,
        "refresh_token_encrypted",
        ("issuer", "subject"),
        lambda r: f"federation:{r['issuer']}|{r['subject']}",
    ),
    SealedColumn(
        "upstream sign-ins in progress",
        federation_states,
        "verifier_encrypted",
        ("state_hash",),
        lambda r: f"federation:{r['state_hash']}",
    ),
    SealedColumn(
        "token vault: access tokens",
        upstream_connections,
        "access_token_encrypted",
        ("user_id", "upstream"),
        lambda r: connection_binding(r["user_id"], r["upstream"], "access"),
    ),
    SealedColumn(
        "token vault: refresh tokens",
        upstream_connections,
        "refresh_token_encrypted",
        ("user_id", "upstream"),
        lambda r: connection_binding(r["user_id"], r["upstream"], "refresh"),
    ),
    SealedColumn(
        "token vault: client secrets",
        upstream_clients,
        "client_secret_encrypted",
        ("upstream", "issuer"),
        lambda r: f"upstream-client:{r['upstream']}|{r['issuer']}|secret",
    ),
    SealedColumn(
        "token vault: registration access tokens",
        upstream_clients,
        "registration_access_token_encrypted",
        ("upstream", "issuer"),
        lambda r: f"upstream-client:{r['upstream']}|{r['issuer']}|registration",
    ),
    SealedColumn(
        "token vault: sign-ins in progress",
        upstream_connect_states,
        "verifier_encrypted",
        ("state_hash",),
        lambda r: f"connect:{r['state_hash']}",
    ),
)

# Re-encrypts a value under the current secret (None: it already is), given its bound_to.
Reseal = Callable[[str, str], str | None]


async def reseal_column(conn: AsyncConnection, sealed: SealedColumn, reseal: Reseal) -> int:
    """Re-encrypt every value of ``sealed`` that ``reseal`` changes, rows locked for the
    transaction on PostgreSQL; the number of values re-encrypted."""
    table, value = sealed.table, sealed.table.c[sealed.column]
    keys = [table.c[k] for k in sealed.keys]
    query = sa.select(*keys, value).where(value.is_not(None))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    changed = 0
    for row in (await conn.execute(query)).mappings().all():
        fresh = reseal(row[sealed.column], sealed.bound_to(row))
        if fresh is None:
            continue
        where = [column == row[column.name] for column in keys]
        await conn.execute(sa.update(table).where(*where).values({sealed.column: fresh}))
        changed += 1
    return changed


__all__ = ["SEALED", "Reseal", "SealedColumn", "connection_binding", "reseal_column"]
