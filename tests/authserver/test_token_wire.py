"""The token endpoint's exact wire form and the order of its checks.

RFC 6749 §5.1: the successful answer, pinned byte for byte for each grant (member order, compact
separators) so that a change in how the body is built cannot slip through. RFC 6749 §5.2 with
OAuth 2.1 §3.2.1: a client that is not authenticated learns nothing about its grant's
parameters (invalid_client first), an unknown grant_type is answered before any client
authentication, and a client not registered for the grant hears that before any parameter error.
"""

from __future__ import annotations

import httpx
import pytest

from bastion.config import Settings
from tests.authserver._tokens import (
    RESOURCE,
    assert_error,
    assert_no_store,
    basic,
    code_grant,
    confidential_client,
    refresh,
)
from tests.support.flow import REDIRECT_URI, add_user, authorize, exchange, register

WRONG = {"Authorization": basic("wrong", "wrong")}


@pytest.fixture
async def alice(settings: Settings, app_client: httpx.AsyncClient) -> None:
    await add_user(settings)


def assert_exact(response: httpx.Response, expected: str) -> None:
    """A 200 token response whose body is exactly ``expected`` (RFC 6749 §5.1)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert_no_store(response)
    assert response.content == expected.encode()


@pytest.mark.parametrize("refreshes", [True, False], ids=["with-refresh", "without-refresh"])
async def test_authorization_code_response_bytes(
    settings: Settings, app_client: httpx.AsyncClient, alice: None, refreshes: bool
) -> None:
    """A client not registered for refresh_token gets no refresh_token member."""
    grants = ["authorization_code", "refresh_token"] if refreshes else ["authorization_code"]
    reg = await register(app_client, grant_types=grants)
    done = await authorize(app_client, reg["client_id"], resource=RESOURCE, scope="mcp:tools")
    response = await exchange(app_client, reg["client_id"], done)
    body = response.json()
    ttl = settings.tokens.access_token_ttl
    tail = f',"refresh_token":"{body["refresh_token"]}"' if refreshes else ""
    assert_exact(
        response,
        f'{{"access_token":"{body["access_token"]}","token_type":"Bearer","expires_in":{ttl},'
        f'"scope":"mcp:tools"{tail}}}',
    )


async def test_refresh_response_bytes_and_repeat_within_the_window(
    settings: Settings, app_client: httpx.AsyncClient, alice: None
) -> None:
    """A repeat within tokens.refresh_reuse_window answers the successor already issued."""
    grant = await code_grant(app_client)
    ttl = settings.tokens.access_token_ttl
    first = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    body = first.json()
    assert_exact(
        first,
        f'{{"access_token":"{body["access_token"]}","token_type":"Bearer","expires_in":{ttl},'
        f'"scope":"mcp:tools","refresh_token":"{body["refresh_token"]}"}}',
    )
    again = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    repeated = again.json()
    assert repeated["refresh_token"] == body["refresh_token"]
    assert_exact(
        again,
        f'{{"access_token":"{repeated["access_token"]}","token_type":"Bearer",'
        f'"expires_in":{ttl},"scope":"mcp:tools","refresh_token":"{body["refresh_token"]}"}}',
    )


async def test_client_credentials_response_bytes(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    service = await confidential_client(settings)
    response = await app_client.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": RESOURCE, "scope": "mcp:tools"},
        headers=service.authorization,
    )
    body = response.json()
    ttl = settings.tokens.access_token_ttl
    assert_exact(
        response,
        f'{{"access_token":"{body["access_token"]}","token_type":"Bearer","expires_in":{ttl},'
        '"scope":"mcp:tools"}',
    )


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"grant_type": "authorization_code"}, id="code-missing"),
        pytest.param(
            {"grant_type": "authorization_code", "code": "c", "resource": [RESOURCE, RESOURCE]},
            id="code-two-resources",
        ),
        pytest.param({"grant_type": "refresh_token"}, id="refresh-token-missing"),
        pytest.param(
            {"grant_type": "refresh_token", "refresh_token": "r", "resource": [RESOURCE] * 2},
            id="refresh-two-resources",
        ),
        pytest.param({"grant_type": "client_credentials", "scope": "a\\b"}, id="cc-bad-scope"),
        pytest.param({"grant_type": "client_credentials"}, id="cc-no-resource"),
    ],
)
async def test_an_unauthenticated_client_gets_invalid_client_before_parameter_errors(
    settings: Settings, app_client: httpx.AsyncClient, form: dict[str, str | list[str]]
) -> None:
    """OAuth 2.1 §3.2.1: the client is authenticated before its request is looked at; here a
    client registered for every grant sends a wrong secret."""
    known = await confidential_client(
        settings,
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        redirect_uris=[REDIRECT_URI],
    )
    wrong = {"Authorization": basic(known.client_id, "wrong")}
    response = await app_client.post("/token", data=form, headers=wrong)
    assert_error(response, 401, "invalid_client")


async def test_an_unknown_grant_type_is_answered_before_client_authentication(
    app_client: httpx.AsyncClient,
) -> None:
    response = await app_client.post("/token", data={"grant_type": "password"}, headers=WRONG)
    body = assert_error(response, 400, "unsupported_grant_type")
    assert body["error_description"] == (
        "grant_type password is not supported; use one of authorization_code, refresh_token, "
        "client_credentials"
    )


async def test_a_missing_grant_type_is_answered_before_client_authentication(
    app_client: httpx.AsyncClient,
) -> None:
    response = await app_client.post("/token", data={"code": "c"}, headers=WRONG)
    body = assert_error(response, 400, "invalid_request")
    assert body["error_description"] == "grant_type is required"


@pytest.mark.parametrize(
    ("form", "description"),
    [
        pytest.param({"grant_type": "authorization_code"}, "code is required", id="code"),
        pytest.param(
            {"grant_type": "authorization_code", "code": "c", "resource": [RESOURCE] * 2},
            "send one resource per request",
            id="code-resources",
        ),
        pytest.param({"grant_type": "refresh_token"}, "refresh_token is required", id="refresh"),
        pytest.param(
            {"grant_type": "refresh_token", "refresh_token": "r", "resource": [RESOURCE] * 2},
            "send one resource per request",
            id="refresh-resources",
        ),
    ],
)
async def test_parameter_errors_of_an_authenticated_client(
    app_client: httpx.AsyncClient, form: dict[str, str | list[str]], description: str
) -> None:
    """RFC 6749 §5.2: the descriptions say which parameter is wrong."""
    reg = await register(app_client)
    response = await app_client.post("/token", data={**form, "client_id": reg["client_id"]})
    body = response.json()
    assert body["error_description"] == description, body
    error = "invalid_target" if "resource" in description else "invalid_request"
    assert_error(response, 400, error)


async def test_a_client_not_registered_for_the_grant_hears_it_before_parameter_errors(
    app_client: httpx.AsyncClient,
) -> None:
    reg = await register(app_client, grant_types=["authorization_code"])
    response = await app_client.post(
        "/token", data={"grant_type": "refresh_token", "client_id": reg["client_id"]}
    )
    body = assert_error(response, 400, "unauthorized_client")
    assert body["error_description"] == "this client is not registered for the refresh_token grant"
