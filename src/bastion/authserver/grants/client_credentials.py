"""The client_credentials grant (OAuth 2.1 §4.2) for confidential clients acting for themselves.

Machine access is never self-service: only a client an operator made (``bastion clients add``,
or dynamic registration with an initial access token that allows machine clients) may use this
grant, and only for the resources and scopes an access rule ``client:<id>`` gives it, whatever
its own metadata says (:mod:`bastion.access.rules`).

The token is a JWT and nothing is stored: with the client's registration and the rules cached
(:class:`~bastion.authserver.clients.ClientDirectory`, :class:`~bastion.access.AccessPolicy`) a
request touches no database at all, except the first one of a dynamically registered client,
which records that it was used.
"""

from __future__ import annotations

import shlex

from bastion.authserver.authorize import known_scopes, select_resource
from bastion.authserver.context import AuthServer
from bastion.authserver.issuance import mint_access
from bastion.oauth import scopes as scope_syntax
from bastion.oauth.errors import InvalidScope, InvalidTarget, UnauthorizedClient
from bastion.oauth.token_request import ClientCredentialsRequest
from bastion.oauth.token_response import TokenResponse
from bastion.store import clients as client_rows
from bastion.store.clients import Client

SELF_SERVICE_REFUSED = (
    "client {client_id} registered itself and may not act without a person: machine clients "
    "are made by an operator (bastion clients add)"
)


async def issue(
    bastion: AuthServer,
    client: Client,
    request: ClientCredentialsRequest,
    *,
    dpop_jkt: str | None,
) -> TokenResponse:
    """Issue an access token whose subject is the client itself, bound to the DPoP key
    ``dpop_jkt`` when the request had a proof (RFC 9449 §5)."""
    if client.is_public:
        raise UnauthorizedClient("client_credentials is only for confidential clients")
    if not client.may_act_alone:
        raise UnauthorizedClient(SELF_SERVICE_REFUSED.format(client_id=client.client_id))
    if "client_credentials" not in client.metadata.grant_types:
        raise UnauthorizedClient(
            f"client {client.client_id} is not registered for the client_credentials grant"
        )
    requested = scope_syntax.parse(request.scope)
    known_scopes(bastion, requested, None)
    resource = select_resource(bastion, request.resource)
    asked = sorted(known_scopes(bastion, requested, resource))
    decision = await bastion.access.for_machine(
        client.client_id, resource, asked, bastion.settings.scopes_of(resource)
    )
    if not decision.rules:
        name = next((r.name for r in bastion.settings.resources if r.uri == resource), None)
        raise InvalidTarget(
            f"client {client.client_id} may not obtain tokens for {resource}; an operator can "
            f"allow it with `bastion access allow {shlex.quote(name or resource)} "
            f"client:{client.client_id}`"
        )
    if not decision.allowed:
        raise InvalidScope(
            f"client {client.client_id} may not obtain scope "
            f"{' '.join(sorted(decision.withheld))} for {resource}"
        )
    _, response = await mint_access(
        bastion,
        client=client,
        subject=client.client_id,
        scope=scope_syntax.join(decision.scopes),
        resource=resource,
        grant_id=client.grant_id,
        dpop_jkt=dpop_jkt,
    )
    if client.origin == "dynamic" and client.first_used_at is None:
        # Once per client: unused registrations are deleted (registration.unused_client_ttl).
        async with bastion.db.transaction() as conn:
            await client_rows.mark_used(conn, client.client_id, bastion.clock())
        bastion.clients.invalidate(client.client_id)
    return response


__all__ = ["SELF_SERVICE_REFUSED", "issue"]
