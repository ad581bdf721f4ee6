"""The client_credentials grant (OAuth 2.1 §4.2) for confidential clients acting for themselves.

It touches the database only to look up the client: the token is a JWT, nothing is stored.
"""

from __future__ import annotations

from typing import Any

from bastion.authserver.authorize import select_resource, select_scope
from bastion.authserver.context import AuthServer
from bastion.authserver.http import single
from bastion.authserver.issuance import mint_access
from bastion.oauth.errors import UnauthorizedClient
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
    return body


__all__ = ["issue"]
