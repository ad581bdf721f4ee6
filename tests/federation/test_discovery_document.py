"""The upstream provider's discovery document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2) as
federation reads it: the same member rules as bastion's client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.config import IdentityProviderSettings
from bastion.identity.errors import UpstreamInvalidResponse
from bastion.identity.providers import resolve
from bastion.identity.upstream_client import Endpoints, ProviderClient

ISSUER = "https://idp.example.com"
DOCUMENT: dict[str, Any] = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "jwks_uri": f"{ISSUER}/jwks",
    "response_types_supported": ["code"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "code_challenge_methods_supported": ["S256"],
}


async def discover(**members: Any) -> Endpoints:
    document = {**DOCUMENT, **members}

    async def serve(request: Request) -> Response:
        return JSONResponse(document)

    app = Starlette(routes=[Route("/.well-known/openid-configuration", serve)])
    spec = resolve(
        IdentityProviderSettings(
            name="idp", kind="oidc", issuer=ISSUER, client_id="bastion", client_secret="s"
        )
    )
    client = ProviderClient(spec, transport=httpx.ASGITransport(app))
    try:
        return await client.discover()
    finally:
        await client.aclose()


async def test_a_well_formed_document_gives_the_endpoints() -> None:
    endpoints = await discover(scopes_supported=["openid", "email"])
    assert endpoints.token_endpoint == f"{ISSUER}/token"
    assert endpoints.code_challenge_methods == ("S256",)
    assert endpoints.scopes_supported == ("openid", "email")


@pytest.mark.parametrize(
    ("member", "value", "detail"),
    [
        ("code_challenge_methods_supported", "S256", "is not a list of strings"),
        ("response_types_supported", "code", "is not a list of strings"),
        ("id_token_signing_alg_values_supported", ["RS256", 1], "is not a list of strings"),
        ("scopes_supported", ["openid", 2], "is not a list of strings"),
        ("token_endpoint", "https://idp.example.com/token#x", "is not a URL"),
        ("userinfo_endpoint", 5, "is not a URL"),
    ],
)
async def test_rfc8414_s2_malformed_members_are_refused(
    member: str, value: Any, detail: str
) -> None:
    """RFC 8414 §2 and Discovery 1.0 §3: the ``*_supported`` members are JSON arrays of
    strings and endpoints URLs without a fragment. Federation used to skip a malformed array
    (a string "S256" read as no PKCE information) or turn its items into strings; bastion's
    client refused them. Both now refuse the document."""
    with pytest.raises(UpstreamInvalidResponse) as caught:
        await discover(**{member: value})
    assert f"{member} {detail}" in caught.value.detail
