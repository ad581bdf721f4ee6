"""Enterprise-managed authorization: redeeming an Identity Assertion JWT Authorization Grant
(ID-JAG; MCP extension "enterprise-managed authorization" §4.3, §5.1;
draft-ietf-oauth-identity-assertion-authz-grant; checklist X06).

The client obtained the ID-JAG from the person's enterprise identity provider by token exchange,
and presents it as a jwt-bearer grant (RFC 7523 §2.1) with its own client authentication. The
provider is a ``[[upstreams]]`` entry with ``accept_id_jag = true``; its keys and its issuer are
the ones its sign-ins use (:class:`bastion.identity.upstream_client.ProviderClient`).

Checked, in this order: the client (confidential and made by an operator: the draft's
security considerations keep this grant to clients that authenticate, and a self-registered
client must not obtain people's tokens without their consent here), ``typ`` exactly
``oauth-id-jag+jwt`` (RFC 8725 §3.11), the issuer a trusting provider, the signature, ``aud``
exactly bastion's issuer (§5.1 says the issuer; the token endpoint URL RFC 7523 §3 also allows
is refused, so that an assertion made for another profile cannot be replayed here),
``client_id`` = the authenticated client, ``exp``, ``iat``, ``jti`` single use in every process
(RFC 7523 §3 item 7), ``resource`` a resource served here (RFC 8707; a ``resource`` parameter
sent must be the same); then the person: an account linked to the provider's subject, or one
created now if the provider's allow rules would let the person sign in (the same rules as a
sign-in), never a disabled one; then the scope: the ID-JAG's, narrowed by what the request asks,
the client's registered scope and the access rules for the person at the resource.

The token belongs to a new grant of the person (``grant_created``, method ``id_jag``): revoking
the person's grants revokes it at every resource server. No refresh token is issued: the client
asks the provider for a new ID-JAG, and the provider decides again.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from bastion.authserver import assertions
from bastion.authserver.authorize import known_scopes
from bastion.authserver.context import AuthServer
from bastion.authserver.issuance import audit_binding, identity_claims, mint_access
from bastion.authserver.person_scopes import admitted_scopes
from bastion.identity.claims import UpstreamIdentity, local_groups, map_claims, refusal
from bastion.identity.errors import AccountNotAllowed, FederationError
from bastion.identity.linking import link_account
from bastion.identity.providers import ProviderSpec
from bastion.logs import get_logger
from bastion.oauth import jose
from bastion.oauth import scopes as scope_syntax
from bastion.oauth.errors import InvalidGrant, InvalidScope, InvalidTarget, UnauthorizedClient
from bastion.oauth.resource import canonical, check_indicator
from bastion.oauth.token_request import JwtBearerRequest
from bastion.oauth.token_response import TokenResponse
from bastion.store import auth_audit, grants
from bastion.store import federation as federation_rows
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.clients import Client
from bastion.store.grant_records import FamilyRecord
from bastion.store.users import User

log = get_logger("bastion.id_jag")

MAX_LIFETIME = 3600
"""Seconds: an ID-JAG expiring later than this from now is refused (they live minutes)."""
REPLAY_PURPOSE = "id-jag"


def providers(bastion: AuthServer) -> list[ProviderSpec]:
    """The identity providers whose ID-JAGs are accepted."""
    federation = bastion.federation
    if federation is None:
        return []
    trusting = {u.name for u in bastion.settings.upstreams if u.accept_id_jag}
    return [spec for spec in federation.providers if spec.name in trusting]


async def redeem(
    bastion: AuthServer, client: Client, request: JwtBearerRequest, *, dpop_jkt: str | None
) -> TokenResponse:
    """An access token for the person an ID-JAG names, at the resource it names."""
    if client.is_public:
        raise UnauthorizedClient(
            "an ID-JAG is redeemed by a confidential client that authenticates (client_id "
            "alone is not enough); public clients sign people in with the authorization code "
            "flow"
        )
    if not client.operator_approved:
        raise UnauthorizedClient(
            f"client {client.client_id} registered itself; ID-JAGs are redeemed by clients an "
            "operator registered (bastion clients add)"
        )
    kind = assertions.header(request.assertion).get("typ")
    if kind != assertions.ID_JAG_TYP:
        raise InvalidGrant(f"the assertion's typ must be {assertions.ID_JAG_TYP}")
    spec, claims = await _verified(bastion, request.assertion)
    assertions.check_audience(claims, bastion.issuer)
    if claims.get("client_id") != client.client_id:
        raise InvalidGrant(
            f"the ID-JAG was issued to another client, not {client.client_id} (its client_id)"
        )
    exp = assertions.check_times(
        claims, now=bastion.clock(), max_lifetime=MAX_LIFETIME, require_iat=True
    )
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise InvalidGrant("the ID-JAG has no jti")
    resource = _resource(bastion, claims, request)
    user = await _person(bastion, spec, claims)
    scope = await _scope(bastion, client, user, claims, request, resource)
    # Spent only once everything else holds: a request refused for its scope may be corrected.
    await assertions.use_once(bastion, REPLAY_PURPOSE, f"{spec.issuer} {jti}", exp)
    return await _issue(bastion, client, user, spec, scope, resource, jti, dpop_jkt)


async def _verified(bastion: AuthServer, assertion: str) -> tuple[ProviderSpec, jose.JsonObject]:
    """The trusting provider that issued the ID-JAG, and its claims once its signature
    verifies with the provider's keys (fetched again once for a new ``kid``)."""
    issuer = assertions.unverified_claims(assertion).get("iss")
    spec = next((p for p in providers(bastion) if p.issuer == issuer), None)
    if spec is None or bastion.federation is None:
        raise InvalidGrant(
            f"the ID-JAG's issuer {issuer!r} is not an identity provider trusted for ID-JAGs "
            "(an [[upstreams]] entry with accept_id_jag = true)"
        )
    provider = bastion.federation.clients[spec.name]
    try:
        try:
            return spec, assertions.verify(assertion, await provider.keys(), spec.issuer)
        except jose.UnknownKey:
            keys = await provider.keys(refresh=True)
        try:
            return spec, assertions.verify(assertion, keys, spec.issuer)
        except jose.UnknownKey:
            raise InvalidGrant(
                f"the ID-JAG is signed with a key {spec.issuer} does not publish"
            ) from None
    except FederationError as exc:
        log.warning("ID-JAG of %s: %s", spec.describe(), exc.detail)
        raise InvalidGrant(
            f"the keys of {spec.issuer} could not be fetched", detail=exc.detail
        ) from None


