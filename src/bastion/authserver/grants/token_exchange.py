"""The token exchange grant (RFC 8693) for confidential clients acting for a person (X08).

A resource server that holds a person's bastion access token (an MCP server behind the gateway,
registered as a confidential client) exchanges it for a token for another configured resource,
to call it as that person. Nothing is allowed unless a ``[[token_exchange]]`` rule of the
configuration allows it: the client, the resource the subject token was issued for (``from``),
the target (``to``) and the scopes at the target. The access rules must still admit the person
at the target, exactly as if they signed in there.

The new token records the delegation in ``act`` (RFC 8693 §4.1): the acting client is
``act.sub``, and the ``act`` of the subject token, if any, is nested inside, so an exchanged
token exchanged again carries the whole chain. It carries the ``grant_id`` of the subject token
and is recorded in that grant's family: revoking the person's grant (the refresh-token family
behind the subject token) revokes the exchanged tokens at every resource server too. It never
outlives the subject token, and no refresh token is issued.

Errors (RFC 8693 §2.2.2): a subject or actor token that is not valid, or not acceptable by
policy, is ``invalid_request`` (the RFC's MUST, not RFC 6749's ``invalid_grant``); a target this
server will not issue a token for, including one the access rules do not admit the person to,
is ``invalid_target``; a public client, or one no rule names, is ``unauthorized_client``; scopes
beyond the subject token or the rule are ``invalid_scope``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bastion.authserver.authorize import known_scopes
from bastion.authserver.context import AuthServer
from bastion.authserver.issuance import audit_binding, identity_claims, mint_access
from bastion.authserver.person_scopes import admitted_scopes
from bastion.config import TokenExchangeRule
from bastion.oauth import scopes as scope_syntax
from bastion.oauth.errors import InvalidRequest, InvalidScope, InvalidTarget, UnauthorizedClient
from bastion.oauth.resource import canonical, check_indicator
from bastion.oauth.token_request import ACCESS_TOKEN_TYPE, TokenExchangeRequest
from bastion.oauth.token_response import TokenResponse
from bastion.store import auth_audit, grants
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.clients import Client
from bastion.store.grant_records import FamilyRecord
from bastion.store.users import User
from bastion.tokens import access_token

NO_RULE = (
    "client {client_id} may not exchange tokens: no [[token_exchange]] rule names it "
    "(see docs/token-exchange.md)"
)


@dataclass(frozen=True)
class Subject:
    """A verified subject token: its claims, the person's grant and the person."""

    claims: dict[str, object]
    family: FamilyRecord
    user: User

    @property
    def source(self) -> str:
        """The resource the subject token was issued for (its ``aud``)."""
        return str(self.claims.get("aud", ""))

    @property
    def scopes(self) -> set[str]:
        """The subject token's scopes."""
        return set(scope_syntax.parse(str(self.claims.get("scope") or "")))

    @property
    def expires_at(self) -> int:
        """The subject token's ``exp``."""
        exp = self.claims.get("exp")
        return exp if isinstance(exp, int) else 0


def rules_of(bastion: AuthServer, client: Client) -> list[TokenExchangeRule]:
    """The ``[[token_exchange]]`` rules that name ``client``."""
    return [r for r in bastion.settings.token_exchange if r.client == client.client_id]


async def exchange(
    bastion: AuthServer,
    client: Client,
    request: TokenExchangeRequest,
    *,
    dpop_jkt: str | None,
) -> TokenResponse:
    """Exchange a person's bastion access token for one for another resource (RFC 8693 §2),
    bound to the DPoP key ``dpop_jkt`` when the request had a proof (RFC 9449 §5)."""
    if client.is_public:
        # RFC 8693 §2.1 leaves client authentication to the AS: a token handed to whoever
        # knows a public client id would be a token to anyone holding a stolen subject token.
        raise UnauthorizedClient("token exchange is only for confidential clients")
    rules = rules_of(bastion, client)
    if not rules:
        raise UnauthorizedClient(NO_RULE.format(client_id=client.client_id))
    if request.requested_token_type not in (None, ACCESS_TOKEN_TYPE):
        raise InvalidRequest(
            f"requested_token_type {request.requested_token_type} is not supported; only "
            f"{ACCESS_TOKEN_TYPE} is issued"
        )
    for name, kind in (
        ("subject_token_type", request.subject_token_type),
        ("actor_token_type", request.actor_token_type),
    ):
        if kind not in (None, ACCESS_TOKEN_TYPE):
            raise InvalidRequest(
                f"{name} {kind} is not supported; send an access token bastion issued "
                f"({ACCESS_TOKEN_TYPE})"
            )
    subject = await _subject(bastion, request.subject_token)
    if request.actor_token is not None:
        await _check_actor(bastion, client, request.actor_token)
    target = _target(bastion, request)
    rule = next((r for r in rules if r.source == subject.source and r.target == target), None)
    if rule is None:
        raise InvalidTarget(
            f"client {client.client_id} may not exchange a token for {subject.source} for one "
            f"for {target}: no [[token_exchange]] rule allows it"
        )
    scope = await _scope(bastion, request, subject, rule, target)
    act: dict[str, object] = {"sub": client.client_id}
    prior = subject.claims.get("act")
    if isinstance(prior, dict):
        act["act"] = prior  # RFC 8693 §4.1: the earlier actors, nested
    ttl = min(bastion.settings.tokens.access_token_ttl, subject.expires_at - bastion.clock())
    issued, response = await mint_access(
        bastion,
        client=client,
        subject=subject.family.subject,
        scope=scope,
        resource=target,
        grant_id=subject.family.id,
        claims={**identity_claims(bastion, subject.user), "act": act},
        ttl=ttl,
        dpop_jkt=dpop_jkt,
    )
    record = audit_binding(
        AuditRecord(
            Event.TOKEN_EXCHANGED,
            auth_audit.millis(bastion.clock()),
            subject=subject.family.subject,
            client_id=client.client_id,
            grant_id=subject.family.id,
            detail={"from": subject.source, "to": target, "scope": scope, "act": act},
        ),
        dpop_jkt,
    )
    async with bastion.db.transaction() as conn:
        # Recorded in the person's family, so that revoking the grant announces it for as long
        # as this token lives; a revocation that committed since the check ends it here.
        await grants.record_access_token(
            conn, subject.family.id, issued.jti, issued.expires_at, record
        )
        family = await grants.get_family(conn, subject.family.id)
        if family is None or family.revoked_at is not None:
            raise InvalidRequest("the subject token's grant has been revoked")
    return replace(response, expires_in=ttl, issued_token_type=ACCESS_TOKEN_TYPE)


