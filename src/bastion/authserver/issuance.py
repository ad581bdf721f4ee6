"""Minting the token response (RFC 6749 §5.1): a JWT access token and, when allowed, a rotated
opaque refresh token in the grant's family."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.authserver.context import AuthServer
from bastion.oauth.token_response import TokenResponse
from bastion.store import clients as client_rows
from bastion.store import grants
from bastion.store.auth_audit import AuditRecord
from bastion.store.clients import Client
from bastion.store.users import User
from bastion.tokens import access_token
from bastion.tokens import secrets as opaque
from bastion.tokens.access_token import GRANT_ID


def identity_claims(bastion: AuthServer, user: User | None) -> dict[str, object]:
    """The user's e-mail, name and groups, as far as known and configured (RFC 9068 §2.2.3.1:
    ``groups`` is a registered claim; e-mail and name are OpenID Connect's)."""
    if user is None:
        return {}
    known: dict[str, object] = {"email": user.email, "name": user.name, "groups": list(user.groups)}
    wanted = bastion.settings.tokens.identity_claims
    return {k: v for k, v in known.items() if k in wanted and v}


async def mint_access(
    bastion: AuthServer,
    *,
    client: Client,
    subject: str,
    scope: str,
    resource: str,
    grant_id: str | None,
    claims: Mapping[str, object] | None = None,
    ttl: int | None = None,
) -> tuple[access_token.IssuedToken, TokenResponse]:
    """Sign an access token (with ``claims`` about the user) and build the response.

    ``grant_id`` names the grant the token belongs to (a refresh family, or a machine client's
    current grant): revoking the grant revokes every access token that carries it, at every
    resource server (:mod:`bastion.resource.revocation`). ``ttl`` (seconds) replaces
    ``tokens.access_token_ttl`` when a token must not outlive another one."""
    key = await bastion.keys.signing_key()
    if ttl is None:
        ttl = bastion.settings.tokens.access_token_ttl
    issued = access_token.issue(
        key,
        issuer=bastion.issuer,
        subject=subject,
        audience=resource,
        client_id=client.client_id,
        scope=scope,
        now=bastion.clock(),
        ttl=ttl,
        extra={**(claims or {}), GRANT_ID: grant_id} if grant_id else claims,
    )
    return issued, TokenResponse(access_token=issued.token, expires_in=ttl, scope=scope)


async def add_refresh(
    bastion: AuthServer,
    conn: AsyncConnection,
    *,
    client: Client,
    family_id: str,
    issued: access_token.IssuedToken,
    response: TokenResponse,
    audit: AuditRecord,
) -> TokenResponse:
    """Record the access token in its family and, if the client may refresh, add a new refresh
    token to the response (rotation: every use of a refresh token returns a new one); ``audit``
    is the grant's record (created or refreshed)."""
    await grants.record_access_token(conn, family_id, issued.jti, issued.expires_at, audit)
    if "refresh_token" in client.metadata.grant_types:
        refresh = opaque.new_token()
        await grants.save_refresh(
            conn,
            token_hash=opaque.digest(refresh),
            family_id=family_id,
            issued_at=bastion.clock(),
        )
        response = response.with_refresh_token(refresh)
    if client.origin == "dynamic" and client.first_used_at is None:
        await client_rows.mark_used(conn, client.client_id, bastion.clock())
        bastion.clients.invalidate(client.client_id)
    return response


__all__ = ["add_refresh", "identity_claims", "mint_access"]
