"""Authorization server metadata (RFC 8414 §2, §3; OpenID Connect Discovery 1.0 §3).

Served at the RFC 8414 path-inserted URL, the OIDC path-inserted URL MCP clients try, and the OIDC
path-appended URL. It advertises exactly what is implemented.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.authserver.client_auth import ASSERTION_ALGS
from bastion.authserver.context import AuthServer, server
from bastion.oauth.client_metadata import AUTH_METHODS
from bastion.oauth.server_metadata import ServerMetadata
from bastion.oauth.token_request import GRANT_TYPES, JWT_BEARER, TOKEN_EXCHANGE

CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


def document(bastion: AuthServer) -> ServerMetadata:
    """The metadata of this authorization server."""
    s = bastion.settings
    return ServerMetadata(
        issuer=bastion.issuer,
        authorization_endpoint=bastion.url("/authorize"),
        token_endpoint=bastion.url("/token"),
        jwks_uri=bastion.url("/jwks"),
        scopes_supported=tuple(s.all_scopes),
        response_types_supported=("code",),
        response_modes_supported=("query",),
        # Token exchange and jwt-bearer are advertised only when configured (refused otherwise).
        grant_types_supported=(
            *(g for g in GRANT_TYPES if g != JWT_BEARER or s.accepts_jwt_bearer),
            *((TOKEN_EXCHANGE,) if s.token_exchange else ()),
        ),
        token_endpoint_auth_methods_supported=AUTH_METHODS,
        token_endpoint_auth_signing_alg_values_supported=tuple(ASSERTION_ALGS),
        code_challenge_methods_supported=("S256",),
        authorization_response_iss_parameter_supported=True,
        client_id_metadata_document_supported=s.cimd.enabled,
        introspection_endpoint=bastion.url("/introspect"),
        introspection_endpoint_auth_methods_supported=CLIENT_AUTH_METHODS,
        revocation_endpoint=bastion.url("/revoke"),
        revocation_endpoint_auth_methods_supported=AUTH_METHODS,
        registration_endpoint=bastion.url("/register") if s.registration.enabled else None,
        dpop_signing_alg_values_supported=tuple(s.dpop.algorithms) if s.dpop.enabled else None,
    )


async def metadata_endpoint(request: Request) -> Response:
    """GET one of the well-known metadata URLs."""
    return JSONResponse(
        document(server(request)).to_json(),
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


async def jwks_endpoint(request: Request) -> Response:
    """GET the JSON Web Key Set of the access-token signing keys (RFC 7517 §5)."""
    keys = await server(request).keys.jwks()
    return JSONResponse(
        keys,
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        media_type="application/jwk-set+json",
    )


__all__ = ["document", "jwks_endpoint", "metadata_endpoint"]
