"""Client rows: pre-registered, dynamically registered (RFC 7591), and cached CIMD documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.oauth.client_metadata import ClientMetadata
from bastion.store.prepared import Prepared
from bastion.store.schema import cimd_documents, clients

ORIGINS = ("preregistered", "dynamic", "metadata_document", "unknown_loopback")


@dataclass(frozen=True)
class Client:
    """A client as the authorization server sees it."""

    client_id: str
    origin: str
    metadata: ClientMetadata
    secret_hash: str | None = None
    secret_expires_at: int = 0
    registration_token_hash: str | None = None
    created_at: int = 0
    first_used_at: int | None = None
    operator_approved: bool = False
    grant_id: str | None = None
    introspects: tuple[str, ...] = ()

    def may_introspect(self, audience: object) -> bool:
        """Whether the client may learn about access tokens for ``audience`` (RFC 7662 §4:
        the AS decides who may introspect what): resource servers an operator registered."""
        if not self.operator_approved or self.is_public:
            return False
        audiences = audience if isinstance(audience, list) else [audience]
        return "*" in self.introspects or any(a in self.introspects for a in audiences)

    @property
    def may_act_alone(self) -> bool:
        """Whether the client may use grants without a person (client_credentials): only a
        client an operator made, never one that registered itself (DCR, a metadata document,
        an unregistered client_id)."""
        return self.operator_approved and not self.is_public

    @property
    def is_public(self) -> bool:
        """Whether the client authenticates with no secret or key."""
        return self.metadata.is_public

    @property
    def name(self) -> str:
        """A human-readable name for pages and logs."""
        return self.metadata.client_name or self.client_id


def _from_row(row: sa.Row[tuple[object, ...]]) -> Client:
    return _from_mapping(row._mapping)


def _from_mapping(row: Mapping[Any, Any]) -> Client:
    return Client(
        client_id=row["client_id"],
        origin=row["origin"],
        metadata=ClientMetadata.model_validate(row["metadata"]),
        secret_hash=row["secret_hash"],
        secret_expires_at=row["secret_expires_at"],
        registration_token_hash=row["registration_token_hash"],
        created_at=row["created_at"],
        first_used_at=row["first_used_at"],
        operator_approved=bool(row["operator_approved"]),
        grant_id=row["grant_id"],
        introspects=tuple(row["introspects"] or ()),
    )


# The client cache's read on every miss (10,000 clients taking turns miss on every request).
_GET = Prepared(sa.select(clients).where(clients.c.client_id == sa.bindparam("client_id")))


async def get(conn: AsyncConnection, client_id: str) -> Client | None:
    """The client with this id, or None (through asyncpg directly on a PostgreSQL connection
    in autocommit mode, :meth:`bastion.store.database.Database.statements`)."""
    row = await _GET.first(conn, {"client_id": client_id})
    return _from_mapping(row) if row else None


async def list_all(conn: AsyncConnection) -> list[Client]:
    """Every stored client, oldest first."""
    rows = await conn.execute(sa.select(clients).order_by(clients.c.created_at))
    return [_from_row(r) for r in rows]


async def insert(conn: AsyncConnection, client: Client, now: int) -> None:
    """Store a new client."""
    await conn.execute(
        sa.insert(clients).values(
            client_id=client.client_id,
            origin=client.origin,
            secret_hash=client.secret_hash,
            secret_expires_at=client.secret_expires_at,
            metadata=client.metadata.public_dict(),
            registration_token_hash=client.registration_token_hash,
            created_at=now,
            updated_at=now,
            first_used_at=None,
            operator_approved=client.operator_approved,
            grant_id=client.grant_id,
            introspects=list(client.introspects) or None,
        )
    )


CHANGES_CHANNEL = "bastion_clients"


async def announce_change(conn: AsyncConnection, client_id: str | None) -> None:
    """On PostgreSQL, NOTIFY every process that the client (None: any client) changed, so that
    in-memory copies are dropped; delivered when the transaction commits, and not at all if it
    rolls back. The payload names the schema (several deployments may share a database)."""
    if conn.dialect.name != "postgresql":
        return
    await conn.execute(
        sa.select(
            sa.func.pg_notify(
                CHANGES_CHANNEL,
                sa.func.json_build_object(
                    "schema", sa.func.current_schema(), "client_id", client_id
                ).cast(sa.Text),
            )
        )
    )


async def update(
    conn: AsyncConnection,
    client_id: str,
    now: int,
    *,
    metadata: ClientMetadata | None = None,
    secret_hash: str | None = None,
    grant_id: str | None = None,
    introspects: Sequence[str] | None = None,
) -> bool:
    """Change the fields given (those left None keep their value). True if the client exists."""
    given: dict[str, object] = {
        "metadata": metadata.public_dict() if metadata is not None else None,
        "secret_hash": secret_hash,
        "grant_id": grant_id,
    }
    values = {name: value for name, value in given.items() if value is not None}
    if introspects is not None:
        values["introspects"] = list(introspects) or None
    result = await conn.execute(
        sa.update(clients).where(clients.c.client_id == client_id).values(updated_at=now, **values)
    )
    await announce_change(conn, client_id)
    return bool(result.rowcount)


async def mark_used(conn: AsyncConnection, client_id: str, now: int) -> None:
    """Record the first successful token issuance (unused registrations expire)."""
    await conn.execute(
        sa.update(clients)
        .where(clients.c.client_id == client_id, clients.c.first_used_at.is_(None))
        .values(first_used_at=now)
    )


async def delete(conn: AsyncConnection, client_id: str) -> bool:
    """Remove a client. True if it existed."""
    result = await conn.execute(sa.delete(clients).where(clients.c.client_id == client_id))
    await announce_change(conn, client_id)
    return bool(result.rowcount)


async def delete_unused_dynamic(conn: AsyncConnection, created_before: int) -> int:
    """Delete dynamically registered clients that never obtained a token; return how many."""
    result = await conn.execute(
        sa.delete(clients).where(
            clients.c.origin == "dynamic",
            clients.c.first_used_at.is_(None),
            clients.c.created_at < created_before,
        )
    )
    removed = int(result.rowcount or 0)
    if removed:
        await announce_change(conn, None)
    return removed


@dataclass(frozen=True)
class CachedDocument:
    """A fetched Client ID Metadata Document and its HTTP caching facts."""

    url: str
    document: dict[str, object]
    fetched_at: int
    expires_at: int
    etag: str | None
    last_modified: str | None


async def get_document(conn: AsyncConnection, url: str) -> CachedDocument | None:
    """The cached metadata document for ``url``, fresh or stale, or None."""
    row = (await conn.execute(sa.select(cimd_documents).where(cimd_documents.c.url == url))).first()
    return None if row is None else _document(row)


def _document(row: sa.Row[tuple[object, ...]]) -> CachedDocument:
    return CachedDocument(
        row.url, dict(row.document), row.fetched_at, row.expires_at, row.etag, row.last_modified
    )


async def list_documents(conn: AsyncConnection) -> list[CachedDocument]:
    """Every cached metadata document, oldest fetch first."""
    rows = await conn.execute(sa.select(cimd_documents).order_by(cimd_documents.c.fetched_at))
    return [_document(r) for r in rows]


async def put_document(conn: AsyncConnection, doc: CachedDocument) -> None:
    """Insert or replace a cached metadata document."""
    await conn.execute(sa.delete(cimd_documents).where(cimd_documents.c.url == doc.url))
    await conn.execute(
        sa.insert(cimd_documents).values(
            url=doc.url,
            document=doc.document,
            fetched_at=doc.fetched_at,
            expires_at=doc.expires_at,
            etag=doc.etag,
            last_modified=doc.last_modified,
        )
    )


__all__ = [
    "CHANGES_CHANNEL",
    "ORIGINS",
    "CachedDocument",
    "Client",
    "announce_change",
    "delete",
    "delete_unused_dynamic",
    "get",
    "get_document",
    "insert",
    "list_all",
    "list_documents",
    "mark_used",
    "put_document",
    "update",
]
