"""The authorization_code grant (OAuth 2.1 §4.1.3, RFC 7636 §4.6, RFC 8707 §2.2).

The code is consumed in the same transaction that stores the tokens it yields; a second redemption
finds it used and revokes every token the first one produced (OAuth 2.1 §4.1.3, RFC 9700 §4.2.4).
"""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.access.rules import AccessRule
from bastion.authserver.context import AuthServer
from bastion.authserver.issuance import (
    add_refresh,
    audit_binding,
    decide,
    identity_claims,
    mint_access,
)
from bastion.oauth import pkce
from bastion.oauth.errors import InvalidGrant, InvalidRequest, InvalidTarget, OAuthError
from bastion.oauth.resource import canonical, check_indicator
from bastion.oauth.token_request import AuthorizationCodeRequest
from bastion.oauth.token_response import TokenResponse
from bastion.store import auth_audit, grants
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.clients import Client
from bastion.store.grant_records import CodeRecord, FamilyRecord
from bastion.store.users import User
from bastion.tokens import access_token
from bastion.tokens import secrets as opaque


async def exchange(
    bastion: AuthServer,
    client: Client,
    request: AuthorizationCodeRequest,
    *,
    dpop_jkt: str | None,
) -> TokenResponse:
    """Redeem a code for tokens, bound to the DPoP key ``dpop_jkt`` when the request had a
    proof (RFC 9449 §5)."""
    now = bastion.clock()
    code_hash = opaque.digest(request.code)
    # Load the signing keys now, so that minting inside the transaction needs no other connection.
    await bastion.keys.signing_key()
    outcome: TokenResponse | OAuthError | None
    if bastion.db.is_sqlite or (client.origin == "dynamic" and client.first_used_at is None):
        # A client's first use is recorded in the same transaction (add_refresh).
        async with bastion.db.transaction() as conn:
            outcome = await _redeem(bastion, conn, client, request, code_hash, now, dpop_jkt)
    else:
        async with bastion.db.statements() as conn:
            outcome = await _redeem_at_once(
                bastion, conn, client, request, code_hash, now, dpop_jkt
            )
    if outcome is None:
        await _explain_failure(bastion, code_hash, now)
    if isinstance(outcome, OAuthError):
        raise outcome
    return outcome


async def _redeem(
    bastion: AuthServer,
    conn: AsyncConnection,
    client: Client,
    request: AuthorizationCodeRequest,
    code_hash: str,
    now: int,
    dpop_jkt: str | None,
) -> TokenResponse | OAuthError | None:
    """In the transaction of ``conn``: consume the code and store the family with its tokens.
    A concurrent replay either wins the code or, once this commits, finds the family and
    revokes it. A failed check still commits the consumption (the code is spent) and nothing
    else. None when the code could not be consumed."""
    row = await grants.consume_code(conn, code_hash, now)
    if row is None:
        return None
    try:
        _check(client, row, request, dpop_jkt)
        return await _issue(bastion, conn, client, row, now, dpop_jkt)
    except OAuthError as exc:
        return exc


async def _redeem_at_once(
    bastion: AuthServer,
    conn: AsyncConnection,
    client: Client,
    request: AuthorizationCodeRequest,
    code_hash: str,
    now: int,
    dpop_jkt: str | None,
) -> TokenResponse | OAuthError | None:
    """:func:`_redeem` on PostgreSQL in autocommit: the code and its user are read and checked
    first, then one statement spends the code and stores everything only if it was still
    unspent (so exactly one of racing redemptions stores anything). A failed check spends the
    code alone. None when the code was unknown, expired or spent already."""
    found = await grants.code_grant(conn, code_hash)
    if found is None or found.code.consumed_at is not None or found.code.expires_at <= now:
        return None
    row = found.code
    try:
        _check(client, row, request, dpop_jkt)
        user, scope = await _allowed(bastion, conn, row, found.user, found.rules)
    except OAuthError as exc:
        return exc if await grants.consume_code(conn, code_hash, now) else None
    issued, response = await _mint(bastion, client, row, user, scope, dpop_jkt)
    refresh = opaque.new_token() if "refresh_token" in client.metadata.grant_types else None
    # A public client's family is bound to the key of its DPoP proof (see add_refresh).
    binds = refresh is not None and client.is_public and dpop_jkt is not None
    redeemed = await grants.redeem_code(
        conn,
        code_hash=code_hash,
        now=now,
        family=_family(bastion, row, client, scope, now, dpop_jkt if binds else None),
        jti=issued.jti,
        expires_at=issued.expires_at,
        refresh_hash=None if refresh is None else opaque.digest(refresh),
        issued_at=bastion.clock(),
        audit=audit_binding(_created(row, client, scope, now), dpop_jkt),
    )
    if not redeemed:
        return None
    return response if refresh is None else response.with_refresh_token(refresh)


