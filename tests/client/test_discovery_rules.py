"""Discovery rules as pure functions: where to look (C01, C04) and what to accept (RFC 9728 §3.3,
RFC 8414 §3.3 / C05, PKCE / C10, https endpoints)."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.client.discovery import (
    BearerChallenge,
    PrmCandidate,
    as_metadata_urls,
    check_endpoint,
    order_issuers,
    prm_candidates,
    server_key,
    validate_as_metadata,
    validate_prm,
)
from bastion.client.errors import (
    DiscoveryError,
    InsecureUrl,
    IssuerMismatch,
    MalformedMetadata,
    PkceNotSupported,
    ResourceMismatch,
)


def test_c01_the_challenge_url_is_the_only_candidate_when_present() -> None:
    """MCP: use ``resource_metadata`` from WWW-Authenticate when present; the document must then
    describe the URL the client called (RFC 9728 §3.3)."""
    challenge = BearerChallenge(resource_metadata="https://h/custom/prm.json")
    assert prm_candidates("https://h/public/mcp", challenge) == [
        PrmCandidate("https://h/custom/prm.json", "https://h/public/mcp", "header")
    ]


def test_c01_without_it_path_inserted_then_root() -> None:
    """MCP: otherwise the well-known URI at the MCP endpoint's path, then at the root, each
    describing the resource it was built from (RFC 9728 §3.1)."""
    assert prm_candidates("https://h/public/mcp", None) == [
        PrmCandidate(
            "https://h/.well-known/oauth-protected-resource/public/mcp",
            "https://h/public/mcp",
            "path",
        ),
        PrmCandidate("https://h/.well-known/oauth-protected-resource", "https://h", "root"),
    ]


def test_c01_a_server_at_the_root_has_one_candidate() -> None:
    """A server at the root: the path-inserted and root URLs coincide (no duplicate probe)."""
    assert [c.url for c in prm_candidates("https://h/", BearerChallenge())] == [
        "https://h/.well-known/oauth-protected-resource"
    ]


def test_c04_metadata_urls_for_an_issuer_with_a_path() -> None:
    """MCP's order for ``https://auth.example.com/tenant1``: RFC 8414 path-inserted, OIDC
    path-inserted, OIDC path-appended."""
    assert as_metadata_urls("https://auth.example.com/tenant1") == [
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example.com/.well-known/openid-configuration/tenant1",
        "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]


@pytest.mark.parametrize("issuer", ["https://auth.example.com", "https://auth.example.com/"])
def test_c04_metadata_urls_for_an_issuer_without_a_path(issuer: str) -> None:
    """Without a path: the two root forms, RFC 8414 first."""
    assert as_metadata_urls(issuer) == [
        "https://auth.example.com/.well-known/oauth-authorization-server",
        "https://auth.example.com/.well-known/openid-configuration",
    ]


def test_server_key_is_the_canonical_server_uri() -> None:
    """MCP "Canonical Server URI": lowercase scheme and host, no default port, no trailing
    slash, no query or fragment."""
    assert server_key("HTTPS://MCP.Example.com:443/mcp/?x=1#f") == "https://mcp.example.com/mcp"
    assert server_key("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


def prm(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"resource": "https://h/mcp", "authorization_servers": ["https://as"]}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


PATH = PrmCandidate("https://h/.well-known/oauth-protected-resource/mcp", "https://h/mcp", "path")


def test_c01_prm_for_the_resource_is_accepted_in_canonical_form() -> None:
    """The resource may differ only in what canonicalisation removes (case of scheme and host,
    a trailing slash); the value sent later is the document's own."""
    for resource in ("https://h/mcp", "HTTPS://H/mcp", "https://h/mcp/"):
        assert validate_prm(prm(resource=resource), PATH).resource == resource


