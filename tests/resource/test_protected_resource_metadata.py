"""Protected Resource Metadata (RFC 9728 §2, §3) as the MCP authorization-server discovery page
requires it (checklist R01, R02, R08)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from bastion.oauth.protected_resource import build_metadata, check_resource, metadata_url
from bastion.resource import JwtVerifier, ResourceServerMiddleware
from tests.resource.apps import PRM_URL, RESOURCE, echo_app
from tests.resource.conftest import ForeignAS

AS = "https://as.example.com"


@pytest.mark.parametrize(
    ("resource", "url"),
    [
        (
            "https://mcp.example.com/mcp",
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "https://mcp.example.com/a/b/",
            "https://mcp.example.com/.well-known/oauth-protected-resource/a/b",
        ),
        ("https://mcp.example.com", "https://mcp.example.com/.well-known/oauth-protected-resource"),
        (
            "https://mcp.example.com/",
            "https://mcp.example.com/.well-known/oauth-protected-resource",
        ),
        (
            "HTTPS://MCP.Example.com:443/mcp",
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "http://127.0.0.1:8080/mcp",
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp",
        ),
    ],
)
def test_r02_metadata_url_inserts_the_well_known_suffix_before_the_path(
    resource: str, url: str
) -> None:
    """RFC 9728 §3.1: https://h/.well-known/oauth-protected-resource/<path>; root without path."""
    assert metadata_url(resource) == url


@pytest.mark.parametrize(
    "bad",
    ["mcp.example.com", "ftp://h/x", "https://h/mcp#frag", "https://h/mcp?x=1", "https://h:x/"],
)
def test_resource_identifier_must_be_an_http_url_without_fragment_or_query(bad: str) -> None:
    """RFC 9728 §1.2: a URL with https scheme and no fragment; bastion also refuses a query."""
    with pytest.raises(ValueError, match="resource"):
        check_resource(bad)


