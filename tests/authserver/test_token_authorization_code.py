"""The authorization_code grant at the token endpoint.

OAuth 2.1 §4.1.3 (token request checks), RFC 6749 §4.1.3 and §5.1 (response), RFC 7636 §4.6
(code_verifier), RFC 8707 §2.2 (resource at the token endpoint), RFC 9700 §4.2.4 (code replay).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bastion.config import ResourceSettings, Settings
from tests.authserver._tokens import (
    RESOURCE,
    FakeClock,
    assert_error,
    assert_no_store,
    code_grant,
    confidential_client,
    introspect,
    refresh,
)
from tests.support.asgi import running
from tests.support.flow import REDIRECT_URI, Authorized, add_user, authorize, exchange, register


@pytest.fixture
async def alice(settings: Settings, app_client: httpx.AsyncClient) -> None:
    """The resource owner every flow logs in as (added once the app has migrated the database)."""
    await add_user(settings)


async def authorized(client: httpx.AsyncClient, **metadata: object) -> tuple[str, Authorized]:
    """Register a public client and run the authorization request; the code is not redeemed."""
    reg = await register(client, **metadata)
    return reg["client_id"], await authorize(client, reg["client_id"])


async def test_a01_code_exchange_answers_a_bearer_token_response(
    settings: Settings, app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 6749 §5.1, OAuth 2.1 §3.2.3: access_token, token_type Bearer, expires_in, scope and a
    refresh token for a client registered for the refresh_token grant; never cached."""
    reg = await register(app_client)
    done = await authorize(app_client, reg["client_id"])
    response = await exchange(app_client, reg["client_id"], done)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert_no_store(response)
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.tokens.access_token_ttl
    assert body["scope"] == "mcp:tools"
    assert isinstance(body["access_token"], str)
    assert body["access_token"].count(".") == 2
    assert isinstance(body["refresh_token"], str)
    assert len(body["refresh_token"]) >= 43


async def test_no_refresh_token_for_a_client_without_the_refresh_token_grant(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 6749 §5.1: refresh_token is OPTIONAL; bastion issues one only to clients registered for
    the refresh_token grant (RFC 7591 §2 grant_types)."""
    grant = await code_grant(app_client, grant_types=["authorization_code"])
    assert "refresh_token" not in grant.tokens
    assert grant.tokens["token_type"] == "Bearer"


async def test_a08_reused_code_is_refused_and_revokes_its_tokens(
    settings: Settings, app_client: httpx.AsyncClient, alice: None
) -> None:
    """OAuth 2.1 §4.1.3, RFC 9700 §4.2.4: a code works once; a second redemption is invalid_grant
    and the tokens issued on the first one are revoked."""
    resource_server = await confidential_client(settings, introspects=["*"])
    grant = await code_grant(app_client)
    first = grant.tokens
    before = await introspect(app_client, resource_server, first["access_token"])
    assert before["active"] is True

    again = await exchange(app_client, grant.client_id, grant.authorized)
    assert_error(again, 400, "invalid_grant")

    after = await introspect(app_client, resource_server, first["access_token"])
    assert after == {"active": False}
    refused = await refresh(app_client, grant.client_id, first["refresh_token"])
    assert_error(refused, 400, "invalid_grant")


async def test_a08_wrong_code_verifier_is_invalid_grant(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 7636 §4.6: a verifier whose S256 hash is not the challenge -> invalid_grant."""
    client_id, done = await authorized(app_client)
    other = "A" * 43
    response = await exchange(app_client, client_id, done, code_verifier=other)
    assert_error(response, 400, "invalid_grant")


async def test_a08_missing_code_verifier_is_invalid_request(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """OAuth 2.1 §4.1.3: code_verifier is required when the code was issued with a challenge;
    its absence is a missing parameter (RFC 6749 §5.2 invalid_request)."""
    client_id, done = await authorized(app_client)
    response = await app_client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": done.params["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": client_id,
        },
    )
    assert_error(response, 400, "invalid_request")


BAD_VERIFIERS = {
    "42 characters": "a" * 42,
    "129 characters": "a" * 129,
    "plus sign": "a" * 42 + "+",
    "slash": "a" * 42 + "/",
    "equals sign": "a" * 42 + "=",
    "space": "a" * 42 + " ",
    "non-ASCII letter": "a" * 42 + "\u00e9",
}