@pytest.mark.parametrize(
    "resource",
    ["https://evil.example.com/mcp", "https://h/other", "https://h", "https://h/mcp#f", "h/mcp"],
)
def test_c01_prm_for_another_resource_is_refused(resource: str) -> None:
    """RFC 9728 §3.3: ``resource`` must be the resource the URL was built for, else the
    document must not be used (the conformance scenario ``resource-mismatch``)."""
    with pytest.raises(ResourceMismatch):
        validate_prm(prm(resource=resource), PATH)


def test_c01_root_prm_describes_the_origin() -> None:
    """The root document describes the origin (RFC 9728 §3.1): resource = origin is right
    there, and the server URL is not."""
    root = PrmCandidate("https://h/.well-known/oauth-protected-resource", "https://h", "root")
    assert validate_prm(prm(resource="https://h"), root).resource == "https://h"
    with pytest.raises(ResourceMismatch):
        validate_prm(prm(resource="https://h/mcp"), root)


@pytest.mark.parametrize("servers", [None, [], "https://as", [1]])
def test_c01_prm_without_authorization_servers_is_refused(servers: Any) -> None:
    """MCP: the document must list at least one authorization server."""
    with pytest.raises(DiscoveryError):
        validate_prm(prm(authorization_servers=servers), PATH)


def test_rfc9728_s2_a_resource_with_an_impossible_port_is_refused_not_a_crash() -> None:
    """RFC 9728 §2, RFC 8707 §2: ``resource`` is a URL; one whose port is out of range is not,
    and is refused like any other malformed resource (it used to raise a bare ValueError)."""
    with pytest.raises(ResourceMismatch, match="not an absolute http"):
        validate_prm(prm(resource="https://h:99999/mcp"), PATH)


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("scopes_supported", "mcp:tools"),
        ("bearer_methods_supported", "header"),
        ("resource_documentation", "https://h/docs#intro"),
    ],
)
def test_rfc9728_s2_malformed_members_are_refused(member: str, value: Any) -> None:
    """RFC 9728 §2: arrays are JSON arrays of strings, ``resource_documentation`` is a URL."""
    with pytest.raises(MalformedMetadata, match=member):
        validate_prm(prm(**{member: value}), PATH)


def test_rfc9728_s2_unknown_members_are_ignored() -> None:
    """RFC 9728 §2: members a client does not understand are ignored, and kept as sent."""
    doc = prm(jwks_uri="https://h/jwks", resource_policy_uri="https://h/policy")
    assert validate_prm(doc, PATH).raw == doc


def metadata(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": "https://as.example.com/t",
        "authorization_endpoint": "https://as.example.com/t/authorize",
        "token_endpoint": "https://as.example.com/t/token",
        "code_challenge_methods_supported": ["S256"],
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


URL = "https://as.example.com/.well-known/oauth-authorization-server/t"


@pytest.mark.parametrize(
    "issuer",
    [
        "https://as.example.com/t/",
        "https://AS.example.com/t",
        "https://as.example.com:443/t",
        "https://attacker.example",
        None,
    ],
)
def test_c05_the_issuer_must_be_identical(issuer: str | None) -> None:
    """RFC 8414 §3.3: simple string comparison, no normalisation (a trailing slash, case or a
    default port makes it another issuer)."""
    with pytest.raises(IssuerMismatch):
        validate_as_metadata(metadata(issuer=issuer), "https://as.example.com/t", URL)


@pytest.mark.parametrize("methods", [None, [], ["plain"], "S256"])
def test_c10_metadata_without_s256_is_refused(methods: Any) -> None:
    """MCP security considerations: absent ``code_challenge_methods_supported`` (or no S256)
    means no PKCE: refuse to proceed."""
    with pytest.raises((PkceNotSupported, DiscoveryError)):
        validate_as_metadata(
            metadata(code_challenge_methods_supported=methods), "https://as.example.com/t", URL
        )


def test_c10_pkce_is_not_required_for_machine_clients() -> None:
    """Client credentials use no authorization endpoint: discovery for them does not insist."""
    found = validate_as_metadata(
        metadata(code_challenge_methods_supported=None),
        "https://as.example.com/t",
        URL,
        require_pkce=False,
    )
    assert not found.supports_s256


def test_metadata_flags_are_read_exactly() -> None:
    """Only a JSON ``true`` enables RFC 9207 ``iss`` and CIMD support."""
    found = validate_as_metadata(
        metadata(
            authorization_response_iss_parameter_supported="true",
            client_id_metadata_document_supported=True,
        ),
        "https://as.example.com/t",
        URL,
    )
    assert found.iss_parameter_supported is False
    assert found.client_id_metadata_document_supported is True
    assert found.auth_methods == ("client_secret_basic",)  # RFC 8414 §2 default


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://as.example.com/token",
        "javascript:alert(1)",
        "https://as.example.com/token#x",
        "/token",
    ],
)
def test_endpoints_must_be_https(endpoint: str) -> None:
    """OAuth 2.1 §1.5 and MCP "Communication Security": https endpoints (loopback http
    excepted), absolute, without a fragment."""
    with pytest.raises(InsecureUrl):
        validate_as_metadata(metadata(token_endpoint=endpoint), "https://as.example.com/t", URL)
    assert check_endpoint("http://127.0.0.1:9/token", "t")
    assert check_endpoint("http://localhost/token", "t")
    assert check_endpoint("http://as.internal/token", "t", allow_insecure_http=True)