def test_r01_document_has_the_rfc9728_fields() -> None:
    """RFC 9728 §2: resource, authorization_servers, scopes_supported, bearer_methods_supported,
    resource_name, resource_documentation."""
    assert build_metadata(
        resource="https://MCP.example.com/mcp/",
        authorization_servers=[AS],
        scopes_supported=["mcp:tools", "files:read"],
        resource_name="Files",
        resource_documentation="https://docs.example.com/files",
    ).to_json() == {
        "resource": "https://mcp.example.com/mcp",
        "authorization_servers": [AS],
        "scopes_supported": ["mcp:tools", "files:read"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Files",
        "resource_documentation": "https://docs.example.com/files",
    }


def test_r01_at_least_one_authorization_server_is_required() -> None:
    """MCP authorization-server discovery: authorization_servers with at least one entry."""
    with pytest.raises(ValueError, match="at least one authorization server"):
        build_metadata(resource="https://h/mcp", authorization_servers=[])
    with pytest.raises(ValueError, match="not an absolute"):
        build_metadata(resource="https://h/mcp", authorization_servers=["as.example.com"])


def test_r08_offline_access_is_never_in_scopes_supported() -> None:
    """MCP, Refresh Tokens: servers SHOULD NOT list offline_access; bastion refuses it."""
    with pytest.raises(ValueError, match="offline_access"):
        build_metadata(
            resource="https://h/mcp",
            authorization_servers=[AS],
            scopes_supported=["mcp:tools", "offline_access"],
        )


def test_scopes_supported_must_be_scope_tokens() -> None:
    """RFC 6749 §3.3: one scope-token per entry."""
    with pytest.raises(ValueError, match="scope-token"):
        build_metadata(
            resource="https://h/mcp", authorization_servers=[AS], scopes_supported=["a b"]
        )


def test_r08_middleware_refuses_offline_access_in_scopes_supported(foreign_as: ForeignAS) -> None:
    """Misconfiguration is caught at start-up, not served."""
    verifier = JwtVerifier(issuer=AS, audience=RESOURCE, jwks_uri=foreign_as.jwks_uri)
    with pytest.raises(ValueError, match="offline_access"):
        ResourceServerMiddleware(
            echo_app(),
            resource=RESOURCE,
            verifier=verifier,
            authorization_servers=[AS],
            scopes_supported=["offline_access"],
        )


def test_r01_middleware_refuses_an_empty_authorization_server_list(foreign_as: ForeignAS) -> None:
    verifier = JwtVerifier(issuer=AS, audience=RESOURCE, jwks_uri=foreign_as.jwks_uri)
    with pytest.raises(ValueError, match="at least one"):
        ResourceServerMiddleware(
            echo_app(), resource=RESOURCE, verifier=verifier, authorization_servers=[]
        )


def _client(resource: str, foreign_as: ForeignAS) -> httpx.AsyncClient:
    verifier = foreign_as.verifier(resource)
    app = ResourceServerMiddleware(
        echo_app(),
        resource=resource,
        verifier=verifier,
        authorization_servers=[AS],
        scopes_supported=["mcp:tools"],
        resource_name="Demo MCP server",
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


@pytest.fixture
async def client(foreign_as: ForeignAS) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(RESOURCE, foreign_as) as http:
        yield http


async def test_r01_r02_metadata_is_served_at_the_path_inserted_url(
    client: httpx.AsyncClient,
) -> None:
    """RFC 9728 §3.1, §3.2: GET the well-known URL, 200 application/json, readable cross-origin
    (browser-based MCP clients fetch it)."""
    response = await client.get(PRM_URL)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == {
        "resource": RESOURCE,
        "authorization_servers": [AS],
        "scopes_supported": ["mcp:tools"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Demo MCP server",
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256", "PS256"],
    }


async def test_metadata_resource_equals_the_url_it_was_derived_from(
    client: httpx.AsyncClient,
) -> None:
    """RFC 9728 §3.3: the resource value must be identical to the one the well-known URL was
    built from, or clients must not use the document."""
    document = (await client.get(PRM_URL)).json()
    assert metadata_url(document["resource"]) == PRM_URL


async def test_r01_metadata_needs_no_token_even_under_a_protected_root(
    foreign_as: ForeignAS,
) -> None:
    """A resource at the origin root protects everything except its metadata, which is at the
    root well-known URL (MCP authorization-server discovery, option 2)."""
    async with _client("http://localhost", foreign_as) as http:
        response = await http.get("/.well-known/oauth-protected-resource")
        assert response.status_code == 200
        assert response.json()["resource"] == "http://localhost"
        assert (await http.get("/public")).status_code == 401


async def test_root_metadata_is_not_served_for_a_resource_with_a_path(
    client: httpx.AsyncClient,
) -> None:
    """The root document would describe the origin, not /mcp: several resources may share a host
    (the gateway), so only the path-inserted URL is answered; the rest reaches the app."""
    assert (await client.get("/.well-known/oauth-protected-resource")).status_code == 404


async def test_metadata_answers_cors_preflight(client: httpx.AsyncClient) -> None:
    """Fetch standard: a preflight for the metadata gets 204 with the allowed method and headers."""
    response = await client.options(
        PRM_URL,
        headers={
            "Origin": "https://inspector.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "mcp-protocol-version",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert response.headers["access-control-allow-headers"] == "mcp-protocol-version"


async def test_metadata_head_and_wrong_method(client: httpx.AsyncClient) -> None:
    """HEAD has the headers without the body; other methods get 405 with Allow."""
    head = await client.head(PRM_URL)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len((await client.get(PRM_URL)).content)
    post = await client.post(PRM_URL, json={})
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD, OPTIONS"


def test_r01_document_is_served_byte_for_byte() -> None:
    """RFC 9728 §2: the members, their order and values as the middleware serves them."""
    full = build_metadata(
        resource="https://MCP.example.com/mcp/",
        authorization_servers=["https://as.example.com", "https://b.example.com/t"],
        scopes_supported=["mcp:tools", "files:read", "mcp:tools"],
        resource_name="Files",
        resource_documentation="https://docs.example.com/files",
    )
    assert json.dumps(full.to_json()) == (
        '{"resource": "https://mcp.example.com/mcp", "authorization_servers": '
        '["https://as.example.com", "https://b.example.com/t"], "bearer_methods_supported": '
        '["header"], "scopes_supported": ["mcp:tools", "files:read"], "resource_name": "Files", '
        '"resource_documentation": "https://docs.example.com/files"}'
    )
    bare = build_metadata(
        resource="http://127.0.0.1:8080", authorization_servers=["http://127.0.0.1:9000"]
    )
    assert json.dumps(bare.to_json()) == (
        '{"resource": "http://127.0.0.1:8080", "authorization_servers": '
        '["http://127.0.0.1:9000"], "bearer_methods_supported": ["header"]}'
    )
