"""Administration of the authorization server: clients, users, keys. The CLI calls these."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.access.policy import withdraw_client
from bastion.access.rules import EVERY, AccessRule, check_scopes
from bastion.authserver.audit import cli_actor
from bastion.authserver.http import is_vschar
from bastion.authserver.secret_key import cipher_for
from bastion.clock import system_clock
from bastion.config import Settings
from bastion.oauth import client_metadata
from bastion.oauth.resource import canonical
from bastion.oauth.token_request import JWT_BEARER
from bastion.private_files import private_dir
from bastion.store import access as rule_rows
from bastion.store import auth_audit
from bastion.store import clients as client_rows
from bastion.store import registration_tokens as token_rows
from bastion.store.auth_audit import AuditRecord, Context, Event
from bastion.store.clients import Client
from bastion.store.database import Database
from bastion.store.registration_tokens import RegistrationToken
from bastion.store.sealed import SEALED, reseal_column
from bastion.tokens import secrets as opaque
from bastion.tokens.keys import ALGORITHMS, KeyManager


class AdminError(Exception):
    """An administrative action that cannot be done; the message says why and what to do."""


@asynccontextmanager
async def database(settings: Settings, db: Database | None = None) -> AsyncIterator[Database]:
    """``db`` as it is (a running server's: the console binds its own audit context), or the
    migrated database of ``settings``, closed afterwards, whose changes are recorded as the
    operator's (:func:`~bastion.authserver.audit.cli_actor`)."""
    if db is not None:
        yield db
        return
    if settings.database_url is None:
        private_dir(settings.data_dir)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        with auth_audit.bind(Context(enabled=settings.audit.enabled, actor=cli_actor())):
            yield db
    finally:
        await db.dispose()


async def changed(
    conn: AsyncConnection,
    event: Event,
    kind: str,
    target: str,
    detail: Mapping[str, object] | None = None,
    *,
    client_id: str | None = None,
) -> None:
    """Record an operator's change of ``kind`` ``target`` in the caller's transaction."""
    record = AuditRecord(
        event,
        auth_audit.millis(system_clock()),
        client_id=client_id,
        target_kind=kind,
        target_id=target,
        detail=dict(detail) if detail else None,
    )
    await auth_audit.add(conn, record)


# The longest client id the clients table holds.
CLIENT_ID_MAX = 255


@dataclass(frozen=True)
class NewClient:
    """A client just created, with its secret (shown once, stored only as a hash)."""

    client: Client
    secret: str | None


def resolve_resource(settings: Settings, value: str) -> str:
    """The canonical URI of a configured resource named by its name or URI (``*``: every
    resource); AdminError listing the known ones otherwise."""
    if value == EVERY:
        return value
    for r in settings.resources:
        if value in (r.uri, r.name):
            return r.uri
    try:
        wanted = canonical(value)
    except ValueError:
        wanted = value
    for r in settings.resources:
        if r.uri == wanted:
            return r.uri
    known = ", ".join(f"{r.name or '-'} ({r.uri})" for r in settings.resources) or "none"
    raise AdminError(
        f"no resource {value!r} is configured; known resources: {known}, or * for all of them"
    )


def check_known_scopes(settings: Settings, scopes: list[str], resource: str = EVERY) -> None:
    """AdminError naming the scopes the AS does not know (for ``resource``), with the known."""
    known = settings.all_scopes if resource == EVERY else settings.scopes_of(resource)
    unknown = sorted(set(scopes) - set(known) - {EVERY})
    if unknown:
        where = "this server" if resource == EVERY else resource
        raise AdminError(
            f"unknown scope {' '.join(unknown)} for {where}; known scopes: {' '.join(known)}"
        )


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
    resources: Sequence[str] = (),
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    introspects: Sequence[str] = (),
    dpop_bound: bool = False,
    db: Database | None = None,
) -> NewClient:
    """Pre-register a client (an operator made it: it may use client_credentials).

    ``dpop_bound``: the client always uses DPoP (``dpop_bound_access_tokens``, RFC 9449 §5.2);
    its token requests without a proof are refused.

    A machine client (client_credentials) may obtain tokens for ``resources`` (names, URIs or
    ``*``) with ``scope`` (all their scopes when None), through access rules ``client:<id>``;
    with no resources it gets none until ``bastion access allow`` gives it some. A resource
    server that checks tokens by introspection (RFC 7662) is given the resources whose tokens it
    may introspect (``introspects``)."""
    if jwks is not None or jwks_uri is not None:
        auth_method = auth_method or "private_key_jwt"
    method = auth_method or ("client_secret_basic" if confidential else "none")
    targets = [resolve_resource(settings, r) for r in resources]
    if scope:  # the registry's old scope names are stored under their new names
        scope = " ".join(settings.upgrade_scopes(scope.split()))
    scopes = (scope or "").split()
    for target in targets or [EVERY]:
        check_known_scopes(settings, scopes, target)
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
    if jwks is not None:
        fields["jwks"] = jwks
    if jwks_uri is not None:
        fields["jwks_uri"] = jwks_uri
    if dpop_bound:
        fields["dpop_bound_access_tokens"] = True
    meta = client_metadata.parse(fields)
    _check_machine(meta, targets)
    if client_id is not None and not (0 < len(client_id) <= CLIENT_ID_MAX and is_vschar(client_id)):
        raise AdminError(
            f"a client id is 1 to {CLIENT_ID_MAX} visible ASCII characters (RFC 6749 A.1)"
        )
    secret = opaque.new_token() if method in ("client_secret_basic", "client_secret_post") else None
    now = system_clock()
    client = Client(
        client_id=client_id or secrets.token_urlsafe(18),
        origin="preregistered",
        metadata=meta,
        secret_hash=opaque.digest(secret) if secret else None,
        created_at=now,
        operator_approved=True,
        grant_id=secrets.token_hex(16),
        introspects=tuple(resolve_resource(settings, r) for r in introspects),
    )
    if client.introspects and client.is_public:
        raise AdminError("only a confidential client may introspect tokens: add --confidential")
    async with database(settings, db) as store, store.transaction() as conn:
        if await client_rows.get(conn, client.client_id) is not None:
            raise AdminError(f"a client with id {client.client_id!r} already exists")
        await client_rows.insert(conn, client, now)
        await _give_resources(conn, client.client_id, targets, scopes, now)
        detail = {"name": name, "grant_types": grant_types, "resources": targets, "scope": scope}
        await changed(
            conn,
            Event.CLIENT_ADDED,
            "client",
            client.client_id,
            {**detail, "grant_id": client.grant_id, "auth_method": method},
            client_id=client.client_id,
        )
    return NewClient(client, secret)