def test_several_authorization_servers_follow_the_configured_preference() -> None:
    """RFC 9728 §7.6: the client chooses; preferred issuers first, in preference order, the
    rest in the document's order; preferences not listed are ignored."""
    listed = ["https://a", "https://b", "https://c"]
    assert order_issuers(listed, []) == listed
    assert order_issuers(listed, ["https://c", "https://x", "https://b"]) == [
        "https://c",
        "https://b",
        "https://a",
    ]


@pytest.mark.parametrize(
    ("member", "value", "message"),
    [
        ("jwks_uri", "https://as.example.com/t/jwks#k", "invalid jwks_uri: .* must not have a"),
        ("revocation_endpoint", 7, "has an invalid revocation_endpoint: 7"),
        ("grant_types_supported", "authorization_code", "grant_types_supported must be a list"),
        ("response_types_supported", ["code", None], "response_types_supported must be a list"),
    ],
)
def test_rfc8414_s2_malformed_members_are_refused(member: str, value: Any, message: str) -> None:
    """RFC 8414 §2: every endpoint is a URL without a fragment and every ``*_supported`` member
    a JSON array of strings; a document that breaks this is not used, whichever member it is
    (the client used to read only the members it needed)."""
    with pytest.raises(MalformedMetadata, match=message):
        validate_as_metadata(metadata(**{member: value}), "https://as.example.com/t", URL)


def test_the_most_telling_defect_is_reported_first() -> None:
    """With several defects the client names the one that decides: a wrong issuer (RFC 8414
    §3.3), then the token endpoint, then PKCE, then the form of the other members; for resource
    metadata the resource (RFC 9728 §3.3), then the authorization servers."""
    broken = {"grant_types_supported": "authorization_code", "token_endpoint": "http://as/t"}
    with pytest.raises(IssuerMismatch):
        validate_as_metadata(
            metadata(issuer="https://x", **broken), "https://as.example.com/t", URL
        )
    with pytest.raises(InsecureUrl):
        validate_as_metadata(metadata(**broken), "https://as.example.com/t", URL)
    with pytest.raises(PkceNotSupported):
        validate_as_metadata(
            metadata(code_challenge_methods_supported=["plain"], grant_types_supported="x"),
            "https://as.example.com/t",
            URL,
        )
    with pytest.raises(ResourceMismatch):
        validate_prm(prm(resource="https://h/other", scopes_supported="a"), PATH)
    with pytest.raises(DiscoveryError, match="lists no authorization_servers"):
        validate_prm(prm(authorization_servers=[], scopes_supported="a"), PATH)