def _resource(bastion: AuthServer, claims: jose.JsonObject, request: JwtBearerRequest) -> str:
    """The ID-JAG's ``resource``: required, and a resource served here (RFC 8707, compared
    canonically); a ``resource`` parameter sent must name the same one."""
    named = claims.get("resource")
    if not isinstance(named, str) or not named:
        raise InvalidGrant("the ID-JAG has no resource claim")
    try:
        wanted = canonical(check_indicator(named))
    except ValueError:
        raise InvalidTarget(f"the ID-JAG's resource {named!r} is not an absolute URI") from None
    if wanted not in {r.uri for r in bastion.settings.resources}:
        raise InvalidTarget(f"the ID-JAG's resource {named} is not served by this server")
    if request.resource is not None and canonical(check_indicator(request.resource)) != wanted:
        raise InvalidTarget(f"resource {request.resource} is not the ID-JAG's resource {named}")
    return wanted


async def _person(bastion: AuthServer, spec: ProviderSpec, claims: jose.JsonObject) -> User:
    """The person the provider's subject is linked to; created now when the provider's allow
    rules admit the identity, as a first sign-in would be. Refused when disabled."""
    try:
        identity = map_claims(spec, claims, spec.issuer)
    except ValueError as exc:
        raise InvalidGrant(f"the ID-JAG does not say who the person is: {exc}") from None
    async with bastion.db.connect() as conn:
        link = await federation_rows.find_link(conn, identity.issuer, identity.subject)
        user = await user_rows.by_id(conn, link.user_id) if link is not None else None
    if user is None:
        return await _provision(bastion, spec, identity)
    if user.disabled:
        raise InvalidGrant(f"the account of {user.username} is disabled here")
    # A linked person's profile is left as the last sign-in set it: an ID-JAG rarely carries
    # the groups and names an ID token does, and must not take groups away.
    return user


