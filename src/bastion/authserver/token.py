"""The token endpoint (OAuth 2.1 §3.2): authenticate the client, dispatch on grant_type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bastion.authserver.client_auth import authenticate
from bastion.authserver.context import AuthServer, server
from bastion.authserver.errors import json_error
from bastion.authserver.grants import authorization_code, client_credentials, refresh_token
from bastion.authserver.http import json_response, read_form, single
from bastion.oauth.errors import (
    InvalidRequest,
    OAuthError,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from bastion.store.clients import Client

Grant = Callable[[AuthServer, Client, dict[str, list[str]]], Awaitable[dict[str, Any]]]

GRANTS: dict[str, Grant] = {
    "authorization_code": authorization_code.exchange,
    "refresh_token": refresh_token.refresh,
    "client_credentials": client_credentials.issue,
}


async def token(request: Request) -> Response:
    """POST /token."""
    bastion = server(request)
    try:
        params = await read_form(request, bastion.settings.max_body_bytes)
        grant_type = single(params, "grant_type")
        if grant_type is None:
            raise InvalidRequest("grant_type is required")
        grant = GRANTS.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType(
                f"grant_type {grant_type} is not supported; use one of {', '.join(GRANTS)}"
            )
        client = await authenticate(bastion, request, params)
        if grant_type not in client.metadata.grant_types:
            raise UnauthorizedClient(f"this client is not registered for the {grant_type} grant")
        body = await grant(bastion, client, params)
    except OAuthError as exc:
        return json_error(exc, request)
    return json_response(body)


__all__ = ["GRANTS", "token"]
