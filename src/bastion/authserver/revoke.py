"""Token revocation (RFC 7009).

A client may revoke only its own tokens. Revoking a refresh token revokes its whole grant (every
access and refresh token of the family, RFC 7009 §2.1); revoking an access token revokes that
token. Invalid or unknown tokens still get 200 (RFC 7009 §2.2).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bastion.authserver.audit import audited
from bastion.authserver.client_auth import authenticate
from bastion.authserver.context import AuthServer, server
from bastion.authserver.http import NO_STORE, read_form, single
from bastion.oauth.errors import InvalidRequest
from bastion.store import auth_audit, grants
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.clients import Client
from bastion.tokens import access_token
from bastion.tokens import secrets as opaque


async def revoke_token(bastion: AuthServer, client: Client, token: str) -> None:
    """Revoke ``token`` if it is one of ``client``'s; do nothing otherwise."""
    now = bastion.clock()
    async with bastion.db.transaction() as conn:
        row = await grants.get_refresh(conn, opaque.digest(token))
        if row is not None:
            family = await grants.get_family(conn, row.family_id)
            if family is not None and family.client_id == client.client_id:
                await grants.revoke_family(conn, family.id, now, "revoked by the client")
            return
    keys = await bastion.keys.verification_keys()
    claims = access_token.decode_own(token, keys, issuer=bastion.issuer, now=now)
    if claims is None or claims.get("client_id") != client.client_id:
        return
    exp = claims["exp"]
    if not isinstance(exp, int):  # never: decode_own accepts an integer exp only
        return
    async with bastion.db.transaction() as conn:
        await grants.revoke_access_token(conn, str(claims["jti"]), exp, now=now)
        await auth_audit.add(
            conn,
            AuditRecord(
                Event.TOKEN_REVOKED,
                auth_audit.millis(now),
                subject=str(claims.get("sub") or "") or None,
                client_id=client.client_id,
                grant_id=str(claims.get("grant_id") or "") or None,
                target_kind="access_token",
                target_id=str(claims["jti"]),
            ),
        )


@audited
async def revoke(request: Request) -> Response:
    """POST /revoke."""
    bastion = server(request)
    params = await read_form(request, bastion.settings.max_body_bytes)
    client = await authenticate(bastion, request, params)
    token = single(params, "token")
    if token is None:
        raise InvalidRequest("token is required")
    await revoke_token(bastion, client, token)
    return Response(status_code=200, headers=NO_STORE)


__all__ = ["revoke", "revoke_token"]