def _check_machine(meta: client_metadata.ClientMetadata, targets: list[str] | None) -> None:
    if targets and not {"client_credentials", JWT_BEARER} & set(meta.grant_types):
        raise AdminError(
            "resources are given to machine clients: add --grant client_credentials (or "
            f"--grant {JWT_BEARER} for a workload, docs/workload-identity.md)"
        )


async def _give_resources(
    conn: AsyncConnection, client_id: str, targets: list[str], scopes: list[str], now: int
) -> None:
    """The access rules of a machine client: ``scopes`` (none: all) on each resource."""
    for target in targets:
        rule = AccessRule(target, f"client:{client_id}", check_scopes(scopes or [EVERY]))
        await rule_rows.put_rule(conn, rule, now)


async def update_client(
    settings: Settings,
    client_id: str,
    *,
    name: str | None = None,
    redirect_uris: list[str] | None = None,
    grant_types: list[str] | None = None,
    scope: str | None = None,
    resources: Sequence[str] | None = None,
    introspects: Sequence[str] | None = None,
    jwks: dict[str, object] | None = None,
    jwks_uri: str | None = None,
    db: Database | None = None,
) -> tuple[Client, int]:
    """Change a client an operator made (what is not given stays). A new ``jwks`` or
    ``jwks_uri`` replaces the keys of a private_key_jwt client (either one replaces the other).
    When its grants, scope, resources or keys change, every grant it holds is revoked (people
    sign in again, a machine client obtains new tokens): the client and how many grants of
    people ended."""
    targets = None if resources is None else [resolve_resource(settings, r) for r in resources]
    readers = None if introspects is None else [resolve_resource(settings, r) for r in introspects]
    now = system_clock()
    async with database(settings, db) as store, store.transaction() as conn:
        client = await client_rows.get(conn, client_id)
        if client is None:
            raise AdminError(f"no client with id {client_id!r}; see `bastion clients list`")
        if not client.operator_approved:
            raise AdminError(
                f"client {client_id!r} registered itself ({client.origin}); it manages its "
                "registration itself (RFC 7592), or remove it with `bastion clients remove`"
            )
        fields = client.metadata.public_dict()
        if name is not None:
            fields["client_name"] = name
        if redirect_uris is not None:
            fields["redirect_uris"] = redirect_uris
        if grant_types is not None:
            fields["grant_types"] = grant_types
            fields["response_types"] = ["code"] if "authorization_code" in grant_types else []
        if scope is not None:
            fields.pop("scope", None)
            if scope:
                fields["scope"] = " ".join(settings.upgrade_scopes(scope.split()))
        if jwks is not None or jwks_uri is not None:
            if client.metadata.token_endpoint_auth_method != "private_key_jwt":
                raise AdminError(f"client {client_id!r} does not authenticate with private_key_jwt")
            fields.pop("jwks", None)
            fields.pop("jwks_uri", None)
            fields |= {"jwks": jwks} if jwks is not None else {"jwks_uri": jwks_uri}
        meta = client_metadata.parse(fields)
        if readers and meta.is_public:
            raise AdminError("only a confidential client may introspect tokens")
        scopes = (meta.scope or "").split()
        for target in targets or [EVERY]:
            check_known_scopes(settings, scopes, target)
        _check_machine(meta, targets)
        await client_rows.update(conn, client_id, now, metadata=meta, introspects=readers)
        if targets is not None:
            await rule_rows.delete_rules_of(conn, f"client:{client_id}")
            for target in targets:
                who = f"client:{client_id}"
                await rule_rows.put_rule(
                    conn, AccessRule(target, who, check_scopes(scopes or [EVERY])), now
                )
        narrowed = (
            meta.grant_types != client.metadata.grant_types
            or meta.scope != client.metadata.scope
            or targets is not None
            or meta.jwks != client.metadata.jwks
            or meta.jwks_uri != client.metadata.jwks_uri
        )
        ended = 0
        if narrowed:
            ended = await withdraw_client(
                conn,
                client,
                now,
                token_ttl=settings.tokens.access_token_ttl,
                reason="client changed",
                keep=True,
            )
        updated = await client_rows.get(conn, client_id)
        given: dict[str, str | Sequence[str] | None] = {"name": name, "scope": scope}
        given |= {"redirect_uris": redirect_uris, "grant_types": grant_types}
        given |= {"resources": targets, "introspects": readers, "jwks_uri": jwks_uri}
        if jwks is not None:
            given["jwks"] = [str(k.get("kid", "?")) for k in _keys_of(jwks)]
        detail: dict[str, object] = {
            k: v if isinstance(v, str) else list(v) for k, v in given.items() if v is not None
        }
        await changed(
            conn,
            Event.CLIENT_CHANGED,
            "client",
            client_id,
            {**detail, "grants_revoked": ended},
            client_id=client_id,
        )
    assert updated is not None
    return updated, ended


