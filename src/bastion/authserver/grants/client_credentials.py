"""The client_credentials grant (OAuth 2.1 §4.2) for confidential clients acting for themselves.

The token is a JWT and nothing is stored: with the client's registration cached
(:class:`~bastion.authserver.clients.ClientDirectory`) a request touches no database at all, except
the first one of a dynamically registered client, which records that it was used.
"""

from __future__ import annotations

from typing import Any

from bastion.authserver.authorize import select_resource, select_scope
from bastion.authserver.context import AuthServer
from bastion.authserver.http import single
from bastion.authserver.issuance import mint_access
from bastion.oauth.errors import UnauthorizedClient
from bastion.store import clients as client_rows
from bastion.store.clients import Client


async def issue(
    bastion: AuthServer, client: Client, params: dict[str, list[str]]
) -> dict[str, Any]:
    """Issue an access token whose subject is the client itself."""
    if client.is_public:
        raise UnauthorizedClient("client_credentials is only for confidential clients")
    if "client_credentials" not in client.metadata.grant_types:
        raise UnauthorizedClient(
            f"client {client.client_id} is not registered for the client_credentials grant"
        )
    scope = select_scope(bastion, client, single(params, "scope"))
    resource = select_resource(bastion, params.get("resource", []))
    _, body = await mint_access(
        bastion, client=client, subject=client.client_id, scope=scope, resource=resource
    )
    if client.origin == "dynamic" and client.first_used_at is None:
        # Once per client: unused registrations are deleted (registration.unused_client_ttl).
        async with bastion.db.transaction() as conn:
            await client_rows.mark_used(conn, client.client_id, bastion.clock())
        bastion.clients.invalidate(client.client_id)
    return body


__all__ = ["issue"]
