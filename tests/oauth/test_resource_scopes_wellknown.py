"""Resource indicators (RFC 8707), scope syntax (RFC 6749 §3.3), well-known URLs (RFC 8414 §3.1)."""

from __future__ import annotations

import pytest

from bastion.oauth import scopes
from bastion.oauth.errors import InvalidScope, InvalidTarget
from bastion.oauth.resource import canonical, check_indicator
from bastion.oauth.well_known import appended, inserted, metadata_paths


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://MCP.Example.com/mcp/", "https://mcp.example.com/mcp"),
        ("HTTPS://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
        ("http://127.0.0.1:80/", "http://127.0.0.1"),
        ("https://mcp.example.com:8443", "https://mcp.example.com:8443"),
        ("http://[::1]:9000/a", "http://[::1]:9000/a"),
    ],
)
def test_canonical_resource_uri(given: str, expected: str) -> None:
    """MCP authorization: lowercase scheme and host accepted, no trailing slash."""
    assert canonical(given) == expected


@pytest.mark.parametrize("bad", ["mcp.example.com", "/mcp", "https://mcp.example.com/#x"])
def test_resource_must_be_absolute_without_fragment(bad: str) -> None:
    """RFC 8707 §2: an absolute URI, no fragment; else invalid_target."""
    with pytest.raises(InvalidTarget):
        check_indicator(bad)


def test_scope_parsing() -> None:
    assert scopes.parse("b a  a") == ("a", "b")
    assert scopes.parse(None) == ()
    assert scopes.join({"b", "a"}) == "a b"
    with pytest.raises(InvalidScope):
        scopes.parse('bad"scope')


def test_well_known_urls_for_an_issuer_with_a_path() -> None:
    """RFC 8414 §3.1 inserts; OIDC Discovery §4 appends (C04 order is the client's concern)."""
    issuer = "https://auth.example.com/tenant1"
    assert inserted(issuer, "oauth-authorization-server") == (
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1"
    )
    assert appended(issuer, "openid-configuration") == (
        "https://auth.example.com/tenant1/.well-known/openid-configuration"
    )
    assert metadata_paths(issuer) == [
        "/.well-known/oauth-authorization-server/tenant1",
        "/.well-known/openid-configuration/tenant1",
        "/tenant1/.well-known/openid-configuration",
    ]


def test_well_known_urls_for_an_issuer_without_a_path() -> None:
    assert metadata_paths("https://auth.example.com") == [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ]
