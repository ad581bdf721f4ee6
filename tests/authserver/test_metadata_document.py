"""The metadata document byte for byte (RFC 8414 §2): the served JSON keeps its members, their
order and their values, for settings that change what it says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bastion.config import CimdSettings, RegistrationSettings, Settings
from tests.support.asgi import running

DEFAULT = (
    '{"issuer":"http://localhost","authorization_endpoint":"http://localhost/authorize",'
    '"token_endpoint":"http://localhost/token","jwks_uri":"http://localhost/jwks",'
    '"scopes_supported":["mcp:prompts","mcp:resources","mcp:tools"],'
    '"response_types_supported":["code"],"response_modes_supported":["query"],'
    '"grant_types_supported":["authorization_code","refresh_token","client_credentials"],'
    '"token_endpoint_auth_methods_supported":["none","client_secret_basic",'
    '"client_secret_post","private_key_jwt"],'
    '"token_endpoint_auth_signing_alg_values_supported":["ES256","ES384","ES512","Ed25519","Ed448",'
    '"EdDSA","RS256","RS384","RS512","PS256"],"code_challenge_methods_supported":["S256"],'
    '"authorization_response_iss_parameter_supported":true,'
    '"client_id_metadata_document_supported":true,'
    '"introspection_endpoint":"http://localhost/introspect",'
    '"introspection_endpoint_auth_methods_supported":["client_secret_basic",'
    '"client_secret_post","private_key_jwt"],"revocation_endpoint":"http://localhost/revoke",'
    '"revocation_endpoint_auth_methods_supported":["none","client_secret_basic",'
    '"client_secret_post","private_key_jwt"],"registration_endpoint":"http://localhost/register",'
    '"dpop_signing_alg_values_supported":["ES256","EdDSA","RS256","PS256"]}'
)
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "default": ({}, DEFAULT),
    "issuer-with-path": (
        {"issuer": "http://localhost/tenant1"},
        DEFAULT.replace('"http://localhost', '"http://localhost/tenant1'),
    ),
    "no-registration-no-cimd": (
        {
            "registration": RegistrationSettings(enabled=False),
            "cimd": CimdSettings(enabled=False),
        },
        DEFAULT.replace(
            '"client_id_metadata_document_supported":true',
            '"client_id_metadata_document_supported":false',
        ).replace(',"registration_endpoint":"http://localhost/register"', ""),
    ),
    "configured-scopes": (
        {"scopes": ["b:write", "a:read"]},
        DEFAULT.replace(
            '["mcp:prompts","mcp:resources","mcp:tools"]', '["a:read","b:write","mcp:tools"]'
        ),
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
async def test_a02_metadata_document_is_served_byte_for_byte(
    make_settings: Callable[..., Settings], variant: str
) -> None:
    """The JSON body at the RFC 8414 §3.1 URL is exactly the expected bytes."""
    overrides, expected = VARIANTS[variant]
    settings = make_settings(**overrides)
    async with running(settings) as client:
        url = settings.issuer.rstrip("/")
        path = url.removeprefix("http://localhost")
        response = await client.get(
            f"http://localhost/.well-known/oauth-authorization-server{path}"
        )
        assert response.status_code == 200
        assert response.text == expected
