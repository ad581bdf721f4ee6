"""Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592).

Deprecated by MCP 2026-07-28 in favour of Client ID Metadata Documents, still widely used. A
registration answers 201 with the client's credentials, a registration access token and the
client's configuration URL; the token allows reading (GET), replacing (PUT) and deleting (DELETE)
the registration. Unused registrations expire (``registration.unused_client_ttl``).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bastion.access.policy import withdraw_client
from bastion.authserver.audit import address_of, audited
from bastion.authserver.context import AuthServer, server
from bastion.authserver.http import NO_STORE, is_vschar, json_response, read_json
from bastion.authserver.quotas import requester
from bastion.oauth import client_metadata
from bastion.oauth.errors import InvalidClientMetadata, InvalidRequest, InvalidToken
from bastion.store import access as rule_rows
from bastion.store import auth_audit
from bastion.store import clients as client_rows
from bastion.store import registration_tokens as token_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.clients import Client
from bastion.store.registration_tokens import RegistrationToken
from bastion.tokens import secrets as opaque


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _initial_token(bastion: AuthServer, request: Request) -> str | None:
    """RFC 7591 §3: the initial access token to spend (one an operator made with `bastion
    registration-tokens add`), or None when registration goes ahead without one (open
    registration, or the static ``registration.initial_access_token``)."""
    required = bastion.settings.registration.initial_access_token
    sent = _bearer(request)
    if required is not None and hmac.compare_digest(
        (sent or "").encode(), required.get_secret_value().encode()
    ):
        return None
    if sent is None and required is not None:
        raise InvalidToken("registration requires a valid initial access token")
    return sent


def _refuse_machine_grants(
    meta: client_metadata.ClientMetadata, token: RegistrationToken | None = None
) -> None:
    """Machine access is never self-service: a client that registers itself may ask people to
    sign in, never act alone, unless an operator's initial access token allows machine
    clients."""
    alone = sorted(set(meta.grant_types) & client_metadata.OPERATOR_GRANTS)
    if alone and (token is None or not token.machine_rules):
        raise InvalidClientMetadata(
            f"grant_types: {', '.join(alone)} is not available to self-registered clients; "
            "machine clients are made by an operator (bastion clients add), or registered with "
            "an initial access token that allows them (bastion registration-tokens add)"
        )


def _validate_scope(bastion: AuthServer, meta: client_metadata.ClientMetadata) -> None:
    if meta.scope:
        asked = bastion.settings.upgrade_scopes(meta.scope.split())
        unknown = set(asked) - set(bastion.settings.all_scopes)
        if unknown:
            raise InvalidClientMetadata(f"scope: unknown {' '.join(sorted(unknown))}")


def _response(
    bastion: AuthServer,
    client: Client,
    *,
    secret: str | None = None,
    registration_token: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        **client.metadata.public_dict(),
        "registration_client_uri": bastion.url(f"/register/{client.client_id}"),
    }
    if secret is not None:
        body["client_secret"] = secret
    if not client.is_public and client.metadata.token_endpoint_auth_method != "private_key_jwt":
        body["client_secret_expires_at"] = client.secret_expires_at
    if registration_token is not None:
        body["registration_access_token"] = registration_token
    return body


def _uses_secret(meta: client_metadata.ClientMetadata) -> bool:
    return meta.token_endpoint_auth_method in ("client_secret_basic", "client_secret_post")


def _event(
    kind: Event, client: Client, request: Request, now: int, label: str | None = None
) -> AuditRecord:
    """A registration record: the client acts on itself (RFC 7591, RFC 7592)."""
    return AuditRecord(
        kind,
        auth_audit.millis(now),
        client_id=client.client_id,
        address=address_of(request),
        actor=f"client:{client.client_id}",
        target_kind="client",
        target_id=client.client_id,
        detail={
            "client_name": client.metadata.client_name,
            "grant_types": list(client.metadata.grant_types),
            **({"initial_access_token": label} if label else {}),
        },
    )


@audited
async def register(request: Request) -> Response:
    """POST /register (RFC 7591 §3.1)."""
    bastion = server(request)
    initial = _initial_token(bastion, request)
    data = await read_json(request, bastion.settings.max_body_bytes)
    if isinstance(data, dict) and ("client_id" in data or "client_secret" in data):
        raise InvalidClientMetadata("client_id and client_secret are assigned by the server")
    meta = client_metadata.parse(data)
    if initial is None:
        _refuse_machine_grants(meta)
    _validate_scope(bastion, meta)
    now = bastion.clock()
    secret = opaque.new_token() if _uses_secret(meta) else None
    registration_token = opaque.new_token()
    client = Client(
        client_id=secrets.token_urlsafe(18),
        origin="dynamic",
        metadata=meta,
        secret_hash=opaque.digest(secret) if secret else None,
        registration_token_hash=opaque.digest(registration_token),
        created_at=now,
        grant_id=secrets.token_hex(16),
    )
    # Spending the initial access token, counting the registration against its quotas,
    # storing the client and its rules: all or nothing.
    async with bastion.db.transaction() as conn:
        token: RegistrationToken | None = None
        if initial is not None:
            token = await token_rows.spend(conn, opaque.digest(initial), now)
            if token is None:
                raise InvalidToken(
                    "the initial access token is not valid (unknown, expired or used up)"
                )
            _refuse_machine_grants(meta, token)
            machine = "client_credentials" in meta.grant_types
            client = replace(client, operator_approved=machine)
        await bastion.quotas.admit_registration(conn, requester(request.scope), now)
        await client_rows.insert(conn, client, now)
        if token is not None and client.operator_approved:
            for rule in token.rules_for(client.client_id):
                await rule_rows.put_rule(conn, rule, now)
        await auth_audit.add(
            conn,
            _event(Event.CLIENT_REGISTERED, client, request, now, token.label if token else None),
        )
    body = _response(bastion, client, secret=secret, registration_token=registration_token)
    return json_response(body, status=201)


async def _authorized_client(bastion: AuthServer, request: Request) -> Client:
    """RFC 7592 §3: the registration access token must match the client in the URL. An unknown
    client and a wrong token answer the same 401, so client ids cannot be probed."""
    token = _bearer(request)
    client_id = request.path_params["client_id"]
    client = None
    if is_vschar(client_id):
        async with bastion.db.connect() as conn:
            client = await client_rows.get(conn, client_id)
    if (
        token is None
        or client is None
        or client.registration_token_hash is None
        or not opaque.matches(token, client.registration_token_hash)
    ):
        raise InvalidToken("the registration access token is not valid for this client")
    return client


@audited
async def manage(request: Request) -> Response:
    """GET, PUT or DELETE /register/{client_id} (RFC 7592 §2)."""
    bastion = server(request)
    client = await _authorized_client(bastion, request)
    if request.method == "GET":
        return json_response(_response(bastion, client))
    now = bastion.clock()
    if request.method == "DELETE":
        async with bastion.db.transaction() as conn:
            await withdraw_client(
                conn,
                client,
                now,
                token_ttl=bastion.settings.tokens.access_token_ttl,
                reason="client deleted its registration",
                keep=False,
            )
            await client_rows.delete(conn, client.client_id)
            await auth_audit.add(conn, _event(Event.CLIENT_DELETED, client, request, now))
        bastion.clients.invalidate(client.client_id)
        return Response(status_code=204, headers=NO_STORE)
    data = await read_json(request, bastion.settings.max_body_bytes)
    if not isinstance(data, dict):
        raise InvalidClientMetadata("client metadata must be a JSON object")
    if data.get("client_id") != client.client_id:
        raise InvalidRequest("the body's client_id must be the client's id (RFC 7592 2.2)")
    sent_secret = data.get("client_secret")
    if sent_secret is not None and (
        not client.secret_hash or not opaque.matches(str(sent_secret), client.secret_hash)
    ):
        raise InvalidRequest("client_secret does not match the client's secret")
    fields = {
        k: v
        for k, v in data.items()
        if k
        not in (
            "client_id",
            "client_secret",
            "registration_access_token",
            "registration_client_uri",
            "client_id_issued_at",
            "client_secret_expires_at",
        )
    }
    meta = client_metadata.parse(fields)
    if not client.operator_approved:
        _refuse_machine_grants(meta)
    _validate_scope(bastion, meta)
    if _uses_secret(meta) != _uses_secret(client.metadata) or (meta.is_public != client.is_public):
        raise InvalidClientMetadata(
            "token_endpoint_auth_method cannot change between secret and non-secret kinds; "
            "register a new client instead"
        )
    async with bastion.db.transaction() as conn:
        await client_rows.update(conn, client.client_id, now, metadata=meta)
        await auth_audit.add(conn, _event(Event.CLIENT_UPDATED, client, request, now))
    bastion.clients.invalidate(client.client_id)
    updated = replace(client, metadata=meta)
    return json_response(_response(bastion, updated))


__all__ = ["manage", "register"]
