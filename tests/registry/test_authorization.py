"""The registry as an OAuth resource server (registry authorization document; checklist G01-G03):
the 401 challenge, Protected Resource Metadata, scopes and step-up 403s, anonymous read."""

from __future__ import annotations

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from bastion.oauth.www_authenticate import Challenge, parse_challenges
from bastion.registry.access import ADMIN, WRITE
from bastion.resource import JwtVerifier, ResourceServerMiddleware
from tests.registry.harness import (
    PRM_URL,
    REGISTRY,
    Registry,
    RegistryFactory,
    encoded,
    server_json,
)

# Bearer, and DPoP beside it (RFC 9449 §7.2: a resource taking both schemes offers both).
CHALLENGE_401 = (
    f'Bearer realm="mcp-registry", resource_metadata="{PRM_URL}", scope="mcp-registry:read", '
    f'DPoP realm="mcp-registry", resource_metadata="{PRM_URL}", scope="mcp-registry:read", '
    'algs="ES256 EdDSA RS256 PS256"'
)


def challenge(response: httpx.Response) -> Challenge:
    """The first challenge: Bearer (a 401 without token offers DPoP after it)."""
    found = parse_challenges(response.headers["www-authenticate"])[0]
    assert found.scheme == "bearer"
    return found


PROBES = [
    "/registry/v0.1/servers",
    "/registry/v0.1/servers?limit=1",
    "/registry/v0/servers?limit=1",
    "/registry/v0.1/servers/io.x%2Fy/versions/latest",
    "/registry/v0.1/servers/io.x%2Fy/versions",
]


async def test_g01_a_request_without_token_gets_401_with_realm_scope_and_resource_metadata(
    reg: Registry,
) -> None:
    """Registry authorization document, Discovery: 401 with `WWW-Authenticate: Bearer
    realm="mcp-registry", scope="mcp-registry:read", resource_metadata="…"` (the scope the merged
    document recommends, the realm ToolHive and Obot use; bastion writes the parameters in its
    usual order, which RFC 9110 §11.2 leaves free). This is what VS Code's probe
    `GET /v0.1/servers?limit=1` receives."""
    for path in PROBES:
        response = await reg.client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == CHALLENGE_401
        assert challenge(response) == Challenge(
            "bearer",
            {"realm": "mcp-registry", "scope": "mcp-registry:read", "resource_metadata": PRM_URL},
        )
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["error"] == "unauthorized"


