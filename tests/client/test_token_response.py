"""How the client reads the token endpoint's answer (RFC 6749 §5.1, §5.2), over real HTTP: the
rules of :mod:`bastion.oauth.token_response`, shared with federation
(tests/federation/test_token_response.py has the same cases from that side)."""

from __future__ import annotations

import httpx
import pytest

from bastion.client import flow
from bastion.client.errors import TokenEndpointError
from bastion.client.models import RegisteredClient
from bastion.oauth.token_response import TokenResponse
from tests.support import token_endpoint as cases
from tests.support.token_endpoint import token_endpoint


async def answer(status: int, body: object) -> TokenResponse:
    """The client's reading of ``body`` answered with ``status`` to a client credentials
    token request."""
    async with token_endpoint(status, body) as url, httpx.AsyncClient() as http:
        client = RegisteredClient(
            issuer="http://127.0.0.1",
            client_id="c",
            source="preregistered",
            token_endpoint_auth_method="client_secret_post",
            client_secret="s",
        )
        return await flow.token_request(
            http, client.issuer, url, client, {"grant_type": "client_credentials"}
        )


# -- refusals ------------------------------------------------------------------------------------


async def test_rfc6749_s5_2_an_error_object_answered_with_200_is_an_error_response() -> None:
    """GitHub answers token errors with 200 and an ``error`` member. The client used to read
    that as a success without an access_token; it is an error response, as federation reads
    it, with its code kept for the caller (a dead refresh token is recognised by it)."""
    with pytest.raises(TokenEndpointError) as caught:
        await answer(200, {"error": "invalid_grant", "error_description": "expired"})
    assert caught.value.error == "invalid_grant"
    assert caught.value.status == 200
    assert str(caught.value).endswith("token answered HTTP 200 invalid_grant: expired")


async def test_rfc6749_s5_2_an_error_response_names_its_code_and_description() -> None:
    with pytest.raises(TokenEndpointError) as caught:
        await answer(400, {"error": "invalid_client", "error_description": 7})
    assert (caught.value.error, caught.value.status) == ("invalid_client", 400)
    assert str(caught.value).endswith("token answered HTTP 400 invalid_client")


@pytest.mark.parametrize("body", [*cases.NOT_AN_ERROR_OBJECT, "invalid_grant"])
async def test_rfc6749_s5_2_a_failure_without_an_error_object_has_no_code(body: object) -> None:
    with pytest.raises(TokenEndpointError) as caught:
        await answer(400, body)
    assert (caught.value.error, caught.value.status) == (None, 400)
    assert str(caught.value).endswith("token answered HTTP 400")


@pytest.mark.parametrize("token", cases.NO_ACCESS_TOKEN)
async def test_rfc6749_a12_a_success_without_a_non_empty_access_token_is_refused(
    token: object,
) -> None:
    with pytest.raises(TokenEndpointError, match=r"token answered without an access_token$"):
        await answer(200, {**cases.OK, "access_token": token})


@pytest.mark.parametrize("token_type", cases.NOT_BEARER)
async def test_rfc6750_a_token_type_other_than_bearer_is_refused(token_type: object) -> None:
    with pytest.raises(TokenEndpointError, match=r"this client uses Bearer tokens$"):
        await answer(200, {**cases.OK, "token_type": token_type})


@pytest.mark.parametrize("scope", cases.NOT_A_SCOPE)
async def test_rfc6749_s3_3_a_scope_that_is_not_a_string_is_refused(scope: object) -> None:
    """The client used to read such a scope as absent, which means "granted as requested"
    (RFC 6749 §5.1); it is refused, as federation refuses it."""
    with pytest.raises(TokenEndpointError, match=r"scope that is not a string \(RFC 6749 §3\.3\)"):
        await answer(200, {**cases.OK, "scope": scope})


async def test_rfc6749_s5_1_a_200_that_is_not_a_json_object_is_refused() -> None:
    with pytest.raises(TokenEndpointError, match=r"token answered 200 without a JSON object$"):
        await answer(200, b"access_token=at&token_type=bearer")


# -- what a success holds ------------------------------------------------------------------------


@pytest.mark.parametrize("token_type", cases.BEARER_SPELLINGS)
async def test_rfc6749_s7_1_token_type_is_compared_without_case(token_type: str) -> None:
    response = await answer(200, {**cases.OK, "token_type": token_type})
    assert (response.access_token, response.token_type) == ("at", "Bearer")


@pytest.mark.parametrize(("expires_in", "read"), cases.EXPIRES_IN)
async def test_rfc6749_a14_expires_in_counts_only_as_a_non_negative_integer(
    expires_in: object, read: int | None
) -> None:
    """The client used to accept a string of digits and a fraction; the lifetime is now unknown
    then (the token is used until refused), as in federation."""
    response = await answer(200, {**cases.OK, "expires_in": expires_in})
    assert response.expires_in == read
    assert response.expires_at(1000.0) == (None if read is None else 1000.0 + read)


@pytest.mark.parametrize(
    ("members", "scopes"),
    [({}, None), ({"scope": ""}, ()), ({"scope": "b  a"}, ("b", "a"))],
)
async def test_rfc6749_s5_1_scope_absent_means_as_requested(
    members: dict[str, str], scopes: tuple[str, ...] | None
) -> None:
    response = await answer(200, {**cases.OK, **members})
    assert response.scopes == scopes


async def test_rfc6749_s5_1_refresh_token_and_other_members() -> None:
    response = await answer(200, {**cases.OK, "refresh_token": "rt", "id_token": "x.y.z"})
    assert response.refresh_token == "rt"
    assert response.extra == {"id_token": "x.y.z"}
    assert (await answer(200, {**cases.OK, "refresh_token": 5})).refresh_token is None
