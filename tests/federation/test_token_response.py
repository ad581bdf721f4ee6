"""How federation reads an upstream provider's token response (RFC 6749 §5.1, §5.2), over real
HTTP: the rules of :mod:`bastion.oauth.token_response`, shared with bastion's client
(tests/client/test_token_response.py has the same cases from that side)."""

from __future__ import annotations

import pytest

from bastion.config import IdentityProviderSettings
from bastion.identity.errors import UpstreamInvalidResponse, UpstreamRefused
from bastion.identity.providers import resolve
from bastion.identity.upstream_client import ProviderClient
from bastion.oauth.token_response import TokenResponse
from tests.support.token_endpoint import (
    BEARER_SPELLINGS,
    EXPIRES_IN,
    NO_ACCESS_TOKEN,
    NOT_A_SCOPE,
    NOT_AN_ERROR_OBJECT,
    NOT_BEARER,
    OK,
    token_endpoint,
)


async def answer(status: int, body: object, media_type: str = "application/json") -> TokenResponse:
    """Federation's reading of ``body`` answered with ``status`` to a code exchange at a plain
    OAuth 2.0 provider on loopback."""
    async with token_endpoint(status, body, media_type) as url:
        spec = resolve(
            IdentityProviderSettings(
                name="idp",
                kind="oauth2",
                authorization_endpoint=url.replace("/token", "/authorize"),
                token_endpoint=url,
                userinfo_endpoint=url.replace("/token", "/userinfo"),
                client_id="bastion",
                client_secret="s",
                allow_private_addresses=True,
            )
        )
        client = ProviderClient(spec)
        try:
            return await client.exchange_code("code", "verifier", "http://127.0.0.1/cb")
        finally:
            await client.aclose()


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 400])
async def test_rfc6749_s5_2_an_error_object_is_a_refusal_at_any_status(status: int) -> None:
    with pytest.raises(UpstreamRefused) as caught:
        await answer(status, {"error": "invalid_grant", "error_description": "expired"})
    assert caught.value.error == "invalid_grant"
    assert caught.value.detail.endswith(f"answered {status}: invalid_grant: expired")


@pytest.mark.parametrize("body", NOT_AN_ERROR_OBJECT)
async def test_rfc6749_s5_2_a_failure_without_an_error_object_is_an_invalid_answer(
    body: object,
) -> None:
    with pytest.raises(UpstreamInvalidResponse, match="answered the code exchange with an error"):
        await answer(400, body)


@pytest.mark.parametrize("token", NO_ACCESS_TOKEN)
async def test_rfc6749_a12_a_success_without_a_non_empty_access_token_is_refused(
    token: object,
) -> None:
    """Federation used to accept an empty access_token (bastion's client refused it)."""
    with pytest.raises(UpstreamInvalidResponse, match="token response is not valid") as caught:
        await answer(200, {**OK, "access_token": token})
    assert "no access_token, or token_type 'Bearer' is not Bearer" in caught.value.detail


@pytest.mark.parametrize("token_type", NOT_BEARER)
async def test_rfc6750_a_token_type_other_than_bearer_is_refused(token_type: object) -> None:
    with pytest.raises(UpstreamInvalidResponse) as caught:
        await answer(200, {**OK, "token_type": token_type})
    assert f"token_type {token_type!r} is not Bearer" in caught.value.detail


@pytest.mark.parametrize("scope", NOT_A_SCOPE)
async def test_rfc6749_s3_3_a_scope_that_is_not_a_string_is_refused(scope: object) -> None:
    """Federation used to ignore the scope member; a malformed one now makes the answer
    invalid, as it does for bastion's client."""
    with pytest.raises(UpstreamInvalidResponse) as caught:
        await answer(200, {**OK, "scope": scope})
    assert "scope is not a string (RFC 6749 §3.3)" in caught.value.detail


async def test_rfc6749_s5_1_a_200_that_is_not_a_json_object_is_invalid() -> None:
    with pytest.raises(UpstreamInvalidResponse, match="answered the code exchange with an error"):
        await answer(200, b"not json")


# -- what federation keeps of a success ----------------------------------------------------------


@pytest.mark.parametrize(("expires_in", "read"), EXPIRES_IN)
async def test_rfc6749_a14_expires_in_counts_only_as_a_non_negative_integer(
    expires_in: object, read: int | None
) -> None:
    assert (await answer(200, {**OK, "expires_in": expires_in})).expires_in == read


@pytest.mark.parametrize("token_type", BEARER_SPELLINGS)
async def test_rfc6749_s7_1_token_type_is_compared_without_case(token_type: str) -> None:
    """Federation and the client both compared without case already; now in one place."""
    expected = TokenResponse(access_token="at", expires_in=300)
    assert await answer(200, {**OK, "token_type": token_type}) == expected


async def test_rfc6749_s5_1_refresh_token_id_token_and_scope() -> None:
    response = await answer(
        200, {**OK, "refresh_token": "rt", "id_token": "x.y.z", "scope": "openid email"}
    )
    assert response.refresh_token == "rt"
    assert response.extra == {"id_token": "x.y.z"}
    assert response.scopes == ("openid", "email")


async def test_a_form_encoded_answer_is_read_by_the_same_rules() -> None:
    """GitHub answers form-encoded without Accept: application/json; its members are strings,
    so expires_in reads as absent."""
    response = await answer(
        200,
        b"access_token=at&token_type=bearer&expires_in=300&scope=read%3Auser",
        "application/x-www-form-urlencoded",
    )
    assert (response.access_token, response.expires_in, response.scopes) == (
        "at",
        None,
        ("read:user",),
    )