async def test_g01_writes_without_token_get_the_same_401(reg: Registry) -> None:
    """POST, PUT, DELETE and PATCH without a token: the same challenge (the registry is one
    resource; step-up names write and admin scopes later, on 403)."""
    name = encoded("com.acme.team-a/w")
    calls = [
        reg.client.post("/registry/v0.1/publish", json=server_json("com.acme.team-a/w")),
        reg.client.put(f"/registry/v0.1/servers/{name}/versions/1.0.0", json={}),
        reg.client.delete(f"/registry/v0.1/servers/{name}/versions/1.0.0"),
        reg.client.patch(f"/registry/v0.1/servers/{name}/status", json={"status": "active"}),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == CHALLENGE_401


async def test_g01_protected_resource_metadata_names_the_registry_url_as_resource(
    reg: Registry,
) -> None:
    """RFC 9728 §3: the metadata at the path-inserted well-known URL of the registry URL;
    `resource` is the registry URL (G01); the registry's scopes (G03), header tokens only."""
    response = await reg.client.get("/.well-known/oauth-protected-resource/registry")
    assert response.status_code == 200
    assert response.json() == {
        "resource": REGISTRY,
        "authorization_servers": ["http://localhost"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [
            "mcp-registry:admin",
            "mcp-registry:read",
            "mcp-registry:read:team-a",
            "mcp-registry:read:team-b",
            "mcp-registry:write",
        ],
        "resource_name": "MCP Registry",
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256", "PS256"],
    }


async def test_g02_the_authorization_server_knows_the_registry_as_a_resource(
    reg: Registry,
) -> None:
    """G02: clients send resource=<registry URL>; the AS of the same configuration issues
    tokens for it with the registry scopes."""
    [resource] = [r for r in reg.settings.resources if r.uri == REGISTRY]
    assert set(resource.scopes) == {
        "mcp-registry:read",
        "mcp-registry:write",
        "mcp-registry:admin",
        "mcp-registry:read:team-a",
        "mcp-registry:read:team-b",
    }


async def test_g02_a_token_for_another_resource_is_refused_as_invalid_token(
    reg: Registry,
) -> None:
    """RFC 8707, MCP token audience validation: a token whose audience is another server is
    401 invalid_token, with the realm."""
    token = await reg.token(audience="http://localhost:9001/mcp")
    response = await reg.client.get("/registry/v0.1/servers", headers=reg.bearer(token))
    assert response.status_code == 401
    found = challenge(response)
    assert found.get("error") == "invalid_token"
    assert found.get("realm") == "mcp-registry"
    assert found.get("resource_metadata") == PRM_URL


async def test_g02_a_token_in_the_query_string_is_refused(reg: Registry) -> None:
    """Registry authorization document: clients MUST NOT include tokens in query strings."""
    token = await reg.token()
    response = await reg.client.get("/registry/v0.1/servers", params={"access_token": token})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_g03_a_token_without_registry_read_gets_403_insufficient_scope(
    reg: Registry,
) -> None:
    """Step-Up Authorization Responses: 403 error="insufficient_scope" naming the scope."""
    token = await reg.token(scope="mcp:tools")
    response = await reg.client.get("/registry/v0.1/servers", headers=reg.bearer(token))
    assert response.status_code == 403
    found = challenge(response)
    assert found.get("error") == "insufficient_scope"
    assert found.get("scope") == "mcp-registry:read"
    assert found.get("realm") == "mcp-registry"


async def test_g03_publishing_with_only_registry_read_asks_for_registry_write(
    reg: Registry,
) -> None:
    """403 with `scope="mcp-registry:read mcp-registry:write"` (the read scope kept, the write
    scope added, as the document's example shows), and an RFC 9457 problem body."""
    token = await reg.token(groups=["team-a"])
    response = await reg.publish(token, server_json("com.acme.team-a/weather"))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    found = challenge(response)
    assert found.params == {
        "realm": "mcp-registry",
        "resource_metadata": PRM_URL,
        "scope": "mcp-registry:read mcp-registry:write",
        "error": "insufficient_scope",
        "error_description": "this operation needs scope mcp-registry:read mcp-registry:write",
    }
    assert response.json()["status"] == 403


@pytest.mark.parametrize("scope", [WRITE, ADMIN])
async def test_g03_broader_scopes_imply_registry_read(reg: Registry, scope: str) -> None:
    """MCP: servers honour scope hierarchies; admin implies write implies read."""
    token = await reg.token(scope=scope)
    response = await reg.client.get("/registry/v0.1/servers", headers=reg.bearer(token))
    assert response.status_code == 200


async def test_g03_status_changes_need_registry_admin(reg: Registry) -> None:
    """Status changes are administrative: a writer gets 403 insufficient_scope for
    mcp-registry:admin."""
    token = await reg.token(scope=WRITE, groups=["team-a"])
    await reg.published(await reg.admin(), server_json("com.acme.team-a/w"))
    response = await reg.client.patch(
        f"/registry/v0.1/servers/{encoded('com.acme.team-a/w')}/versions/1.0.0/status",
        json={"status": "deprecated"},
        headers=reg.bearer(token),
    )
    assert response.status_code == 403
    assert challenge(response).get("scope") == "mcp-registry:admin mcp-registry:read"


async def test_g03_registry_admin_counts_only_for_configured_admins(reg: Registry) -> None:
    """bastion's AS grants any known scope to whoever consents, so mcp-registry:admin applies only
    to members of registry.admins (default group:registry-admins): others get 403 not_admin,
    without a scope challenge (a new token would not help)."""
    await reg.published(await reg.admin(), server_json("com.acme.team-a/w"))
    token = await reg.token("mallory", ADMIN, groups=["team-a"])
    response = await reg.client.patch(
        f"/registry/v0.1/servers/{encoded('com.acme.team-a/w')}/status",
        json={"status": "deleted"},
        headers=reg.bearer(token),
    )
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert "registry.admins" in response.json()["detail"]


async def test_anonymous_read_is_off_by_default(reg: Registry) -> None:
    """Without configuration every request needs a token."""
    assert not reg.settings.registry.anonymous_read
    assert (await reg.client.get("/registry/v0.1/servers")).status_code == 401


async def test_anonymous_read_shows_approved_entries_without_groups_only(
    start_registry: RegistryFactory,
) -> None:
    """registry.anonymous_read: VS Code and the Copilot CLI send no token; they see approved
    entries without audience, never a group's entries; writes still need a token."""
    async with start_registry(anonymous_read=True) as anon:
        admin = await anon.admin()
        await anon.published(admin, server_json("com.acme.shared.x/open"))
        await anon.published(admin, server_json("com.acme.team-a/secret", groups=["team-a"]))
        author = await anon.token("alice", WRITE, groups=["team-a"])
        await anon.published(author, server_json("com.acme.team-a/draft"))  # not approved
        assert await anon.list_names(None) == ["com.acme.shared.x/open@1.0.0"]
        response = await anon.client.get(
            f"/registry/v0.1/servers/{encoded('com.acme.team-a/secret')}/versions/latest"
        )
        assert response.status_code == 404
        response = await anon.client.post(
            "/registry/v0.1/publish", json=server_json("com.acme.team-a/x")
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == CHALLENGE_401
        # A token that is sent is still checked.
        response = await anon.client.get(
            "/registry/v0.1/servers", headers={"Authorization": "Bearer not.a.token"}
        )
        assert response.status_code == 401


async def test_the_middleware_realm_option_puts_realm_in_every_challenge() -> None:
    """RFC 6750 §3: the `realm` attribute; ResourceServerMiddleware(realm=...) adds it to the 401
    without token and to invalid_token answers (default: no realm)."""

    async def hello(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("hi")(scope, receive, send)

    def build(**options: str) -> httpx.AsyncClient:
        app = ResourceServerMiddleware(
            hello,
            resource="https://rs.example.com/api",
            verifier=JwtVerifier(
                issuer="https://as.example.com",
                audience="https://rs.example.com/api",
                jwks_uri="https://as.example.com/jwks",
            ),
            authorization_servers=["https://as.example.com"],
            scopes_supported=["a:read"],
            **options,
        )
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://rs.example.com"
        )

    metadata = "https://rs.example.com/.well-known/oauth-protected-resource/api"
    async with build(realm="Example") as client:
        response = await client.get("/api")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == (
            f'Bearer realm="Example", resource_metadata="{metadata}", scope="a:read", '
            f'DPoP realm="Example", resource_metadata="{metadata}", scope="a:read", '
            'algs="ES256 EdDSA RS256 PS256"'
        )
        response = await client.get("/api", headers={"Authorization": "Bearer abc"})
        assert challenge(response).get("realm") == "Example"
        assert challenge(response).get("error") == "invalid_token"
    async with build() as client:
        response = await client.get("/api")
        assert "realm" not in challenge(response).params
