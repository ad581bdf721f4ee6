"""Authorization server metadata (RFC 8414 §2, §3; OpenID Connect Discovery 1.0 §4) and the JWKS.

Checklist A02 (discovery with ``code_challenge_methods_supported``), A03 (CIMD advertised), A05
(``authorization_response_iss_parameter_supported``). The well-known documents are asked for at the
three URLs MCP clients try, for an issuer without and with a path.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest

from bastion.config import ResourceSettings, Settings
from bastion.oauth import pkce
from tests.authserver.browser_steps import authorization_params, browse, form_action
from tests.support.asgi import running
from tests.support.flow import REDIRECT_URI, add_user, register

ISSUER = "http://localhost"
TENANT = "http://localhost/tenant1"
WELL_KNOWN = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
]
TENANT_WELL_KNOWN = [
    "http://localhost/.well-known/oauth-authorization-server/tenant1",
    "http://localhost/.well-known/openid-configuration/tenant1",
    "http://localhost/tenant1/.well-known/openid-configuration",
]
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


async def metadata(client: httpx.AsyncClient, url: str) -> dict[str, object]:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = response.json()
    return body


async def test_a02_metadata_is_served_at_the_rfc8414_and_oidc_urls(
    app_client: httpx.AsyncClient,
) -> None:
    """RFC 8414 §3.1 and OpenID Connect Discovery 1.0 §4: for an issuer without a path the
    document is at both root well-known URLs, identical."""
    first, second = [await metadata(app_client, path) for path in WELL_KNOWN]
    assert first == second
    assert first["issuer"] == ISSUER


async def test_a02_issuer_with_path_serves_metadata_path_inserted_and_path_appended(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 8414 §3.1: path-inserted; OIDC Discovery §4: path-appended; MCP clients also try the
    OIDC path-inserted form. The root documents belong to another issuer and are absent."""
    settings = make_settings(issuer=TENANT)
    async with running(settings) as client:
        documents = [await metadata(client, url) for url in TENANT_WELL_KNOWN]
        assert documents[0] == documents[1] == documents[2]
        assert documents[0]["issuer"] == TENANT
        for root in WELL_KNOWN:
            assert (await client.get(f"http://localhost{root}")).status_code == 404