def _keys_of(jwks: Mapping[str, object]) -> list[Mapping[str, object]]:
    keys = jwks.get("keys")
    return [k for k in keys if isinstance(k, Mapping)] if isinstance(keys, list) else []


async def list_clients(settings: Settings, *, db: Database | None = None) -> list[Client]:
    """Every stored client."""
    async with database(settings, db) as store, store.connect() as conn:
        return await client_rows.list_all(conn)


async def get_client(settings: Settings, client_id: str, *, db: Database | None = None) -> Client:
    """One client; AdminError if there is none."""
    async with database(settings, db) as store, store.connect() as conn:
        client = await client_rows.get(conn, client_id)
    if client is None:
        raise AdminError(f"no client with id {client_id!r}; see `bastion clients list`")
    return client


async def remove_client(settings: Settings, client_id: str, *, db: Database | None = None) -> None:
    """Delete a client, its access rules and every grant it holds (tokens stop working at every
    resource server)."""
    async with database(settings, db) as store, store.transaction() as conn:
        client = await client_rows.get(conn, client_id)
        if client is None:
            raise AdminError(f"no client with id {client_id!r}; see `bastion clients list`")
        await withdraw_client(
            conn,
            client,
            system_clock(),
            token_ttl=settings.tokens.access_token_ttl,
            reason="client removed",
            keep=False,
        )
        await rule_rows.delete_rules_of(conn, f"client:{client_id}")
        await client_rows.delete(conn, client_id)
        await changed(conn, Event.CLIENT_REMOVED, "client", client_id, client_id=client_id)


