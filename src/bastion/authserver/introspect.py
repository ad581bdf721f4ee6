"""Token introspection (RFC 7662).

Callers authenticate as confidential clients. An access token is described only to the client it
was issued to and to resource servers an operator allowed to introspect its audience
(``bastion clients add --introspect RESOURCE``; RFC 7662 §4: the AS decides who may learn what
about a token); a refresh token only to the client it was issued to. Anything else answers
``{"active": false}`` (RFC 7662 §2.2), whatever the token: a stranger learns nothing, not even
whether a token is genuine. An access token revoked itself, through its refresh family, or
through its ``grant_id`` (the server's revocation list, kept current from the database) is
inactive too.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bastion.authserver.client_auth import authenticate
from bastion.authserver.context import AuthServer, server
from bastion.authserver.http import json_response, read_form, single
from bastion.oauth.errors import InvalidClient, InvalidRequest
from bastion.store import grants
from bastion.store.clients import Client
from bastion.tokens import access_token
from bastion.tokens import secrets as opaque

INACTIVE: dict[str, object] = {"active": False}


async def describe_access_token(
    bastion: AuthServer, token: str, caller: Client
) -> dict[str, object] | None:
    """The introspection answer for one of our JWT access tokens, or None if it is not one."""
    keys = await bastion.keys.verification_keys()
    claims = access_token.decode_own(token, keys, issuer=bastion.issuer, now=bastion.clock())
    if claims is None:
        return None
    if claims.get("client_id") != caller.client_id and not caller.may_introspect(claims.get("aud")):
        return INACTIVE
    jti = str(claims.get("jti", ""))
    grant_id = claims.get(access_token.GRANT_ID)
    if bastion.revocations.covers(grant_id if isinstance(grant_id, str) else None, jti):
        return INACTIVE
    async with bastion.db.connect() as conn:
        if await grants.is_access_token_revoked(conn, jti):
            return INACTIVE
        family_id = await grants.family_of_access_token(conn, jti)
        family = await grants.get_family(conn, family_id) if family_id else None
    if family is not None and family.revoked_at is not None:
        return INACTIVE
    cnf = claims.get("cnf")
    bound = isinstance(cnf, dict) and isinstance(cnf.get("jkt"), str)
    # RFC 9449 §6.2: a DPoP-bound token's cnf.jkt as a top-level member; token_type DPoP.
    answer: dict[str, object] = {"active": True, "token_type": "DPoP" if bound else "Bearer"}
    # grant_id too (an extension member, RFC 7662 §2.2): a resource that caches answers can
    # then refuse them once the grant is revoked (bastion.resource's revocations=).
    for name in (
        "scope",
        "client_id",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "jti",
        access_token.GRANT_ID,
        "cnf",
    ):
        if name in claims:
            answer[name] = claims[name]
    return answer


async def describe_refresh_token(
    bastion: AuthServer, token: str, caller: Client
) -> dict[str, object] | None:
    """The introspection answer for a refresh token, or None if it is not one of ours."""
    now = bastion.clock()
    async with bastion.db.connect() as conn:
        row = await grants.get_refresh(conn, opaque.digest(token))
        family = await grants.get_family(conn, row.family_id) if row else None
    if row is None or family is None:
        return None
    if (
        family.client_id != caller.client_id
        or row.used_at is not None
        or family.revoked_at is not None
        or family.expires_at <= now
    ):
        return INACTIVE
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": family.scope,
        "client_id": family.client_id,
        "sub": family.subject,
        "aud": family.resource,
        "iss": bastion.issuer,
        "exp": family.expires_at,
        "iat": row.issued_at,
    }


async def introspect(request: Request) -> Response:
    """POST /introspect."""
    bastion = server(request)
    params = await read_form(request, bastion.settings.max_body_bytes)
    caller = await authenticate(bastion, request, params)
    if caller.is_public:
        raise InvalidClient("introspection requires a confidential client")
    token = single(params, "token")
    if token is None:
        raise InvalidRequest("token is required")
    answer = await describe_access_token(bastion, token, caller)
    if answer is None:
        answer = await describe_refresh_token(bastion, token, caller)
    return json_response(answer or INACTIVE)


__all__ = ["describe_access_token", "describe_refresh_token", "introspect"]
