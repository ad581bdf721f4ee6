"""The token endpoint (OAuth 2.1 §3.2): authenticate the client, dispatch on grant_type.

The order of the checks is part of the protocol: the grant_type first (an unknown one is
answered without looking at the client), then the client (OAuth 2.1 §3.2.1: invalid_client
before anything about the grant's parameters), then whether it is registered for the grant,
and only then the grant's own parameters. Token exchange (RFC 8693) is not a grant clients
register for: the ``[[token_exchange]]`` rules of the configuration say who may use it (without
any, it is an unsupported grant type), and the grant checks them.

A DPoP proof (RFC 9449 §5) is checked after the client and before the grant, for every grant:
its key's thumbprint goes to the grant, which binds the tokens to it (``cnf.jkt``,
``token_type`` DPoP); an answer to a DPoP request that is not bound is never sent.

POST /token is answered by :class:`TokenEndpoint`, a plain ASGI layer inside the app's request
id, metrics and last-resort layers, without Starlette's router and exception layers (the route
is still declared, for the 405 of other methods and for the route label of logs and metrics).
"""

from __future__ import annotations

from typing import assert_never

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.authserver.audit import audited
from bastion.authserver.client_auth import authenticate
from bastion.authserver.context import AuthServer, server
from bastion.authserver.errors import json_error
from bastion.authserver.grants import (
    authorization_code,
    client_credentials,
    jwt_bearer,
    refresh_token,
    token_exchange,
)
from bastion.authserver.http import NO_STORE, json_bytes, read_form
from bastion.oauth import token_request
from bastion.oauth.errors import (
    OAuthError,
    ServerError,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from bastion.oauth.token_request import (
    JWT_BEARER,
    TOKEN_EXCHANGE,
    AuthorizationCodeRequest,
    ClientCredentialsRequest,
    JwtBearerRequest,
    RefreshTokenRequest,
    TokenExchangeRequest,
    TokenRequest,
)
from bastion.oauth.token_response import TokenResponse
from bastion.ops import metrics
from bastion.store.clients import Client

# The success answer's headers besides Content-Length (RFC 6749 §5.1: never cached), as
# json_response sends them.
_ANSWER_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"content-type", b"application/json"),
]


async def token(request: Request) -> Response:
    """POST /token as a Starlette endpoint (the route's; :class:`TokenEndpoint` answers first)."""
    body, headers = await answer(request)
    return Response(body, media_type="application/json", headers={**NO_STORE, **headers})


@audited
async def answer(request: Request) -> tuple[bytes, dict[str, str]]:
    """POST /token: the success answer's JSON body and its headers beyond the no-store ones;
    raise :class:`~bastion.oauth.errors.OAuthError` for the error answer."""
    bastion = server(request)
    params = await read_form(request, bastion.settings.max_body_bytes)
    grant_type = token_request.grant_type(params)
    if grant_type == TOKEN_EXCHANGE and not bastion.settings.token_exchange:
        # Refused by default, as unknown (RFC 6749 §5.2): the metadata does not list it either.
        raise UnsupportedGrantType(
            f"grant_type {TOKEN_EXCHANGE} is not enabled here: no [[token_exchange]] rule"
        )
    client = await (
        jwt_bearer.client_of(bastion, request, params)  # a workload's token authenticates too
        if grant_type == JWT_BEARER
        else authenticate(bastion, request, params)
    )
    if grant_type != TOKEN_EXCHANGE and grant_type not in client.metadata.grant_types:
        raise UnauthorizedClient(f"this client is not registered for the {grant_type} grant")
    parsed = token_request.parse(grant_type, params)
    proof = await bastion.dpop.check(request, client, bastion.clock())
    jkt = None if proof is None else proof.jkt
    issued = await grant(bastion, client, parsed, dpop_jkt=jkt)
    if jkt is not None and issued.token_type != "DPoP":
        raise ServerError(
            "the token could not be bound to the DPoP key",
            detail=f"grant {grant_type} minted an unbound token for a DPoP request",
        )
    metrics.token_issued(grant_type, public=client.is_public, origin=client.origin)
    return json_bytes(issued.to_json()), bastion.dpop.response_headers(proof, bastion.clock())


async def grant(
    bastion: AuthServer, client: Client, request: TokenRequest, *, dpop_jkt: str | None
) -> TokenResponse:
    """Run the grant ``request`` asks for, for an authenticated ``client``; ``dpop_jkt`` is the
    key thumbprint of the request's DPoP proof, which the tokens are bound to."""
    match request:
        case AuthorizationCodeRequest():
            return await authorization_code.exchange(bastion, client, request, dpop_jkt=dpop_jkt)
        case RefreshTokenRequest():
            return await refresh_token.refresh(bastion, client, request, dpop_jkt=dpop_jkt)
        case ClientCredentialsRequest():
            return await client_credentials.issue(bastion, client, request, dpop_jkt=dpop_jkt)
        case JwtBearerRequest():
            return await jwt_bearer.issue(bastion, client, request, dpop_jkt=dpop_jkt)
        case TokenExchangeRequest():
            return await token_exchange.exchange(bastion, client, request, dpop_jkt=dpop_jkt)
        case _:
            assert_never(request)


class TokenEndpoint:
    """Answer POST ``prefix``/token (RFC 6749 §3.2) before Starlette's router: the same
    :func:`token` and the same error answers (:func:`~bastion.authserver.errors.json_error`),
    with the scope the router would have made (``route``, and ``root_path`` under a mount) so
    that logs and metrics name the route as before. Other methods and paths pass through."""

    def __init__(self, app: ASGIApp, *, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix
        self.path = f"{prefix}/token"
        self.route = Route("/token", token, methods=["POST"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or route_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        scope["route"] = self.route
        scope["endpoint"] = token
        scope["path_params"] = {}
        if self.prefix:
            scope["app_root_path"] = scope.get("app_root_path", root_path)
            scope["root_path"] = root_path + self.prefix
        request = Request(scope, receive, send)
        try:
            body, extra = await answer(request)
        except OAuthError as exc:
            await json_error(exc, request)(scope, receive, send)
            return
        headers = [*_ANSWER_HEADERS, (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The request's path below the ``root_path`` it was mounted under, as Starlette's router
    matches it (a ``root_path`` that is not a whole-segment prefix of the path is ignored)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


__all__ = ["TokenEndpoint", "answer", "grant", "route_path", "token"]