async def _verified(bastion: AuthServer, token: str, what: str) -> dict[str, object]:
    """The claims of a live access token bastion issued (signature, typ, iss, exp, neither it
    nor its grant revoked); invalid_request otherwise (RFC 8693 §2.2.2)."""
    keys = await bastion.keys.verification_keys()
    claims = access_token.decode_own(token, keys, issuer=bastion.issuer, now=bastion.clock())
    if claims is None:
        raise InvalidRequest(
            f"the {what} is not a valid access token of this server (forged, expired, or "
            "issued by another issuer)"
        )
    jti = str(claims.get("jti", ""))
    grant_id = claims.get(access_token.GRANT_ID)
    if bastion.revocations.covers(grant_id if isinstance(grant_id, str) else None, jti):
        raise InvalidRequest(f"the {what} has been revoked")
    async with bastion.db.connect() as conn:
        if await grants.is_access_token_revoked(conn, jti):
            raise InvalidRequest(f"the {what} has been revoked")
    return claims


async def _subject(bastion: AuthServer, token: str) -> Subject:
    """The subject token, verified, with the person's live grant behind it."""
    claims = await _verified(bastion, token, "subject_token")
    grant_id = claims.get(access_token.GRANT_ID)
    async with bastion.db.connect() as conn:
        family = await grants.get_family(conn, grant_id) if isinstance(grant_id, str) else None
        user = await user_rows.by_id(conn, family.subject) if family is not None else None
    if family is None or family.subject != claims.get("sub"):
        # A client's own token (client_credentials) has no person to act for.
        raise InvalidRequest("the subject_token was not issued for a person's grant")
    if family.revoked_at is not None or family.expires_at <= bastion.clock():
        raise InvalidRequest("the subject_token's grant has been revoked or has expired")
    if user is None or user.disabled:
        raise InvalidRequest("the person of the subject_token no longer exists or is disabled")
    return Subject(claims, family, user)


async def _check_actor(bastion: AuthServer, client: Client, token: str) -> None:
    """The actor token must be a live token the authenticated client obtained for itself."""
    claims = await _verified(bastion, token, "actor_token")
    if claims.get("sub") != client.client_id or claims.get("client_id") != client.client_id:
        raise InvalidRequest(
            f"the actor_token does not represent the authenticated client {client.client_id}"
        )


def _target(bastion: AuthServer, request: TokenExchangeRequest) -> str:
    """The configured resource ``resource`` (RFC 8707) and/or ``audience`` name: by URI for
    either, by name for ``audience``; invalid_target when unknown, absent or in conflict."""
    by_uri = {r.uri: r.uri for r in bastion.settings.resources}
    named: list[str] = []
    if request.resource is not None:
        uri = by_uri.get(canonical(check_indicator(request.resource)))
        if uri is None:
            raise InvalidTarget(f"resource {request.resource} is not served by this server")
        named.append(uri)
    if request.audience is not None:
        by_name = {r.name: r.uri for r in bastion.settings.resources if r.name}
        uri = by_name.get(request.audience) or by_uri.get(canonical(request.audience))
        if uri is None:
            raise InvalidTarget(f"audience {request.audience} is not a resource of this server")
        named.append(uri)
    if not named:
        raise InvalidTarget("name the target with resource (its URI) or audience")
    if len(set(named)) > 1:
        raise InvalidTarget("resource and audience name different targets; send one")
    return named[0]


async def _scope(
    bastion: AuthServer,
    request: TokenExchangeRequest,
    subject: Subject,
    rule: TokenExchangeRule,
    target: str,
) -> str:
    """The scope of the new token: what was asked (by default, every scope of the subject
    token the rule allows), within the subject token, the rule and the person's access at the
    target."""
    asked = known_scopes(bastion, scope_syntax.parse(request.scope), target)
    allowed = subject.scopes & set(rule.scopes)
    if not asked:
        asked = allowed
        if not asked:
            raise InvalidScope(
                f"the subject token has none of the scopes the rule allows at {target} "
                f"({' '.join(sorted(rule.scopes))})"
            )
    beyond = asked - subject.scopes
    if beyond:
        raise InvalidScope(f"scope {' '.join(sorted(beyond))} is beyond the subject token's")
    beyond = asked - set(rule.scopes)
    if beyond:
        raise InvalidScope(
            f"scope {' '.join(sorted(beyond))} is beyond what the exchange rule allows at {target}"
        )
    # RFC 8693 §2.2.2: invalid_target when the AS is unwilling to issue a token for the
    # target; the person could not obtain one there by signing in either.
    return await admitted_scopes(
        bastion, subject.user, target, asked, asked=request.scope is not None
    )


__all__ = ["NO_RULE", "Subject", "exchange", "rules_of"]