async def rotate_client_secret(
    settings: Settings, client_id: str, *, db: Database | None = None
) -> str:
    """Give a confidential client a new secret; the old one stops working at once."""
    client = await get_client(settings, client_id, db=db)
    if client.metadata.token_endpoint_auth_method not in (
        "client_secret_basic",
        "client_secret_post",
    ):
        raise AdminError(f"client {client_id!r} does not authenticate with a secret")
    secret = opaque.new_token()
    now = system_clock()
    async with database(settings, db) as store, store.transaction() as conn:
        await client_rows.update(conn, client_id, now, secret_hash=opaque.digest(secret))
        await withdraw_client(
            conn,
            client,
            now,
            token_ttl=settings.tokens.access_token_ttl,
            reason="client secret rotated",
            keep=True,
        )
        await changed(conn, Event.CLIENT_SECRET_ROTATED, "client", client_id, client_id=client_id)
    return secret


async def add_registration_token(
    settings: Settings,
    *,
    label: str,
    machine: Sequence[tuple[str, Sequence[str]]] = (),
    ttl: int | None = None,
    uses: int | None = None,
    db: Database | None = None,
) -> str:
    """Make an initial access token for Dynamic Client Registration (RFC 7591 §3); returned
    once, stored as a hash. With ``machine`` (resource name/URI/``*`` and its scopes, none: all)
    clients registered with it may use client_credentials, for exactly those resources."""
    if not label or len(label) > 200:
        raise AdminError("give the token a label of 1 to 200 characters (who it is for)")
    if (ttl is not None and ttl <= 0) or (uses is not None and uses <= 0):
        raise AdminError("--ttl and --uses must be positive")
    rules = []
    for resource, scopes in machine:
        target = resolve_resource(settings, resource)
        check_known_scopes(settings, list(scopes), target)
        rules.append((target, check_scopes(scopes or [EVERY])))
    token = opaque.new_token()
    now = system_clock()
    async with database(settings, db) as store, store.transaction() as conn:
        await token_rows.add(
            conn,
            RegistrationToken(
                token_hash=opaque.digest(token),
                label=label,
                machine_rules=tuple(rules),
                created_at=now,
                expires_at=now + ttl if ttl else None,
                uses_left=uses,
            ),
        )
        detail = {"machine": [list(r) for r in rules], "ttl": ttl, "uses": uses}
        await changed(conn, Event.REGISTRATION_TOKEN_ADDED, "registration_token", label, detail)
    return token


