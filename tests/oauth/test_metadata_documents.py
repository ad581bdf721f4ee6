"""The metadata documents as typed data: RFC 8414 §2 and RFC 9728 §2, member by member."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.oauth.metadata import MetadataError
from bastion.oauth.protected_resource import ResourceMetadata
from bastion.oauth.server_metadata import ServerMetadata

AS_DOC: dict[str, Any] = {
    "issuer": "https://as.example.com/t",
    "authorization_endpoint": "https://as.example.com/t/authorize",
    "token_endpoint": "https://as.example.com/t/token",
    "code_challenge_methods_supported": ["S256"],
    "op_policy_uri": "https://as.example.com/policy",
}
PRM_DOC: dict[str, Any] = {
    "resource": "https://mcp.example.com/mcp",
    "authorization_servers": ["https://as.example.com/t"],
    "jwks_uri": "https://mcp.example.com/jwks",
}


def test_rfc8414_s2_document_round_trips_with_unknown_members_kept() -> None:
    """RFC 8414 §2: members a party does not understand are kept, not dropped."""
    parsed = ServerMetadata.parse(AS_DOC)
    assert parsed.issuer == AS_DOC["issuer"]
    assert parsed.supports_s256
    assert parsed.auth_methods == ("client_secret_basic",)
    assert parsed.extra == {"op_policy_uri": "https://as.example.com/policy"}
    assert parsed.to_json() == AS_DOC


@pytest.mark.parametrize(
    ("member", "value", "problem"),
    [
        ("issuer", None, "missing"),
        ("issuer", 7, "not_a_string"),
        ("token_endpoint", "", "not_a_string"),
        ("token_endpoint", "/token", "not_a_url"),
        ("jwks_uri", "https://as.example.com/jwks#k", "not_a_url"),
        ("revocation_endpoint", "https://as.example.com:99999/revoke", "not_a_url"),
        ("scopes_supported", "a b", "not_a_string_list"),
        ("grant_types_supported", ["authorization_code", 1], "not_a_string_list"),
        ("code_challenge_methods_supported", "S256", "not_a_string_list"),
    ],
)
def test_rfc8414_s2_malformed_members_are_named(member: str, value: Any, problem: str) -> None:
    """RFC 8414 §2: issuer required; endpoints are URLs without a fragment; the *_supported
    members are JSON arrays of strings."""
    doc = {**AS_DOC, member: value}
    if value is None:
        del doc[member]
    with pytest.raises(MetadataError) as caught:
        ServerMetadata.parse(doc)
    assert (caught.value.field, caught.value.problem) == (member, problem)


def test_rfc8414_s2_flags_count_only_as_json_booleans() -> None:
    """A string "true" enables nothing (RFC 8414 §2 and RFC 9207 §3: boolean members)."""
    parsed = ServerMetadata.parse(
        {
            **AS_DOC,
            "authorization_response_iss_parameter_supported": "true",
            "client_id_metadata_document_supported": True,
        }
    )
    assert parsed.authorization_response_iss_parameter_supported is None
    assert parsed.client_id_metadata_document_supported is True


def test_rfc9728_s2_document_round_trips_with_unknown_members_kept() -> None:
    """RFC 9728 §2: members this model does not know (jwks_uri here) are kept."""
    parsed = ResourceMetadata.parse(PRM_DOC)
    assert parsed.authorization_servers == ("https://as.example.com/t",)
    assert parsed.extra == {"jwks_uri": "https://mcp.example.com/jwks"}
    assert parsed.to_json() == PRM_DOC


@pytest.mark.parametrize(
    ("member", "value", "problem"),
    [
        ("resource", None, "missing"),
        ("resource", "", "not_a_string"),
        ("resource", "mcp.example.com/mcp", "not_a_url"),
        ("resource", "https://mcp.example.com/mcp#f", "not_a_url"),
        ("resource", "https://mcp.example.com:99999/mcp", "not_a_url"),
        ("authorization_servers", "https://as.example.com/t", "not_a_string_list"),
        ("scopes_supported", [1], "not_a_string_list"),
        ("bearer_methods_supported", "header", "not_a_string_list"),
    ],
)
def test_rfc9728_s2_malformed_members_are_named(member: str, value: Any, problem: str) -> None:
    """RFC 9728 §2: ``resource`` is required and an http(s) URL without a fragment (RFC 8707
    §2); the arrays hold strings."""
    doc = {**PRM_DOC, member: value}
    if value is None:
        del doc[member]
    with pytest.raises(MetadataError) as caught:
        ResourceMetadata.parse(doc)
    assert (caught.value.field, caught.value.problem) == (member, problem)