async def test_a08_verifier_outside_the_unreserved_charset_is_invalid_grant(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 7636 §4.1: code_verifier = 43*128unreserved (ALPHA / DIGIT / "-" / "." / "_" / "~");
    anything else cannot match the challenge -> invalid_grant."""
    reg = await register(app_client)
    for label, verifier in BAD_VERIFIERS.items():
        done = await authorize(app_client, reg["client_id"])
        response = await exchange(app_client, reg["client_id"], done, code_verifier=verifier)
        assert response.status_code == 400, label
        assert_error(response, 400, "invalid_grant")


async def test_a07_redirect_uri_differing_from_the_authorization_request_is_invalid_grant(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """OAuth 2.1 §4.1.3, RFC 6749 §4.1.3: redirect_uri must be identical to the one used in the
    authorization request, even when the other value is also registered."""
    other = "http://127.0.0.1:53682/other"
    client_id, done = await authorized(app_client, redirect_uris=[REDIRECT_URI, other])
    response = await exchange(app_client, client_id, done, redirect_uri=other)
    assert_error(response, 400, "invalid_grant")


async def test_a07_redirect_uri_sent_when_authorizing_must_be_repeated(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """OAuth 2.1 §4.1.3: redirect_uri is REQUIRED in the token request when it was included in
    the authorization request, even for a client with a single registered redirect URI."""
    client_id, done = await authorized(app_client)
    data = {
        "grant_type": "authorization_code",
        "code": done.params["code"],
        "code_verifier": done.verifier,
        "client_id": client_id,
    }
    response = await app_client.post("/token", data=data)
    assert_error(response, 400, "invalid_request")


async def test_code_issued_to_another_client_is_invalid_grant(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """OAuth 2.1 §4.1.3: the code must have been issued to the client that redeems it."""
    _, done = await authorized(app_client)
    thief = await register(app_client)
    response = await exchange(app_client, thief["client_id"], done)
    assert_error(response, 400, "invalid_grant")


async def test_expired_code_is_invalid_grant(settings: Settings) -> None:
    """RFC 6749 §4.1.2, §5.2: an expired authorization code -> invalid_grant (code_ttl)."""
    clock = FakeClock()
    async with running(settings, clock=clock) as client:
        await add_user(settings)
        client_id, done = await authorized(client)
        clock.advance(settings.tokens.code_ttl + 1)
        response = await exchange(client, client_id, done)
    assert_error(response, 400, "invalid_grant")


async def test_code_just_before_expiry_is_still_redeemed(settings: Settings) -> None:
    """The boundary of the expiry check: one second before code_ttl elapses the code works."""
    clock = FakeClock()
    async with running(settings, clock=clock) as client:
        await add_user(settings)
        client_id, done = await authorized(client)
        clock.advance(settings.tokens.code_ttl - 1)
        response = await exchange(client, client_id, done)
    assert response.status_code == 200, response.text


async def test_unknown_code_is_invalid_grant(app_client: httpx.AsyncClient) -> None:
    """RFC 6749 §5.2: a code the server never issued -> invalid_grant."""
    reg = await register(app_client)
    response = await app_client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": "not-a-code",
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "a" * 43,
            "client_id": reg["client_id"],
        },
    )
    assert_error(response, 400, "invalid_grant")


async def test_missing_code_is_invalid_request(app_client: httpx.AsyncClient) -> None:
    """RFC 6749 §4.1.3, §5.2: code is required."""
    reg = await register(app_client)
    response = await app_client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "a" * 43,
            "client_id": reg["client_id"],
        },
    )
    assert_error(response, 400, "invalid_request")


async def test_missing_client_id_for_a_public_client_is_invalid_client(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """OAuth 2.1 §4.1.3: a public client identifies itself with client_id; without it (and no
    other credentials) the client is unknown -> 401 invalid_client."""
    _, done = await authorized(app_client)
    response = await app_client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": done.params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": done.verifier,
        },
    )
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.fixture
def two_resources(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        resources=[
            ResourceSettings(uri=RESOURCE, name="demo", scopes=["mcp:tools"]),
            ResourceSettings(uri="http://localhost:9002/mcp", name="other", scopes=["mcp:tools"]),
        ]
    )


async def test_resource_differing_from_the_authorized_one_is_invalid_target(
    two_resources: Settings,
) -> None:
    """RFC 8707 §2.2: the token request's resource must be one the grant covers; a different
    (even configured) resource -> invalid_target."""
    async with running(two_resources) as client:
        await add_user(two_resources)
        client_id, done = await authorized(client)
        response = await exchange(
            client,
            client_id,
            done,
            resource="http://localhost:9002/mcp",
        )
    assert_error(response, 400, "invalid_target")


async def test_resource_equal_to_the_authorized_one_is_accepted(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 8707 §2.2: repeating the authorized resource at the token endpoint is fine."""
    client_id, done = await authorized(app_client)
    response = await exchange(app_client, client_id, done, resource=RESOURCE)
    assert response.status_code == 200, response.text


async def test_two_resource_values_are_invalid_target(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 8707 §2: bastion issues single-audience tokens, so several resource values in one token
    request are refused with invalid_target."""
    client_id, done = await authorized(app_client)
    response = await app_client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": done.params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": done.verifier,
            "client_id": client_id,
            "resource": [RESOURCE, "http://localhost:9002/mcp"],
        },
    )
    assert_error(response, 400, "invalid_target")


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param(RESOURCE + "#frag", id="fragment"),
        pytest.param("http://localhost:99999/mcp", id="port-out-of-range"),
        pytest.param("/mcp", id="relative"),
    ],
)
async def test_malformed_resource_is_invalid_target(
    app_client: httpx.AsyncClient, alice: None, resource: str
) -> None:
    """RFC 8707 §2: resource is an absolute URI without a fragment; anything else at the token
    endpoint -> invalid_target (never a server error)."""
    client_id, done = await authorized(app_client)
    response = await exchange(app_client, client_id, done, resource=resource)
    assert_error(response, 400, "invalid_target")
