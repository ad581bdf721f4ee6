"""The refresh_token grant with rotation and reuse detection (OAuth 2.1 §4.3, RFC 9700 §4.14.2).

Each refresh token works once. Presenting one that was already used means two parties hold it,
so the whole family (every refresh and access token descending from the original code) is
revoked, with one exception: within ``tokens.refresh_reuse_window`` seconds of its rotation, the
client it belongs to may present it again and gets the same successor (kept encrypted for that
purpose) with a new access token. That is what an answer lost to a crash or a dropped connection
looks like, and what two processes of one client refreshing at once do; since the successor is
the same, the family keeps a single live branch. Once that successor has been used in turn, the
old token is reuse like any other.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.authserver.context import AuthServer
from bastion.authserver.issuance import (
    add_refresh,
    audit_binding,
    decide,
    identity_claims,
    mint_access,
)
from bastion.oauth import scopes as scope_syntax
from bastion.oauth.errors import InvalidGrant, InvalidScope, InvalidTarget, OAuthError
from bastion.oauth.resource import canonical, check_indicator
from bastion.oauth.token_request import RefreshTokenRequest
from bastion.oauth.token_response import TokenResponse
from bastion.store import auth_audit, grants
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.clients import Client
from bastion.store.federation import LinkedAccount, links_of
from bastion.store.grant_records import FamilyRecord
from bastion.store.prepared import on_autocommit_postgresql
from bastion.store.users import User
from bastion.tokens import access_token
from bastion.tokens import secrets as opaque


async def refresh(
    bastion: AuthServer,
    client: Client,
    request: RefreshTokenRequest,
    *,
    dpop_jkt: str | None,
) -> TokenResponse:
    """Exchange a refresh token for a new access token and a new refresh token; the access
    token is bound to the DPoP key ``dpop_jkt`` when the request had a proof (RFC 9449 §5)."""
    now = bastion.clock()
    token_hash = opaque.digest(request.refresh_token)
    rotated: TokenResponse | _Elsewhere | None = None
    # One connection reads the grant and, on PostgreSQL, rotates it in one statement.
    async with bastion.db.statements() as conn:
        try:
            family, user, scopes = await _granted(
                bastion, conn, client, request, token_hash, now, dpop_jkt
            )
        except _Refusal as refused:
            refusal: _Refusal | None = refused
        else:
            refusal = None
            issued, response = await mint_access(
                bastion,
                client=client,
                subject=family.subject,
                scope=scope_syntax.join(scopes),
                resource=family.resource,
                grant_id=family.id,
                claims=identity_claims(bastion, user),
                dpop_jkt=dpop_jkt,
            )
            rotation = _Rotation(bastion, client, family, token_hash, issued, now, dpop_jkt)
            rotated = await rotation.here(conn, response)
    if refusal is not None:
        if refusal.reason is not None:
            await _revoke(bastion, refusal.family_id, now, refusal.reason)
        raise refusal.error
    if isinstance(rotated, _Elsewhere):
        async with bastion.db.transaction() as conn:
            rotated = await rotation.in_transaction(conn, response)
    if rotated is None:
        repeated = await _repeat(bastion, token_hash, family.id, issued, response, now, dpop_jkt)
        if repeated is not None:
            return repeated
        await _explain_failure(bastion, token_hash, client, now)
        raise InvalidGrant("the refresh token is not valid")
    return rotated


class _Refusal(Exception):
    """A refused refresh: ``error`` to answer, after revoking the family for ``reason`` when
    one is given."""

    def __init__(self, error: OAuthError, family_id: str = "", reason: str | None = None):
        super().__init__(error.description)
        self.error = error
        self.family_id = family_id
        self.reason = reason


class _Elsewhere:
    """The rotation needs a transaction of its own (PostgreSQL, an uncommon case)."""


async def _granted(
    bastion: AuthServer,
    conn: AsyncConnection,
    client: Client,
    request: RefreshTokenRequest,
    token_hash: str,
    now: int,
    dpop_jkt: str | None,
) -> tuple[FamilyRecord, User, list[str]]:
    """The family, its user and the scopes the refresh may have, read through ``conn``;
    raises :class:`_Refusal` when the request is refused. The request is checked against the
    grant before the token is spent: a malformed retry by the rightful client must not look
    like reuse later."""
    found = await grants.refresh_grant(conn, token_hash)
    if found is None:
        raise _Refusal(InvalidGrant("the refresh token is not valid"))
    row, family, user = found.token, found.family, found.user
    if family.client_id != client.client_id:
        error = InvalidGrant("the refresh token was issued to another client")
        if row.used_at is not None:
            # A rotated token in a stranger's hands: the grant is compromised.
            raise _Refusal(error, family.id, "refresh token reused by another client")
        raise _Refusal(error)
    if family.revoked_at is not None:
        raise _Refusal(InvalidGrant("the refresh token has been revoked"))
    if family.expires_at <= now:
        raise _Refusal(InvalidGrant("the refresh token has expired; authorize again"))
    try:
        _check_binding(family, dpop_jkt)
    except InvalidGrant as exc:
        raise _Refusal(exc) from None
    if user is None or user.disabled:
        # The person behind the grant was removed or disabled: nothing of it may live on.
        error = InvalidGrant("the user of this grant no longer exists or is disabled")
        raise _Refusal(error, family.id, "user removed or disabled")
    limits = {u.name: u.session_max_age for u in bastion.settings.upstreams if u.session_max_age}
    try:
        if limits:
            _check_session_age(family.created_at, now, await links_of(conn, user.id), limits)
        # A grant made before the registry's scopes were renamed refreshes under the new names.
        upgrade = bastion.settings.upgrade_scopes
        granted = set(upgrade(family.scope.split(), family.resource))
        asked = set(upgrade(scope_syntax.parse(request.scope), family.resource)) or granted
        if not asked <= granted:
            extra = " ".join(sorted(asked - granted))
            raise InvalidScope(f"scope {extra} was not granted; authorize again to get it")
        resource = request.resource
        if resource is not None and canonical(check_indicator(resource)) != family.resource:
            raise InvalidTarget("resource differs from the one that was authorized")
    except OAuthError as exc:
        raise _Refusal(exc) from None
    # The rules and the person's groups are checked again at every refresh: access withdrawn
    # since the sign-in ends the grant, a scope withdrawn is left out.
    decision = await decide(bastion, conn, user, family.resource, asked, found.rules)
    if not decision.grants_something:
        error = InvalidGrant(
            f"{user.username} may no longer use {family.resource}; the grant has been revoked"
        )
        raise _Refusal(error, family.id, "access withdrawn")
    return family, user, list(decision.scopes)


class _Rotation:
    """Spending the old token and storing its successor, atomically: a concurrent reuse either
    loses the token or, once this commits, finds the successor and revokes it too."""

    def __init__(
        self,
        bastion: AuthServer,
        client: Client,
        family: FamilyRecord,
        token_hash: str,
        issued: access_token.IssuedToken,
        now: int,
        dpop_jkt: str | None,
    ) -> None:
        self.bastion = bastion
        self.client = client
        self.family = family
        self.token_hash = token_hash
        self.issued = issued
        self.now = now
        self.dpop_jkt = dpop_jkt

    def _seal(self, successor: str) -> str | None:
        if not self.bastion.settings.tokens.refresh_reuse_window:
            return None
        return self.bastion.cipher.encrypt(successor.encode(), bound_to=_bound(self.token_hash))

    async def here(
        self, conn: AsyncConnection, response: TokenResponse
    ) -> TokenResponse | _Elsewhere | None:
        """Rotate through ``conn`` from :meth:`Database.statements`: in one statement on
        PostgreSQL when the usual case allows, in its transaction on SQLite; the response with
        the successor, None if the token was spent already."""
        if not on_autocommit_postgresql(conn):
            return await self.in_transaction(conn, response)
        client = self.client
        if (
            "refresh_token" not in client.metadata.grant_types
            or (client.is_public and self.dpop_jkt is not None and self.family.dpop_jkt is None)
            or (client.origin == "dynamic" and client.first_used_at is None)
        ):
            return _Elsewhere()  # add_refresh's other writes go in the same transaction
        successor = opaque.new_token()
        audit = audit_binding(_refreshed(self.family, self.now, "ok"), self.dpop_jkt)
        rotated = await grants.rotate_refresh(
            conn,
            token_hash=self.token_hash,
            now=self.now,
            sealed=self._seal(successor),
            successor_hash=opaque.digest(successor),
            issued_at=self.bastion.clock(),
            jti=self.issued.jti,
            expires_at=self.issued.expires_at,
            audit=audit,
        )
        return response.with_refresh_token(successor) if rotated else None

    async def in_transaction(
        self, conn: AsyncConnection, response: TokenResponse
    ) -> TokenResponse | None:
        """Rotate in the transaction of ``conn``, one statement at a time."""
        spent = await grants.consume_refresh(conn, self.token_hash, self.now)
        if spent is None:
            return None
        response = await add_refresh(
            self.bastion,
            conn,
            client=self.client,
            family_id=self.family.id,
            issued=self.issued,
            response=response,
            audit=_refreshed(self.family, self.now, "ok"),
            dpop_jkt=self.dpop_jkt,
        )
        successor = response.refresh_token
        sealed = self._seal(successor) if successor else None
        if sealed is not None:
            await grants.set_successor(conn, self.token_hash, sealed)
        return response


def _bound(token_hash: str) -> str:
    return f"refresh-successor:{token_hash}"


async def _repeat(
    bastion: AuthServer,
    token_hash: str,
    family_id: str,
    issued: access_token.IssuedToken,
    response: TokenResponse,
    now: int,
    dpop_jkt: str | None,
) -> TokenResponse | None:
    """Within the reuse window, answer a repeated refresh with the successor it already got
    (and the new access token); None when the window does not apply."""
    window = bastion.settings.tokens.refresh_reuse_window
    async with bastion.db.transaction() as conn:
        known = await grants.get_refresh(conn, token_hash)
        if (
            not window
            or known is None
            or known.used_at is None
            or known.used_at + window < now
            or known.successor_encrypted is None
        ):
            return None
        successor = bastion.cipher.decrypt(
            known.successor_encrypted, bound_to=_bound(token_hash)
        ).decode()
        following = await grants.get_refresh(conn, opaque.digest(successor))
        family = await grants.get_family(conn, family_id)
        if following is None or following.used_at is not None or family is None:
            return None  # the chain has moved on: this is reuse
        if family.revoked_at is not None:
            return None
        again = audit_binding(_refreshed(family, now, "repeated_within_window"), dpop_jkt)
        await grants.record_access_token(conn, family_id, issued.jti, issued.expires_at, again)
    return response.with_refresh_token(successor)


def _refreshed(family: FamilyRecord, now: int, outcome: str) -> AuditRecord:
    return AuditRecord(
        Event.GRANT_REFRESHED,
        auth_audit.millis(now),
        outcome=outcome,
        subject=family.subject,
        client_id=family.client_id,
        grant_id=family.id,
    )


def _check_binding(family: FamilyRecord, dpop_jkt: str | None) -> None:
    """RFC 9449 §5: a refresh token bound to a DPoP key (a public client's, issued with a
    proof) works only with a proof of that key. The RFC names no error code: a token the
    request cannot use is invalid_grant (RFC 6749 §5.2). The token is not spent."""
    if family.dpop_jkt is None or dpop_jkt == family.dpop_jkt:
        return
    if dpop_jkt is None:
        raise InvalidGrant(
            "the refresh token is bound to a DPoP key: send a DPoP proof of that key "
            "(RFC 9449 section 5)"
        )
    raise InvalidGrant("the DPoP proof's key is not the one the refresh token is bound to")


def _check_session_age(
    signed_in_at: int, now: int, links: list[LinkedAccount], limits: dict[str, int]
) -> None:
    """upstreams.session_max_age: a grant of a user linked to such a provider ends that long
    after the sign-in, so that the provider's allow rules and groups are applied again."""
    ages = sorted(
        (limits[link.provider], link.provider) for link in links if link.provider in limits
    )
    if ages and signed_in_at + ages[0][0] <= now:
        max_age, provider = ages[0]
        raise InvalidGrant(
            f"sign in again: grants of accounts linked to {provider} last {max_age} s "
            "(session_max_age)"
        )


async def _revoke(bastion: AuthServer, family_id: str, now: int, reason: str) -> None:
    async with bastion.db.transaction() as conn:
        await grants.revoke_family(conn, family_id, now, reason)


async def _explain_failure(bastion: AuthServer, token_hash: str, client: Client, now: int) -> None:
    async with bastion.db.transaction() as conn:
        known = await grants.get_refresh(conn, token_hash)
        if known is not None and known.used_at is not None:
            await grants.revoke_family(conn, known.family_id, now, "refresh token reused")
    if known is not None and known.used_at is not None:
        raise InvalidGrant(
            "the refresh token was already used; every token of this grant has been revoked. "
            "Authorize again"
        )


__all__ = ["refresh"]