def _check(
    client: Client, row: CodeRecord, request: AuthorizationCodeRequest, dpop_jkt: str | None
) -> None:
    """OAuth 2.1 §4.1.3, RFC 7636 §4.6 and RFC 9449 §10 checks of a consumed code against the
    request."""
    if row.client_id != client.client_id:
        raise InvalidGrant("the authorization code was issued to another client")
    if request.redirect_uri is None:
        if row.redirect_uri_sent:
            raise InvalidRequest("redirect_uri is required: send the one used to authorize")
    elif request.redirect_uri != row.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the one used in the authorization request")
    pkce.verify(request.code_verifier, row.code_challenge)
    if row.dpop_jkt is not None and dpop_jkt != row.dpop_jkt:
        # RFC 9449 §10: MUST reject, no error code named. The code is bound to a key this
        # request does not prove: a grant that does not match its request (RFC 6749 §5.2).
        raise InvalidGrant(
            "the authorization code is bound to a DPoP key (dpop_jkt): redeem it with a DPoP "
            "proof of that key"
            if dpop_jkt is None
            else "the DPoP proof's key is not the one the authorization code is bound to (dpop_jkt)"
        )
    resource = request.resource
    if resource is not None and canonical(check_indicator(resource)) != row.resource:
        raise InvalidTarget("resource differs from the one that was authorized")


async def _allowed(
    bastion: AuthServer,
    conn: AsyncConnection,
    row: CodeRecord,
    user: User | None,
    rules: list[AccessRule] | None = None,
) -> tuple[User, str]:
    """The person and the rules are checked again: a code is spent within seconds of the
    consent, but a user disabled or removed from a group meanwhile gets nothing. The user
    and the scope the tokens get."""
    if user is None or user.disabled:
        raise InvalidGrant("the user of this authorization no longer exists or is disabled")
    decision = await decide(bastion, conn, user, row.resource, row.scope.split(), rules)
    if not decision.grants_something:
        raise InvalidGrant(f"{user.username} may no longer use {row.resource}")
    return user, " ".join(sorted(decision.scopes))


async def _mint(
    bastion: AuthServer,
    client: Client,
    row: CodeRecord,
    user: User,
    scope: str,
    dpop_jkt: str | None,
) -> tuple[access_token.IssuedToken, TokenResponse]:
    return await mint_access(
        bastion,
        client=client,
        subject=row.subject,
        scope=scope,
        resource=row.resource,
        grant_id=row.family_id,
        claims=identity_claims(bastion, user),
        dpop_jkt=dpop_jkt,
    )


def _family(
    bastion: AuthServer,
    row: CodeRecord,
    client: Client,
    scope: str,
    now: int,
    dpop_jkt: str | None = None,
) -> FamilyRecord:
    return FamilyRecord(
        id=row.family_id,
        client_id=client.client_id,
        subject=row.subject,
        scope=scope,
        resource=row.resource,
        created_at=now,
        expires_at=now + bastion.settings.tokens.refresh_token_ttl,
        dpop_jkt=dpop_jkt,
    )


async def _issue(
    bastion: AuthServer,
    conn: AsyncConnection,
    client: Client,
    row: CodeRecord,
    now: int,
    dpop_jkt: str | None,
) -> TokenResponse:
    """Mint the tokens of a redeemed code and store its family, in the caller's transaction."""
    user, scope = await _allowed(bastion, conn, row, await user_rows.by_id(conn, row.subject))
    issued, response = await _mint(bastion, client, row, user, scope, dpop_jkt)
    await grants.create_family(conn, _family(bastion, row, client, scope, now))
    return await add_refresh(
        bastion,
        conn,
        client=client,
        family_id=row.family_id,
        issued=issued,
        response=response,
        audit=_created(row, client, scope, now),
        dpop_jkt=dpop_jkt,
    )


def _created(row: CodeRecord, client: Client, scope: str, now: int) -> AuditRecord:
    return AuditRecord(
        Event.GRANT_CREATED,
        auth_audit.millis(now),
        subject=row.subject,
        client_id=client.client_id,
        method="authorization_code",
        grant_id=row.family_id,
        detail={"scope": scope, "resource": row.resource},
    )


async def _explain_failure(bastion: AuthServer, code_hash: str, now: int) -> NoReturn:
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
