"""Minting the token response (RFC 6749 §5.1): a JWT access token and, when allowed, a rotated
opaque refresh token in the grant's family.

Every grant mints through :func:`mint_access`, whose ``dpop_jkt`` has no default: the
thumbprint of the token request's DPoP proof (:mod:`bastion.authserver.dpop`), or None without
one. A grant cannot leave it out, and the token endpoint refuses to answer a DPoP request with
an unbound token."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.access.policy import decide_for_user
from bastion.access.rules import AccessRule, Decision
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

CONFIRMATION = "cnf"  # RFC 7800 §3.1; with the jkt member of RFC 9449 §6.1


async def decide(
    bastion: AuthServer,
    conn: AsyncConnection,
    user: User,
    resource: str,
    asked: Iterable[str],
    rules: list[AccessRule] | None,
) -> Decision:
    """What ``user`` may obtain of the ``asked`` scopes for ``resource`` under the current
    rules: ``rules`` when the grant was read with them, else read now through ``conn``."""
    if rules is None:
        return await bastion.access.for_user(conn, user, resource, asked)
    return await decide_for_user(conn, rules, user, resource, asked, bastion.access.upgrade)


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
    dpop_jkt: str | None,
) -> tuple[access_token.IssuedToken, TokenResponse]:
    """Sign an access token (with ``claims`` about the user) and build the response.

    ``dpop_jkt``: the key thumbprint of the request's DPoP proof; the token is then bound to it
    (``cnf.jkt``, RFC 9449 §6.1) and the response's ``token_type`` is DPoP (§5).

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
        extra=_extra(claims, grant_id, dpop_jkt),
    )
    response = TokenResponse(
        access_token=issued.token,
        expires_in=ttl,
        scope=scope,
        token_type="Bearer" if dpop_jkt is None else "DPoP",
    )
    return issued, response


def _extra(
    claims: Mapping[str, object] | None, grant_id: str | None, dpop_jkt: str | None
) -> dict[str, object]:
    extra = dict(claims or {})
    if grant_id:
        extra[GRANT_ID] = grant_id
    if dpop_jkt is not None:
        extra[CONFIRMATION] = {"jkt": dpop_jkt}
    return extra


def audit_binding(record: AuditRecord, dpop_jkt: str | None) -> AuditRecord:
    """``record`` with the DPoP key the tokens are bound to in its detail (``dpop_jkt``)."""
    if dpop_jkt is None:
        return record
    return replace(record, detail={**(record.detail or {}), "dpop_jkt": dpop_jkt})


async def add_refresh(
    bastion: AuthServer,
    conn: AsyncConnection,
    *,
    client: Client,
    family_id: str,
    issued: access_token.IssuedToken,
    response: TokenResponse,
    audit: AuditRecord,
    dpop_jkt: str | None,
) -> TokenResponse:
    """Record the access token in its family and, if the client may refresh, add a new refresh
    token to the response (rotation: every use of a refresh token returns a new one); ``audit``
    is the grant's record (created or refreshed).

    A public client's family is bound to ``dpop_jkt``, the key of the request's DPoP proof
    (RFC 9449 §5: its refresh tokens then work only with proofs of that key, which the
    refresh_token grant checks); a confidential client's is not, since it authenticates."""
    audit = audit_binding(audit, dpop_jkt)
    await grants.record_access_token(conn, family_id, issued.jti, issued.expires_at, audit)
    if "refresh_token" in client.metadata.grant_types:
        if client.is_public and dpop_jkt is not None:
            await grants.bind_family(conn, family_id, dpop_jkt)
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


__all__ = [
    "CONFIRMATION",
    "add_refresh",
    "audit_binding",
    "decide",
    "identity_claims",
    "mint_access",
]