async def list_registration_tokens(
    settings: Settings, *, db: Database | None = None
) -> list[RegistrationToken]:
    """Every initial access token an operator made (their hashes, never the tokens)."""
    async with database(settings, db) as store, store.connect() as conn:
        return await token_rows.list_all(conn)


async def remove_registration_token(
    settings: Settings, label: str, *, db: Database | None = None
) -> None:
    """Delete the initial access tokens with ``label`` (clients registered with them stay)."""
    async with database(settings, db) as store, store.transaction() as conn:
        if not await token_rows.remove(conn, label):
            raise AdminError(
                f"no registration token labelled {label!r}; see `bastion registration-tokens list`"
            )
        await changed(conn, Event.REGISTRATION_TOKEN_REMOVED, "registration_token", label)


def _key_manager(db: Database, settings: Settings) -> KeyManager:
    return KeyManager(
        db,
        cipher_for(settings),
        alg=settings.tokens.signing_alg,
        token_ttl=settings.tokens.access_token_ttl,
        prepublish=settings.tokens.key_prepublish,
    )


async def rotate_keys(
    settings: Settings, *, now: bool = False, alg: str | None = None, db: Database | None = None
) -> str:
    """Add a new signing key (published at once, signing after the pre-publication delay, or at
    once with ``now``); older keys leave the JWKS once their tokens have expired."""
    if alg is not None and alg not in ALGORITHMS:
        raise AdminError(
            f"cannot sign with {alg!r}: use one of {', '.join(ALGORITHMS)} (asymmetric "
            "algorithms, which resource servers verify with the published public key)"
        )
    async with database(settings, db) as store:
        kid = await _key_manager(store, settings).rotate(alg=alg, prepublish=0 if now else None)
        async with store.transaction() as conn:
            detail = {"alg": alg or settings.tokens.signing_alg, "now": now}
            await changed(conn, Event.KEYS_ROTATED, "signing_key", kid, detail)
        return kid


async def rekey_secrets(settings: Settings, *, db: Database | None = None) -> dict[str, int]:
    """Re-encrypt every value stored under the secret key (signing keys, upstream refresh
    tokens, upstream sign-ins in progress) under ``secret_key``, in one transaction; what was
    encrypted under one of ``previous_secret_keys`` is re-encrypted. The number re-encrypted,
    by kind. A value no configured secret opens stops it all (nothing is written)."""
    cipher = cipher_for(settings)

    def reseal(value: str, bound_to: str) -> str | None:
        return cipher.reseal(value, bound_to=bound_to)

    async with database(settings, db) as store, store.transaction() as conn:
        counts = {column.name: await reseal_column(conn, column, reseal) for column in SEALED}
        await changed(conn, Event.SECRETS_REKEYED, "secret_key", "current", counts)
        return counts


@dataclass(frozen=True)
class PublishedKey:
    """A signing key as ``bastion keys list`` shows it (never its private part)."""

    kid: str
    alg: str
    activates_at: int
    retire_at: int | None


async def list_keys(settings: Settings, *, db: Database | None = None) -> list[PublishedKey]:
    """The published keys with their activation and retirement times."""
    async with database(settings, db) as store:
        keys = _key_manager(store, settings)
        return [
            PublishedKey(k.kid, k.alg, k.activates_at, k.retire_at) for k in await keys.published()
        ]


__all__ = [
    "AdminError",
    "NewClient",
    "PublishedKey",
    "add_client",
    "add_registration_token",
    "changed",
    "check_known_scopes",
    "database",
    "get_client",
    "list_clients",
    "list_keys",
    "list_registration_tokens",
    "rekey_secrets",
    "remove_client",
    "remove_registration_token",
    "resolve_resource",
    "rotate_client_secret",
    "rotate_keys",
    "update_client",
]
