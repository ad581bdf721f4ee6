"""The jwt-bearer grant (RFC 7523 §2.1): a JWT as the authorization grant, of two kinds.

- An ID-JAG (``typ`` ``oauth-id-jag+jwt``) from an enterprise identity provider, redeemed by an
  authenticated confidential client for a person: :mod:`bastion.authserver.grants.id_jag`.
- A workload's token from its platform (:mod:`bastion.authserver.workload`): it names the
  machine client through a ``[[workload_identities]]`` rule and is its client authentication
  too, with no secret at all; the token's subject is the client, as with client_credentials.

Without an upstream that accepts ID-JAGs or a workload rule the grant is unsupported (and not
in the metadata). A request for it authenticates its client here (:func:`client_of`): with
credentials (HTTP Basic, a secret, a client assertion), or for an ID-JAG, as any token request
does; with none (a ``client_id`` at most), through the workload's token.

A workload's token is single use (its ``jti``, or the token itself when it has none) unless its
rule says otherwise: Kubernetes and SPIRE hand a workload the same token until it nears expiry,
so a rule for them sets ``single_use = false`` and relies on the token's short life and audience.
"""

from __future__ import annotations

from starlette.requests import Request

from bastion.authserver import assertions, workload
from bastion.authserver.authorize import known_scopes, select_resource
from bastion.authserver.client_auth import authenticate, sends_credentials
from bastion.authserver.context import AuthServer
from bastion.authserver.grants import id_jag
from bastion.authserver.http import single
from bastion.authserver.issuance import audit_binding, mint_access
from bastion.config import WorkloadIdentityRule
from bastion.oauth import scopes as scope_syntax
from bastion.oauth.errors import (
    InvalidGrant,
    InvalidScope,
    InvalidTarget,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from bastion.oauth.token_request import JWT_BEARER, JwtBearerRequest
from bastion.oauth.token_response import TokenResponse
from bastion.store import auth_audit
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.clients import Client

REPLAY_PURPOSE = "workload"


async def client_of(bastion: AuthServer, request: Request, params: dict[str, list[str]]) -> Client:
    """The client of a jwt-bearer token request (OAuth 2.1 §3.2.1, RFC 7523 §3)."""
    if not bastion.settings.accepts_jwt_bearer:
        raise UnsupportedGrantType(
            f"grant_type {JWT_BEARER} is not enabled here: no upstream accepts ID-JAGs and no "
            "[[workload_identities]] rule exists"
        )
    assertion = single(params, "assertion")
    if (
        assertion is None
        or sends_credentials(request, params)
        or assertions.typ(assertion) == assertions.ID_JAG_TYP
    ):
        return await authenticate(bastion, request, params)
    return await workload.authenticate(bastion, assertion, single(params, "client_id"))


async def issue(
    bastion: AuthServer, client: Client, request: JwtBearerRequest, *, dpop_jkt: str | None
) -> TokenResponse:
    """Run the grant for the kind of assertion sent; the token is bound to ``dpop_jkt`` when
    the request carried a DPoP proof."""
    if assertions.typ(request.assertion) == assertions.ID_JAG_TYP:
        return await id_jag.redeem(bastion, client, request, dpop_jkt=dpop_jkt)
    return await _workload_token(bastion, client, request, dpop_jkt=dpop_jkt)


async def _workload_token(
    bastion: AuthServer, client: Client, request: JwtBearerRequest, *, dpop_jkt: str | None
) -> TokenResponse:
    """A token for the machine client a workload's token names (X07)."""
    if not client.operator_approved:
        raise UnauthorizedClient(
            f"client {client.client_id} registered itself; workloads authenticate as machine "
            "clients an operator made (bastion clients add)"
        )
    issuer = assertions.unverified_claims(request.assertion).get("iss")
    rules = workload.rules_of_issuer(bastion, issuer)
    if not rules:
        raise InvalidGrant(
            f"the assertion's issuer {issuer!r} is neither a [[workload_identities]] issuer "
            "nor an identity provider trusted for ID-JAGs (those need typ oauth-id-jag+jwt)"
        )
    claims, matching = await workload.verified(bastion, request.assertion, rules)
    mine = [r for r in matching if r.client == client.client_id]
    if not mine:
        raise (
            InvalidGrant("no [[workload_identities]] rule matches the token's subject and claims")
            if not matching
            else UnauthorizedClient(
                f"the workload's token is for client {matching[0].client}, not {client.client_id}"
            )
        )
    rule = mine[0]
    resource = select_resource(bastion, (request.resource,) if request.resource else ())
    scope = await _machine_scope(bastion, client, rule, request, resource)
    if rule.single_use:  # spent only once everything else holds
        jti = claims.get("jti")
        exp = claims.get("exp")
        assert isinstance(exp, int | float)  # checked by workload.verified
        key = (
            f"{rule.issuer} {jti}"
            if isinstance(jti, str) and jti
            else assertions.token_digest(request.assertion)
        )
        await assertions.use_once(bastion, REPLAY_PURPOSE, key, int(exp))
    _, response = await mint_access(
        bastion,
        client=client,
        subject=client.client_id,
        scope=scope,
        resource=resource,
        grant_id=client.grant_id,
        dpop_jkt=dpop_jkt,
    )
    record = AuditRecord(
        Event.WORKLOAD_TOKEN_ISSUED,
        auth_audit.millis(bastion.clock()),
        subject=client.client_id,
        client_id=client.client_id,
        method="workload",
        grant_id=client.grant_id,
        detail={
            "rule": rule.name,
            "issuer": rule.issuer,
            "workload": str(claims.get("sub")),
            "scope": scope,
            "resource": resource,
        },
    )
    async with bastion.db.transaction() as conn:
        await auth_audit.add(conn, audit_binding(record, dpop_jkt))
    return response


async def _machine_scope(
    bastion: AuthServer,
    client: Client,
    rule: WorkloadIdentityRule,
    request: JwtBearerRequest,
    resource: str,
) -> str:
    """What was asked (everything allowed by default), within the rule's scopes and the
    client's access rules at ``resource``, as for client_credentials."""
    asked = known_scopes(bastion, scope_syntax.parse(request.scope), resource)
    if rule.scopes is not None:
        beyond = asked - set(rule.scopes)
        if beyond:
            raise InvalidScope(
                f"scope {' '.join(sorted(beyond))} is beyond what workload_identities"
                f"[{rule.name}] allows"
            )
        if not asked:
            asked = set(rule.scopes) & set(bastion.settings.scopes_of(resource))
    decision = await bastion.access.for_machine(
        client.client_id, resource, sorted(asked), bastion.settings.scopes_of(resource)
    )
    if not decision.rules:
        raise InvalidTarget(
            f"client {client.client_id} may not obtain tokens for {resource}; an operator can "
            f"allow it with `bastion access allow RESOURCE client:{client.client_id}`"
        )
    if not decision.allowed or not decision.scopes:
        raise InvalidScope(
            f"client {client.client_id} may not obtain scope "
            f"{' '.join(sorted(decision.withheld)) or '(none left)'} for {resource}"
        )
    return scope_syntax.join(decision.scopes)


__all__ = ["REPLAY_PURPOSE", "client_of", "issue"]
