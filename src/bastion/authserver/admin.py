"""Administration of the authorization server: clients, users, keys. The CLI calls these."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bastion.authserver.app import secret_for
from bastion.clock import system_clock
from bastion.config import Settings
from bastion.oauth import client_metadata
from bastion.private_files import private_dir
from bastion.store import clients as client_rows
from bastion.store.clients import Client
from bastion.store.database import Database
from bastion.tokens import secrets as opaque
from bastion.tokens.cipher import Cipher
from bastion.tokens.keys import ALGORITHMS, KeyManager


class AdminError(Exception):
    """An administrative action that cannot be done; the message says why and what to do."""


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The migrated database of ``settings``, closed afterwards."""
    if settings.database_url is None:
        private_dir(settings.data_dir)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        yield db
    finally:
        await db.dispose()


@dataclass(frozen=True)
class NewClient:
    """A client just created, with its secret (shown once, stored only as a hash)."""

    client: Client
    secret: str | None


async def add_client(
    settings: Settings,
    *,
    client_id: str | None,
    name: str,
    redirect_uris: list[str],
    confidential: bool,
    grant_types: list[str],
    scope: str | None,
    auth_method: str | None = None,
) -> NewClient:
    """Pre-register a client."""
    method = auth_method or ("client_secret_basic" if confidential else "none")
    fields: dict[str, object] = {
        "client_name": name,
        "redirect_uris": redirect_uris,
        "grant_types": grant_types,
        "response_types": ["code"] if "authorization_code" in grant_types else [],
        "token_endpoint_auth_method": method,
        "application_type": "native"
        if all(u.startswith("http://") for u in redirect_uris) and redirect_uris
        else "web",
    }
    if scope:
        fields["scope"] = scope
    meta = client_metadata.parse(fields)
    secret = opaque.new_token() if method in ("client_secret_basic", "client_secret_post") else None
    now = system_clock()
    client = Client(
        client_id=client_id or secrets.token_urlsafe(18),
        origin="preregistered",
        metadata=meta,
        secret_hash=opaque.digest(secret) if secret else None,
        created_at=now,
    )
    async with database(settings) as db, db.transaction() as conn:
        if await client_rows.get(conn, client.client_id) is not None:
            raise AdminError(f"a client with id {client.client_id!r} already exists")
        await client_rows.insert(conn, client, now)
    return NewClient(client, secret)


async def list_clients(settings: Settings) -> list[Client]:
    """Every stored client."""
    async with database(settings) as db, db.connect() as conn:
        return await client_rows.list_all(conn)


async def get_client(settings: Settings, client_id: str) -> Client:
    """One client; AdminError if there is none."""
    async with database(settings) as db, db.connect() as conn:
        client = await client_rows.get(conn, client_id)
    if client is None:
        raise AdminError(f"no client with id {client_id!r}; see `bastion clients list`")
    return client


async def remove_client(settings: Settings, client_id: str) -> None:
    """Delete a client."""
    async with database(settings) as db, db.transaction() as conn:
        if not await client_rows.delete(conn, client_id):
            raise AdminError(f"no client with id {client_id!r}; see `bastion clients list`")


async def rotate_client_secret(settings: Settings, client_id: str) -> str:
    """Give a confidential client a new secret; the old one stops working at once."""
    client = await get_client(settings, client_id)
    if client.metadata.token_endpoint_auth_method not in (
        "client_secret_basic",
        "client_secret_post",
    ):
        raise AdminError(f"client {client_id!r} does not authenticate with a secret")
    secret = opaque.new_token()
    async with database(settings) as db, db.transaction() as conn:
        await client_rows.update(conn, client_id, system_clock(), secret_hash=opaque.digest(secret))
    return secret


async def rotate_keys(settings: Settings, *, now: bool = False, alg: str | None = None) -> str:
    """Add a new signing key (published at once, signing after the pre-publication delay, or at
    once with ``now``); older keys leave the JWKS once their tokens have expired."""
    if alg is not None and alg not in ALGORITHMS:
        raise AdminError(
            f"cannot sign with {alg!r}: use one of {', '.join(ALGORITHMS)} (asymmetric "
            "algorithms, which resource servers verify with the published public key)"
        )
    async with database(settings) as db:
        keys = KeyManager(
            db,
            Cipher(secret_for(settings)),
            alg=settings.tokens.signing_alg,
            token_ttl=settings.tokens.access_token_ttl,
            prepublish=settings.tokens.key_prepublish,
        )
        return await keys.rotate(alg=alg, prepublish=0 if now else None)


async def list_keys(settings: Settings) -> list[dict[str, object]]:
    """The published keys with their activation and retirement times."""
    async with database(settings) as db:
        keys = KeyManager(
            db,
            Cipher(secret_for(settings)),
            alg=settings.tokens.signing_alg,
            token_ttl=settings.tokens.access_token_ttl,
        )
        return [
            {
                "kid": k.kid,
                "alg": k.alg,
                "activates_at": k.activates_at,
                "retire_at": k.retire_at,
            }
            for k in await keys.published()
        ]


__all__ = [
    "AdminError",
    "NewClient",
    "add_client",
    "database",
    "get_client",
    "list_clients",
    "list_keys",
    "remove_client",
    "rotate_client_secret",
    "rotate_keys",
]
