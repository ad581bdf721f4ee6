"""bastion.resource with a standards-following third-party authorization server.

The AS is node-oidc-provider (npm ``oidc-provider``, OpenID Certified), run by
tests/support/oidc_provider.py: no bastion code issues these tokens. What is checked is that the
resource side relies only on the standards: RFC 9068 JWT access tokens verified with the JWKS
the AS's RFC 8414 metadata names, the RFC 8707 audience (checklist R04), RFC 9728 metadata
pointing clients at the AS (R01-R03), RFC 6750 challenges (R06, R07), and RFC 7662
introspection of the AS's opaque tokens.

Needs Node 22 (BASTION_NODE); skipped without it unless BASTION_REQUIRE_NODE=1.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bastion.oauth.errors import InvalidToken, TemporarilyUnavailable
from bastion.resource import (
    IntrospectionVerifier,
    JwtVerifier,
    ResourceServerMiddleware,
    ScopePolicy,
    TokenVerifier,
)
from tests.resource.apps import PRM_URL, RESOURCE, echo_app
from tests.support.oidc_provider import (
    OidcProvider,
    confidential_client,
    log_in,
    oidc_provider,
    public_client,
    resource,
)

OTHER = "http://localhost/other"  # another resource of the same AS
RS256_RESOURCE = "http://localhost/rs256"
OPAQUE = "http://localhost/opaque"  # tokens for it are opaque: introspection only
OPAQUE_OTHER = "http://localhost/opaque-other"
SCOPES = "mcp:tools files:write"
POLICY = ScopePolicy(default=["mcp:tools"], tools={"delete_file": ["files:write"]})


@pytest.fixture
async def op() -> AsyncIterator[OidcProvider]:
    """node-oidc-provider serving five resources, with a service client allowed every scope, a
    ``limited`` one allowed only mcp:tools, the MCP server's own client for introspection, and
    a public client for user log-in."""
    async with oidc_provider(
        resources=[
            resource(RESOURCE, SCOPES),
            resource(OTHER, SCOPES),
            resource(RS256_RESOURCE, SCOPES, alg="RS256"),
            resource(OPAQUE, SCOPES, format="opaque"),
            resource(OPAQUE_OTHER, SCOPES, format="opaque"),
        ],
        clients=[
            confidential_client("service"),
            confidential_client("limited", resource_scope="mcp:tools"),
            confidential_client("mcp-server"),
            public_client("app"),
        ],
    ) as provider:
        yield provider


async def access_token(op: OidcProvider, resource: str, scope: str = "mcp:tools", **kw: Any) -> str:
    """A client_credentials access token from the provider (OAuth 2.1 §4.2, RFC 8707)."""
    response = await op.client_credentials(resource=resource, scope=scope, **kw)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token: str = response.json()["access_token"]
    return token


def jwt_verifier(op: OidcProvider, audience: str = RESOURCE) -> JwtVerifier:
    # jwks_uri as the AS's own metadata (RFC 8414 §2) names it.
    return JwtVerifier(issuer=op.issuer, audience=audience, jwks_uri=op.jwks_uri)


def introspector(op: OidcProvider, audience: str = OPAQUE) -> IntrospectionVerifier:
    server = op.client("mcp-server")
    return IntrospectionVerifier(
        introspection_endpoint=op.introspection_endpoint,
        client_id=server["client_id"],
        client_secret=server["client_secret"],
        audience=audience,
        issuer=op.issuer,
    )


def protected(verifier: TokenVerifier, op: OidcProvider) -> httpx.AsyncClient:
    """The echo app behind the middleware, naming the provider as its authorization server."""
    app = ResourceServerMiddleware(
        echo_app(),
        resource=RESOURCE,
        verifier=verifier,
        authorization_servers=[op.issuer],
        scopes_supported=SCOPES.split(),
        policy=POLICY,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


def segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


def call(tool: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}


# -- JWT access tokens (RFC 9068) ------------------------------------------------------------------


async def test_r04_client_credentials_jwt_of_oidc_provider_verifies_to_its_principal(
    op: OidcProvider,
) -> None:
    """RFC 9068 §4: typ at+jwt, signature by the key the AS's JWKS names, iss, aud = the
    resource (RFC 8707 §2), exp. For client_credentials the subject is the client (§2.2)."""
    token = await access_token(op, RESOURCE, SCOPES)
    assert segment(token, 0) == {"alg": "ES256", "typ": "at+jwt", "kid": "es256-1"}
    claims = segment(token, 1)
    async with jwt_verifier(op) as verifier:
        principal = await verifier.verify(token)
    assert principal.subject == "service"
    assert principal.client_id == "service"
    assert principal.scopes == frozenset({"mcp:tools", "files:write"})
    assert principal.token_id == claims["jti"]
    assert principal.expires_at == claims["exp"]
    assert principal.claims["aud"] == RESOURCE
    assert principal.claims["iss"] == op.issuer


async def test_r04_rs256_jwt_of_oidc_provider_verifies_with_the_key_its_kid_names(
    op: OidcProvider,
) -> None:
    """RFC 7515 §4.1.4: the kid picks the RSA key of a JWKS that also holds an EC key."""
    token = await access_token(op, RS256_RESOURCE)
    assert segment(token, 0) == {"alg": "RS256", "typ": "at+jwt", "kid": "rs256-1"}
    async with jwt_verifier(op, RS256_RESOURCE) as verifier:
        principal = await verifier.verify(token)
    assert principal.subject == "service"
    assert principal.scopes == frozenset({"mcp:tools"})


async def test_r04_jwt_of_oidc_provider_for_another_resource_is_refused(op: OidcProvider) -> None:
    """MCP "Token Handling", RFC 8707 §2: a token of the same AS for another resource is not
    accepted here, neither by the verifier nor, with 401 invalid_token, by the middleware."""
    token = await access_token(op, OTHER)
    async with jwt_verifier(op) as verifier:
        with pytest.raises(InvalidToken) as caught:
            await verifier.verify(token)
        assert caught.value.description == (f"wrong audience: expected '{RESOURCE}', got '{OTHER}'")
        async with protected(verifier, op) as client:
            response = await client.get("/mcp", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith(
        f'Bearer resource_metadata="{PRM_URL}", scope="mcp:tools", error="invalid_token"'
    )


async def test_r04_user_token_from_oidc_provider_log_in_verifies_with_the_user_as_subject(
    op: OidcProvider,
) -> None:
    """OAuth 2.1 §4.1 with PKCE (RFC 7636) by a public client, resource sent in the
    authorization and token requests (RFC 8707 §2.1, §2.2): sub is the user, client_id the
    client (RFC 9068 §2.2)."""
    async with httpx.AsyncClient(timeout=10) as browser:
        tokens = await log_in(op, browser, login="alice", resource=RESOURCE, scope="mcp:tools")
    assert tokens["token_type"] == "Bearer"
    async with jwt_verifier(op) as verifier:
        principal = await verifier.verify(tokens["access_token"])
    assert principal.subject == "alice"
    assert principal.client_id == "app"
    assert principal.scopes == frozenset({"mcp:tools"})


# -- the middleware in front of an app ------------------------------------------------------------


async def test_r01_r02_r03_protected_app_leads_a_client_to_oidc_provider_and_admits_its_token(
    op: OidcProvider,
) -> None:
    """The discovery chain a client follows (MCP "Authorization Server Discovery"): 401 with
    resource_metadata (RFC 9728 §5.1) -> the metadata's authorization_servers (§3.2) -> the
    AS's RFC 8414 metadata, whose issuer must equal it (§3.3) -> its token endpoint, with the
    metadata's resource (RFC 8707) -> the request is admitted."""
    async with jwt_verifier(op) as verifier, protected(verifier, op) as client:
        message = {"jsonrpc": "2.0", "id": 1, "method": "initialize"}
        response = await client.post("/mcp", json=message)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == (
            f'Bearer resource_metadata="{PRM_URL}", scope="mcp:tools", DPoP resource_metadata='
            f'"{PRM_URL}", scope="mcp:tools", algs="ES256 EdDSA RS256 PS256"'
        )
        prm = (await client.get(PRM_URL)).json()
        assert prm["resource"] == RESOURCE
        assert prm["authorization_servers"] == [op.issuer]
        async with httpx.AsyncClient(timeout=10) as http:
            as_metadata = (
                await http.get(f"{op.issuer}/.well-known/oauth-authorization-server")
            ).json()
            assert as_metadata["issuer"] == op.issuer
            assert as_metadata["jwks_uri"] == verifier.jwks_uri
            service = op.client("service")
            issued = await http.post(
                as_metadata["token_endpoint"],
                data={
                    "grant_type": "client_credentials",
                    "resource": prm["resource"],
                    "scope": "mcp:tools",
                },
                auth=(service["client_id"], service["client_secret"]),
            )
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        response = await client.post(
            "/mcp", json=message, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "service"
    assert response.json()["scopes"] == ["mcp:tools"]


async def test_r07_tool_needing_a_scope_oidc_provider_did_not_grant_gets_403(
    op: OidcProvider,
) -> None:
    """RFC 6750 §3.1, MCP "Runtime Insufficient Scope Errors": the AS grants ``limited`` only
    mcp:tools of what it asked; a tool needing files:write gets 403 insufficient_scope naming
    every scope the call needs, other tools run."""
    response = await op.client_credentials(resource=RESOURCE, scope=SCOPES, client_id="limited")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "mcp:tools"
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    async with jwt_verifier(op) as verifier, protected(verifier, op) as client:
        refused = await client.post("/mcp", json=call("delete_file"), headers=headers)
        allowed = await client.post("/mcp", json=call("read_file"), headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert refused.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{PRM_URL}", scope="files:write mcp:tools", '
        'error="insufficient_scope", error_description="this operation needs scope files:write '
        'mcp:tools; the token lacks files:write"'
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["calls"] == [["tools/call", "read_file"]]


# -- introspection (RFC 7662) --------------------------------------------------------------------


async def test_r04_introspected_opaque_token_of_oidc_provider_gives_its_principal(
    op: OidcProvider,
) -> None:
    """RFC 7662 §2.2: active, aud (the provider sets it to the resource), iss, scope,
    client_id. The provider names no sub for a client_credentials token: the subject is the
    client_id."""
    token = await access_token(op, OPAQUE)
    assert "." not in token  # opaque: not a JWT
    async with introspector(op) as verifier:
        principal = await verifier.verify(token)
    assert principal.subject == "service"
    assert principal.client_id == "service"
    assert principal.scopes == frozenset({"mcp:tools"})
    assert principal.claims["aud"] == OPAQUE
    assert principal.claims["iss"] == op.issuer
    assert "sub" not in principal.claims


async def test_r04_introspected_opaque_token_for_another_resource_is_refused(
    op: OidcProvider,
) -> None:
    """MCP "Token Handling", RFC 7662 §2.2 aud: active at the AS, but not for this resource."""
    token = await access_token(op, OPAQUE_OTHER)
    async with introspector(op) as verifier:
        with pytest.raises(InvalidToken) as caught:
            await verifier.verify(token)
    assert caught.value.description == (
        f"wrong audience: expected '{OPAQUE}', got '{OPAQUE_OTHER}'"
    )


async def test_opaque_token_revoked_at_oidc_provider_is_refused_by_introspection(
    op: OidcProvider,
) -> None:
    """RFC 7009 §2.1 revocation by the client, then RFC 7662 §2.2: active false."""
    token = await access_token(op, OPAQUE)
    service = op.client("service")
    async with httpx.AsyncClient(timeout=10) as http:
        revoked = await http.post(
            op.revocation_endpoint,
            data={"token": token, "token_type_hint": "access_token"},
            auth=(service["client_id"], service["client_secret"]),
        )
    assert revoked.status_code == 200, revoked.text
    async with introspector(op) as verifier:
        with pytest.raises(InvalidToken) as caught:
            await verifier.verify(token)
    assert caught.value.description == (
        "token is not active (expired, revoked or unknown to the AS)"
    )


async def test_r04_introspection_answer_without_aud_is_refused() -> None:
    """RFC 7662 §2.2 makes aud optional; without it the resource cannot tell the token was
    issued for it, so it is refused (require_audience defaults to True). The provider issues
    such a token when the request names no resource and none is defaulted."""
    async with oidc_provider(
        resources=[resource(OPAQUE, format="opaque")],
        clients=[confidential_client("service"), confidential_client("mcp-server")],
        default_resource=None,
    ) as op:
        response = await op.client_credentials()
        assert response.status_code == 200, response.text
        async with introspector(op) as verifier:
            with pytest.raises(InvalidToken) as caught:
                await verifier.verify(response.json()["access_token"])
    assert caught.value.description == (
        "the introspection answer names no audience, so the token may be for another resource "
        "(RFC 8707)"
    )


async def test_r04_jwt_that_oidc_provider_will_not_introspect_is_never_admitted(
    op: OidcProvider,
) -> None:
    """The provider answers introspection of its own JWT access tokens with 400
    unsupported_token_type (not RFC 7662 §2.2's active false). The verifier cannot vouch for the
    token: TemporarilyUnavailable, which the middleware answers 503 with Retry-After, never 200
    (and not 401, which would send the client into a re-authorization loop)."""
    jwt = await access_token(op, RESOURCE)
    async with introspector(op, audience=RESOURCE) as verifier:
        with pytest.raises(TemporarilyUnavailable) as caught:
            await verifier.verify(jwt)
        assert caught.value.detail == (
            f"introspection at {op.introspection_endpoint}: HTTP 400 (unsupported_token_type: "
            "Structured JWT Tokens cannot be introspected via the introspection_endpoint)"
        )
        async with protected(verifier, op) as client:
            response = await client.get("/mcp", headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"
    assert "www-authenticate" not in response.headers
