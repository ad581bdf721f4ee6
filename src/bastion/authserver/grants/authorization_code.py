"""The authorization_code grant (OAuth 2.1 §4.1.3, RFC 7636 §4.6, RFC 8707 §2.2).

The code is consumed atomically before anything is issued; a second redemption finds it used and
revokes every token the first one produced (OAuth 2.1 §4.1.3, RFC 9700 §4.2.4).
"""

from __future__ import annotations

from typing import Any

from bastion.authserver.context import AuthServer
from bastion.authserver.http import single
from bastion.authserver.issuance import add_refresh, mint_access
from bastion.oauth import pkce
from bastion.oauth.errors import InvalidGrant, InvalidRequest, InvalidTarget
from bastion.oauth.resource import canonical
from bastion.store import grants
from bastion.store.clients import Client
from bastion.tokens import secrets as opaque


async def exchange(
    bastion: AuthServer, client: Client, params: dict[str, list[str]]
) -> dict[str, Any]:
    """Redeem a code for tokens."""
    code = single(params, "code")
    if code is None:
        raise InvalidRequest("code is required")
    redirect_uri = single(params, "redirect_uri")
    verifier = single(params, "code_verifier")
    resources = params.get("resource", [])
    if len(resources) > 1:
        raise InvalidTarget("send one resource per request")
    now = bastion.clock()
    code_hash = opaque.digest(code)
    async with bastion.db.transaction() as conn:
        row = await grants.consume_code(conn, code_hash, now)
    if row is None:
        await _explain_failure(bastion, code_hash, now)
    assert row is not None  # _explain_failure always raises
    if row.client_id != client.client_id:
        raise InvalidGrant("the authorization code was issued to another client")
    if redirect_uri is None:
        if len(client.metadata.redirect_uris) != 1:
            raise InvalidRequest("redirect_uri is required: send the one used to authorize")
    elif redirect_uri != row.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the one used in the authorization request")
    pkce.verify(verifier, row.code_challenge)
    if resources and canonical(resources[0]) != row.resource:
        raise InvalidTarget("resource differs from the one that was authorized")
    issued, body = await mint_access(
        bastion, client=client, subject=row.subject, scope=row.scope, resource=row.resource
    )
    async with bastion.db.transaction() as conn:
        await grants.create_family(
            conn,
            id=row.family_id,
            client_id=client.client_id,
            subject=row.subject,
            scope=row.scope,
            resource=row.resource,
            created_at=now,
            expires_at=now + bastion.settings.tokens.refresh_token_ttl,
        )
        await add_refresh(
            bastion, conn, client=client, family_id=row.family_id, issued=issued, body=body
        )
    return body


async def _explain_failure(bastion: AuthServer, code_hash: str, now: int) -> None:
    """Raise the right invalid_grant; on a replay, revoke what the first redemption issued."""
    async with bastion.db.transaction() as conn:
        known = await grants.get_code(conn, code_hash)
        if known is not None and known.consumed_at is not None:
            await grants.revoke_family(conn, known.family_id, now, "authorization code replayed")
    if known is None:
        raise InvalidGrant("the authorization code is not valid")
    if known.consumed_at is not None:
        raise InvalidGrant(
            "the authorization code was already used; tokens issued with it have been revoked"
        )
    raise InvalidGrant("the authorization code has expired")


__all__ = ["exchange"]