async def test_a02_issuer_with_path_puts_every_endpoint_under_the_path(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 8414 §2: the endpoints of an issuer with a path live under that path, and answer
    there (and not at the root)."""
    settings = make_settings(issuer=TENANT)
    async with running(settings) as client:
        doc = await metadata(client, TENANT_WELL_KNOWN[0])
        assert doc["authorization_endpoint"] == f"{TENANT}/authorize"
        assert doc["token_endpoint"] == f"{TENANT}/token"
        assert doc["jwks_uri"] == f"{TENANT}/jwks"
        assert doc["registration_endpoint"] == f"{TENANT}/register"
        assert doc["introspection_endpoint"] == f"{TENANT}/introspect"
        assert doc["revocation_endpoint"] == f"{TENANT}/revoke"
        assert (await client.get(f"{TENANT}/jwks")).status_code == 200
        assert (await client.get("http://localhost/jwks")).status_code == 404
        assert (await client.post("http://localhost/token")).status_code == 404


async def test_a01_code_flow_works_under_an_issuer_path_and_forms_post_under_it(
    make_settings: Callable[..., Settings],
) -> None:
    """OAuth 2.1 §4.1 under an issuer with a path: the log-in and consent forms post to
    /tenant1/interaction/…, the redirect's ``iss`` is the issuer with its path (RFC 9207 §2), and
    the code is redeemed at /tenant1/token."""
    settings = make_settings(issuer=TENANT)
    async with running(settings) as client:
        await add_user(settings)
        reg = await register(client)
        verifier = pkce.new_verifier()
        query = urlencode(authorization_params(reg["client_id"], verifier))
        done = await browse(client, f"{TENANT}/authorize?{query}")
        actions = [form_action(page.text) for page in done.pages]
        assert len(actions) == 2
        assert actions[0].startswith("/tenant1/interaction/")
        assert actions[0].endswith("/login")
        assert actions[1].startswith("/tenant1/interaction/")
        assert actions[1].endswith("/consent")
        for page in done.pages:
            assert 'href="/tenant1/static/style.css"' in page.text
        assert done.params["iss"] == TENANT
        assert done.params["state"] == "xyz"
        response = await client.post(
            f"{TENANT}/token",
            data={
                "grant_type": "authorization_code",
                "code": done.params["code"],
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                "client_id": reg["client_id"],
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("configured", "expected", "url"),
    [
        ("http://localhost/", ISSUER, "http://localhost/.well-known/oauth-authorization-server"),
        (
            "http://localhost/tenant1/",
            TENANT,
            "http://localhost/.well-known/oauth-authorization-server/tenant1",
        ),
        (TENANT, TENANT, "http://localhost/.well-known/oauth-authorization-server/tenant1"),
    ],
)
async def test_c05_metadata_issuer_is_string_identical_to_the_configured_issuer(
    make_settings: Callable[..., Settings], configured: str, expected: str, url: str
) -> None:
    """RFC 8414 §3.3: the ``issuer`` value MUST be identical to the issuer the document was
    looked up for. A configured trailing slash is removed once, so every place uses one string."""
    settings = make_settings(issuer=configured)
    assert settings.issuer == expected
    async with running(settings) as client:
        doc = await metadata(client, url)
    assert doc["issuer"] == expected
    assert doc["token_endpoint"] == f"{expected}/token"


async def test_a02_a05_a03_metadata_advertises_exactly_what_is_implemented(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 8414 §2; MCP authorization-server-discovery: PKCE S256 only, code only, the grants
    and client authentication methods that exist, ``iss`` in responses (RFC 9207 §3), CIMD and
    every endpoint. scopes_supported lists the resources' scopes and never offline_access."""
    settings = make_settings(
        resources=[
            ResourceSettings(
                uri="http://localhost:9001/mcp", name="demo", scopes=["mcp:tools", "weather:read"]
            )
        ]
    )
    async with running(settings) as client:
        doc = await metadata(client, WELL_KNOWN[0])
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert doc["token_endpoint"] == f"{ISSUER}/token"
    assert doc["jwks_uri"] == f"{ISSUER}/jwks"
    assert doc["registration_endpoint"] == f"{ISSUER}/register"
    assert doc["introspection_endpoint"] == f"{ISSUER}/introspect"
    assert doc["revocation_endpoint"] == f"{ISSUER}/revoke"
    assert doc["response_types_supported"] == ["code"]
    assert doc["response_modes_supported"] == ["query"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
    ]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    assert doc["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["client_id_metadata_document_supported"] is True
    scopes = doc["scopes_supported"]
    assert isinstance(scopes, list)
    assert {"mcp:tools", "weather:read"} <= set(scopes)
    assert "offline_access" not in scopes


async def test_a04_registration_endpoint_is_absent_when_registration_is_disabled(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 8414 §2: registration_endpoint is advertised only when there is one; with
    registration.enabled false there is neither the field nor the endpoint."""
    settings = make_settings(registration={"enabled": False})
    async with running(settings) as client:
        doc = await metadata(client, WELL_KNOWN[0])
        assert "registration_endpoint" not in doc
        response = await client.post("/register", json={"redirect_uris": [REDIRECT_URI]})
        assert response.status_code == 404


async def test_a03_cimd_support_is_advertised_false_when_disabled(
    make_settings: Callable[..., Settings],
) -> None:
    """draft-ietf-oauth-client-id-metadata-document §5: the flag reflects the setting."""
    settings = make_settings(cimd={"enabled": False})
    async with running(settings) as client:
        doc = await metadata(client, WELL_KNOWN[0])
    assert doc["client_id_metadata_document_supported"] is False


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
async def test_jwks_serves_public_signing_keys_only(
    make_settings: Callable[..., Settings], alg: str
) -> None:
    """RFC 7517 §5, RFC 8414 §2 (jwks_uri): the key set holds public keys with kid, alg and
    use=sig, and no private member (d, p, q, dp, dq, qi, oth, k)."""
    settings = make_settings(tokens={"signing_alg": alg})
    async with running(settings) as client:
        doc = await metadata(client, WELL_KNOWN[0])
        response = await client.get(str(doc["jwks_uri"]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwk-set+json"
    keys = response.json()["keys"]
    assert keys
    for key in keys:
        assert not PRIVATE_JWK_MEMBERS & set(key), key
        assert key["kid"]
        assert key["alg"] == alg
        assert key["use"] == "sig"
