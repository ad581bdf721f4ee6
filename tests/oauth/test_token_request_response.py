"""The token request as a union discriminated on grant_type (OAuth 2.1 §3.2.2, §4.1.3, §4.2.1,
§4.3.1; RFC 8707 §2) and the token response (RFC 6749 §5.1), without a server."""

from __future__ import annotations

import json

import pytest

from bastion.oauth import token_request, token_response
from bastion.oauth.errors import InvalidRequest, InvalidTarget, UnsupportedGrantType
from bastion.oauth.token_request import (
    GRANT_TYPES,
    AuthorizationCodeRequest,
    ClientCredentialsRequest,
    GrantType,
    RefreshTokenRequest,
)
from bastion.oauth.token_response import MalformedTokenResponse, TokenErrorResponse, TokenResponse

R1 = "https://mcp.example.com/a"
R2 = "https://mcp.example.com/b"


def test_grant_type_is_required() -> None:
    with pytest.raises(InvalidRequest, match=r"^grant_type is required$"):
        token_request.grant_type({"code": ["c"]})


@pytest.mark.parametrize("sent", ["password", "AUTHORIZATION_CODE", "refresh_token "])
def test_grant_type_is_one_of_the_implemented_ones_case_sensitively(sent: str) -> None:
    with pytest.raises(UnsupportedGrantType) as caught:
        token_request.grant_type({"grant_type": [sent]})
    assert caught.value.description == (
        f"grant_type {sent} is not supported; use one of authorization_code, refresh_token, "
        "client_credentials"
    )


@pytest.mark.parametrize("kind", GRANT_TYPES)
def test_grant_type_is_returned_as_sent(kind: str) -> None:
    assert token_request.grant_type({"grant_type": [kind]}) == kind


def test_authorization_code_request_has_its_parameters() -> None:
    parsed = token_request.parse(
        "authorization_code",
        {
            "grant_type": ["authorization_code"],
            "code": ["c"],
            "redirect_uri": ["http://127.0.0.1/cb"],
            "code_verifier": ["v"],
            "resource": [R1],
            "scope": ["ignored"],
            "client_id": ["x"],
        },
    )
    assert parsed == AuthorizationCodeRequest(
        code="c", redirect_uri="http://127.0.0.1/cb", code_verifier="v", resource=R1
    )
    assert parsed.grant_type == "authorization_code"


def test_redirect_uri_and_verifier_may_be_missing_for_the_grant_to_judge() -> None:
    """The code must be looked up (and spent) before a missing verifier is refused."""
    assert token_request.parse("authorization_code", {"code": ["c"]}) == (
        AuthorizationCodeRequest(code="c")
    )


@pytest.mark.parametrize(
    ("kind", "name"), [("authorization_code", "code"), ("refresh_token", "refresh_token")]
)
def test_the_grant_s_credential_is_required_before_anything_else(
    kind: GrantType, name: str
) -> None:
    with pytest.raises(InvalidRequest, match=rf"^{name} is required$"):
        token_request.parse(kind, {"resource": [R1, R2]})


@pytest.mark.parametrize(
    ("kind", "name"), [("authorization_code", "code"), ("refresh_token", "refresh_token")]
)
def test_one_token_has_one_audience(kind: GrantType, name: str) -> None:
    with pytest.raises(InvalidTarget, match=r"^send one resource per request$"):
        token_request.parse(kind, {name: ["t"], "resource": [R1, R2]})


def test_refresh_request_keeps_the_scope_as_sent() -> None:
    """Its syntax is checked by the grant, after the refresh token (invalid_grant comes first)."""
    parsed = token_request.parse(
        "refresh_token", {"refresh_token": ["t"], "scope": ["a\\b"], "resource": [R1]}
    )
    assert parsed == RefreshTokenRequest(refresh_token="t", scope="a\\b", resource=R1)
    assert parsed.grant_type == "refresh_token"


def test_client_credentials_request_keeps_every_resource_sent() -> None:
    """The grant narrows them to one configured resource, with its own message."""
    parsed = token_request.parse("client_credentials", {"scope": ["s"], "resource": [R1, R2]})
    assert parsed == ClientCredentialsRequest(scope="s", resource=(R1, R2))
    assert token_request.parse("client_credentials", {}) == ClientCredentialsRequest()


def test_token_response_json_members_and_order() -> None:
    full = TokenResponse(access_token="a", expires_in=300, scope="x y", refresh_token="r")
    assert json.dumps(full.to_json(), separators=(",", ":")) == (
        '{"access_token":"a","token_type":"Bearer","expires_in":300,"scope":"x y",'
        '"refresh_token":"r"}'
    )
    bare = TokenResponse(access_token="a", expires_in=300)
    assert bare.to_json() == {"access_token": "a", "token_type": "Bearer", "expires_in": 300}
    assert bare.with_refresh_token("r").to_json()["refresh_token"] == "r"


def test_token_response_repr_hides_the_tokens() -> None:
    shown = repr(TokenResponse(access_token="secret-a", expires_in=1, refresh_token="secret-r"))
    assert "secret" not in shown


def test_token_response_reads_back_what_it_builds() -> None:
    """One model builds the server's answer and reads it in the client and federation."""
    full = TokenResponse(access_token="a", expires_in=300, scope="x y", refresh_token="r")
    assert TokenResponse.parse(full.to_json()) == full
    assert token_response.read(200, full.to_json()) == full


@pytest.mark.parametrize("status", [200, 400, 401, 500])
def test_token_response_an_error_object_wins_at_any_status(status: int) -> None:
    body = {"access_token": "a", "token_type": "Bearer", "error": "invalid_grant"}
    assert token_response.read(status, body) == TokenErrorResponse("invalid_grant")


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (400, None, "not_a_success"),
        (200, None, "not_an_object"),
        (200, {"token_type": "Bearer"}, "no_access_token"),
        (200, {"access_token": "a"}, "not_bearer"),
        (200, {"access_token": "a", "token_type": "Bearer", "scope": ["x"]}, "bad_scope"),
    ],
)
def test_token_response_malformed_answers_name_their_problem(
    status: int, body: object, problem: str
) -> None:
    with pytest.raises(MalformedTokenResponse) as caught:
        token_response.read(status, body)
    assert caught.value.problem == problem