async def _provision(bastion: AuthServer, spec: ProviderSpec, identity: UpstreamIdentity) -> User:
    """The account of a first-time person, if a sign-in would have created it."""
    refused = refusal(spec, identity)
    if refused is not None:
        raise InvalidGrant(
            f"{spec.label}'s allow rules do not admit this person here: {refused[0]}",
            detail=refused[1],
        )
    identity = replace(identity, groups=local_groups(spec, identity))
    try:
        return await link_account(bastion.db, identity, now=bastion.clock())
    except AccountNotAllowed as exc:
        raise InvalidGrant(exc.message, detail=exc.detail) from None


async def _scope(
    bastion: AuthServer,
    client: Client,
    user: User,
    claims: jose.JsonObject,
    request: JwtBearerRequest,
    resource: str,
) -> str:
    """The ID-JAG's scope (every scope of the resource when it has none), narrowed by the
    request's ``scope``; within the client's registered scope and the person's access."""
    granted = claims.get("scope")
    if granted is not None and not isinstance(granted, str):
        raise InvalidGrant("the ID-JAG's scope is not a space-separated string")
    upgrade = bastion.settings.upgrade_scopes
    offered = set(upgrade(scope_syntax.parse(granted), resource)) if granted else None
    if offered is None:
        offered = set(bastion.settings.scopes_of(resource))
    asked = known_scopes(bastion, scope_syntax.parse(request.scope), resource)
    if request.scope is not None and asked - offered:
        raise InvalidScope(f"scope {' '.join(sorted(asked - offered))} is beyond the ID-JAG's")
    wanted = (asked or offered) & set(bastion.settings.scopes_of(resource))
    if client.metadata.scope is not None:
        mine = set(upgrade(scope_syntax.parse(client.metadata.scope), resource))
        if request.scope is not None and wanted - mine:
            raise InvalidScope(
                f"client {client.client_id} may not obtain scope {' '.join(sorted(wanted - mine))}"
            )
        wanted &= mine
    if not wanted:
        raise InvalidScope(f"the ID-JAG grants no scope of {resource} this client may have")
    return await admitted_scopes(bastion, user, resource, wanted, asked=request.scope is not None)


async def _issue(
    bastion: AuthServer,
    client: Client,
    user: User,
    spec: ProviderSpec,
    scope: str,
    resource: str,
    jti: str,
    dpop_jkt: str | None,
) -> TokenResponse:
    """The token, in a new grant of the person that lives as long as it does."""
    now = bastion.clock()
    family_id = secrets.token_hex(16)
    issued, response = await mint_access(
        bastion,
        client=client,
        subject=user.id,
        scope=scope,
        resource=resource,
        grant_id=family_id,
        claims=identity_claims(bastion, user),
        dpop_jkt=dpop_jkt,
    )
    record = AuditRecord(
        Event.GRANT_CREATED,
        auth_audit.millis(now),
        subject=user.id,
        client_id=client.client_id,
        method="id_jag",
        provider=spec.name,
        grant_id=family_id,
        detail={"scope": scope, "resource": resource, "assertion_jti": jti},
    )
    async with bastion.db.transaction() as conn:
        await grants.create_family(
            conn,
            FamilyRecord(
                id=family_id,
                client_id=client.client_id,
                subject=user.id,
                scope=scope,
                resource=resource,
                created_at=now,
                expires_at=issued.expires_at,
            ),
        )
        await grants.record_access_token(
            conn, family_id, issued.jti, issued.expires_at, audit_binding(record, dpop_jkt)
        )
    return response


__all__ = ["MAX_LIFETIME", "REPLAY_PURPOSE", "providers", "redeem"]
