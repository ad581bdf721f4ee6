"""Authorization server metadata (RFC 8414 §2, §3; OpenID Connect Discovery 1.0 §3).

Served at the RFC 8414 path-inserted URL, the OIDC path-inserted URL MCP clients try, and the OIDC
path-appended URL. It advertises exactly what is implemented.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.authserver.client_auth import ASSERTION_ALGS
from bastion.authserver.context import AuthServer, server

AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


def document(bastion: AuthServer) -> dict[str, Any]:
    """The metadata document of this authorization server."""
    s = bastion.settings
    doc: dict[str, Any] = {
        "issuer": bastion.issuer,
        "authorization_endpoint": bastion.url("/authorize"),
        "token_endpoint": bastion.url("/token"),
        "jwks_uri": bastion.url("/jwks"),
        "scopes_supported": s.all_scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": s.cimd.enabled,
        "introspection_endpoint": bastion.url("/introspect"),
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint": bastion.url("/revoke"),
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
    }
    if s.registration.enabled:
        doc["registration_endpoint"] = bastion.url("/register")
    return doc


async def metadata_endpoint(request: Request) -> Response:
    """GET one of the well-known metadata URLs."""
    return JSONResponse(
        document(server(request)),
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
