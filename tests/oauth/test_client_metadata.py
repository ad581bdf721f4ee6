"""Client metadata rules shared by DCR, CIMD and pre-registration (RFC 7591 §2)."""

from __future__ import annotations

import pytest

from bastion.oauth.client_metadata import parse
from bastion.oauth.errors import InvalidClientMetadata, InvalidRedirectUri

CB = "http://127.0.0.1/cb"


def test_rfc7591_defaults() -> None:
    meta = parse({"redirect_uris": [CB]})
    assert meta.token_endpoint_auth_method == "client_secret_basic"
    assert meta.grant_types == ["authorization_code"]
    assert meta.response_types == ["code"]
    assert meta.application_type == "web"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"redirect_uris": [CB], "grant_types": ["implicit"]}, "grant_types"),
        ({"redirect_uris": [CB], "grant_types": ["password"]}, "grant_types"),
        (
            {
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "none",
                "response_types": [],
            },
            "grant_types",
        ),
        ({"redirect_uris": [CB], "response_types": ["token"]}, "response_types"),
        ({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt"}, "jwks"),
        (
            {
                "redirect_uris": [CB],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": []},
                "jwks_uri": "https://x/jwks",
            },
            "jwks",
        ),
        (
            {"redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_jwt"},
            "token_endpoint_auth_method",
        ),
        (
            {"redirect_uris": [CB], "grant_types": ["refresh_token"], "response_types": []},
            "grant_types",
        ),
        ({"redirect_uris": [CB], "client_name": 5}, "client_name"),
    ],
)
def test_invalid_metadata_is_refused_naming_the_field(data: dict[str, object], field: str) -> None:
    """RFC 7591 §3.2.2: invalid_client_metadata, with the field in the description."""
    with pytest.raises(InvalidClientMetadata, match=field):
        parse(data)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"redirect_uris": "http://127.0.0.1/cb"},
        {"redirect_uris": ["http://evil.example.com/cb"]},
        {"redirect_uris": ["https://a.example.com/cb#x"]},
    ],
)
def test_bad_redirect_uris_give_invalid_redirect_uri(data: dict[str, object]) -> None:
    with pytest.raises(InvalidRedirectUri):
        parse(data)


def test_machine_client_needs_no_redirect_uri() -> None:
    meta = parse({"grant_types": ["client_credentials"], "response_types": []})
    assert meta.redirect_uris == []
    assert not meta.is_public


def test_not_an_object() -> None:
    with pytest.raises(InvalidClientMetadata, match="JSON object"):
        parse(["redirect_uris"])
