"""Dynamic Client Registration (RFC 7591 §2, §3) and its management protocol (RFC 7592).

Checklist A04 (DCR offered, deprecated by MCP 2026-07-28) and the server side of C08
(application_type decides which redirect URIs are allowed). Error bodies are asserted exactly.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bastion.authserver.app import housekeeping
from bastion.config import Settings
from bastion.oauth import pkce
from bastion.store import schema
from tests.authserver.browser_steps import (
    MovableClock,
    authorization_params,
    count_rows,
    preregister,
)
from tests.support.asgi import running
from tests.support.flow import REDIRECT_URI, add_user, authorize, exchange, register

ISSUER = "http://localhost"
NATIVE = {"redirect_uris": [REDIRECT_URI], "application_type": "native"}
EC_JWKS = {
    "keys": [
        {
            "kty": "EC",
            "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            "kid": "k1",
        }
    ]
}
INITIAL_TOKEN = "initial-access-token-0123456789abcdef"


async def post_register(client: httpx.AsyncClient, body: Any, **kwargs: Any) -> httpx.Response:
    return await client.post("/register", json=body, **kwargs)


def assert_error(response: httpx.Response, status: int, body: dict[str, str]) -> None:
    assert response.status_code == status, response.text
    assert response.json() == body
    assert response.headers["cache-control"] == "no-store"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Successful registration (RFC 7591 §3.2.1)


async def test_a04_public_client_registration_answers_201_without_a_secret(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 7591 §3.2.1: 201 with client_id, client_id_issued_at and the registered metadata;
    RFC 7592 §3: registration_access_token and registration_client_uri. A public client gets no
    client_secret and no client_secret_expires_at."""
    clock = MovableClock()
    settings = make_settings()
    async with running(settings, clock=clock) as client:
        body = {
            "client_name": "Desktop app",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "application_type": "native",
        }
        response = await post_register(client, body)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    client_id = data["client_id"]
    assert isinstance(client_id, str)
    assert len(client_id) >= 16
    assert data["client_id_issued_at"] == clock.now
    assert data["registration_client_uri"] == f"{ISSUER}/register/{client_id}"
    assert len(data["registration_access_token"]) >= 32
    assert "client_secret" not in data
    assert "client_secret_expires_at" not in data
    for key, value in body.items():
        assert data[key] == value
    assert data["response_types"] == ["code"]


async def test_a04_defaults_are_client_secret_basic_and_the_authorization_code_grant(
    app_client: httpx.AsyncClient,
) -> None:
    """RFC 7591 §2: token_endpoint_auth_method defaults to client_secret_basic, grant_types to
    authorization_code, response_types to code. A secret-based client gets client_secret and
    client_secret_expires_at (0: never) and can authenticate with it."""
    response = await post_register(app_client, {"redirect_uris": ["https://app.example.com/cb"]})
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["token_endpoint_auth_method"] == "client_secret_basic"
    assert data["grant_types"] == ["authorization_code"]
    assert data["response_types"] == ["code"]
    assert data["application_type"] == "web"
    assert data["client_secret_expires_at"] == 0
    assert len(data["client_secret"]) >= 32
    check = await app_client.post(
        "/introspect",
        data={"token": "not-a-token"},
        auth=(data["client_id"], data["client_secret"]),
    )
    assert check.status_code == 200
    assert check.json() == {"active": False}
    wrong = await app_client.post(
        "/introspect", data={"token": "x"}, auth=(data["client_id"], "wrong-secret")
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("extra", "has_secret"),
    [
        ({"token_endpoint_auth_method": "client_secret_post"}, True),
        ({"token_endpoint_auth_method": "client_secret_basic"}, True),
        ({"token_endpoint_auth_method": "private_key_jwt", "jwks": EC_JWKS}, False),
        ({"token_endpoint_auth_method": "none"}, False),
    ],
)
async def test_a04_client_secret_is_issued_only_for_secret_based_methods(
    app_client: httpx.AsyncClient, extra: dict[str, Any], has_secret: bool
) -> None:
    """RFC 7591 §3.2.1: client_secret (and then client_secret_expires_at, REQUIRED with it) only
    for methods that use one."""
    response = await post_register(app_client, {**NATIVE, **extra})
    assert response.status_code == 201, response.text
    data = response.json()
    assert ("client_secret" in data) is has_secret
    assert ("client_secret_expires_at" in data) is has_secret
    assert data["token_endpoint_auth_method"] == extra["token_endpoint_auth_method"]


async def test_a04_self_registered_machine_client_is_refused_naming_the_grant(
    app_client: httpx.AsyncClient,
) -> None:
    """Machine access is never self-service: anonymous registration of a client_credentials
    client is refused with RFC 7591 §3.2.2 invalid_client_metadata naming the grant, and
    nothing is stored."""
    response = await post_register(
        app_client,
        {"grant_types": ["client_credentials"], "response_types": [], "client_name": "Robot"},
    )
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "invalid_client_metadata",
        "error_description": "grant_types: client_credentials is not available to "
        "self-registered clients; machine clients are made by an operator (bastion clients add), "
        "or registered with an initial access token that allows them "
        "(bastion registration-tokens add)",
    }


# Redirect URI rules (RFC 7591 §2, OAuth 2.1 §2.3.1, RFC 8252 §7)


@pytest.mark.parametrize(
    ("uri", "application_type", "description"),
    [
        (
            "http://app.example.com/cb",
            "web",
            "redirect URI 'http://app.example.com/cb' uses http on a non-loopback host; use "
            "https, or http only with localhost, 127.0.0.1 or [::1]",
        ),
        (
            "https://app.example.com/cb#section",
            "web",
            "redirect URI 'https://app.example.com/cb#section' must not contain a fragment "
            "(RFC 6749 3.1.2)",
        ),
        (
            "http://127.0.0.1:5000/cb#x",
            "native",
            "redirect URI 'http://127.0.0.1:5000/cb#x' must not contain a fragment "
            "(RFC 6749 3.1.2)",
        ),
        ("javascript:alert(1)", "web", "redirect URI scheme 'javascript' is not allowed"),
        ("JavaScript:alert(1)", "native", "redirect URI scheme 'javascript' is not allowed"),
        ("data:text/html,hello", "native", "redirect URI scheme 'data' is not allowed"),
        ("file:///etc/passwd", "native", "redirect URI scheme 'file' is not allowed"),
        ("vbscript:msgbox", "native", "redirect URI scheme 'vbscript' is not allowed"),
        (
            "com.example.app:/callback",
            "web",
            "redirect URI scheme 'com.example.app' is not allowed; use https, loopback http, "
            "or (native clients) a reverse-domain private-use scheme",
        ),
        (
            "myapp:/callback",
            "native",
            "redirect URI scheme 'myapp' is not allowed; use https, loopback http, or (native "
            "clients) a reverse-domain private-use scheme",
        ),
        ("/relative/callback", "web", "redirect URI '/relative/callback' is not an absolute URI"),
        ("https:///no-host", "web", "redirect URI 'https:///no-host' has no host"),
        ("http://[::1", "native", "redirect URI 'http://[::1' is not a valid URI"),
        (
            "https://app.example.com/a b",
            "web",
            "redirect URI 'https://app.example.com/a b' contains whitespace",
        ),
        (
            "https://app.example.com/\x00",
            "web",
            "redirect URI 'https://app.example.com//x00' contains control characters",
        ),
    ],
)
async def test_a07_redirect_uri_rules_answer_invalid_redirect_uri(
    app_client: httpx.AsyncClient, uri: str, application_type: str, description: str
) -> None:
    """RFC 7591 §3.2.2 invalid_redirect_uri: https, http only on loopback, no fragment, never
    javascript:, data:, file: or vbscript:, private-use schemes only for native clients."""
    body = {
        "redirect_uris": [uri],
        "token_endpoint_auth_method": "none",
        "application_type": application_type,
    }
    response = await post_register(app_client, body)
    assert_error(response, 400, {"error": "invalid_redirect_uri", "error_description": description})


@pytest.mark.parametrize(
    "uri",
    [
        "com.example.app:/callback",
        "http://127.0.0.1/callback",
        "http://[::1]:8080/callback",
        "http://localhost:3000/callback",
        "https://app.example.com/cb?tenant=blue",
    ],
)
async def test_c08_native_client_may_register_private_use_scheme_and_loopback(
    app_client: httpx.AsyncClient, uri: str
) -> None:
    """RFC 8252 §7.1 and §7.3, OpenID Connect Registration §2 application_type native."""
    response = await post_register(
        app_client,
        {
            "redirect_uris": [uri],
            "application_type": "native",
            "token_endpoint_auth_method": "none",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["redirect_uris"] == [uri]


@pytest.mark.parametrize(
    ("body", "error", "description"),
    [
        (
            {"token_endpoint_auth_method": "none"},
            "invalid_redirect_uri",
            "redirect_uris is required for the authorization_code grant",
        ),
        (
            {"redirect_uris": REDIRECT_URI},
            "invalid_redirect_uri",
            "redirect_uris must be an array of strings",
        ),
    ],
)
async def test_a04_missing_or_malformed_redirect_uris_are_refused(
    app_client: httpx.AsyncClient, body: dict[str, Any], error: str, description: str
) -> None:
    """RFC 7591 §2: redirect-based clients MUST register redirect URIs, as an array."""
    response = await post_register(app_client, body)
    assert_error(response, 400, {"error": error, "error_description": description})


# Invalid metadata (RFC 7591 §3.2.2)

UNSUPPORTED_GRANT = (
    "grant_types: unsupported {}; supported: authorization_code, refresh_token, "
    "client_credentials, urn:ietf:params:oauth:grant-type:jwt-bearer (implicit and password "
    "grants are not part of OAuth 2.1)"
)


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ({**NATIVE, "grant_types": ["implicit"]}, UNSUPPORTED_GRANT.format("implicit")),
        ({**NATIVE, "grant_types": ["password"]}, UNSUPPORTED_GRANT.format("password")),
        (
            {**NATIVE, "grant_types": ["authorization_code"], "response_types": ["token"]},
            "response_types: unsupported token; only 'code' is",
        ),
        (
            {
                "grant_types": ["client_credentials"],
                "response_types": [],
                "token_endpoint_auth_method": "none",
            },
            "grant_types: client_credentials requires a confidential client (not auth method none)",
        ),
        (
            {**NATIVE, "token_endpoint_auth_method": "private_key_jwt"},
            "jwks: private_key_jwt needs jwks or jwks_uri",
        ),
        (
            {
                **NATIVE,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": EC_JWKS,
                "jwks_uri": "https://app.example.com/jwks.json",
            },
            "jwks: jwks and jwks_uri must not both be present (RFC 7591 2)",
        ),
        (
            {
                **NATIVE,
                "token_endpoint_auth_method": "none",
                "jwks": EC_JWKS,
                "jwks_uri": "https://app.example.com/jwks.json",
            },
            "jwks: jwks and jwks_uri must not both be present (RFC 7591 2)",
        ),
        (
            {**NATIVE, "token_endpoint_auth_method": "private_key_jwt", "jwks": {"k": 1}},
            "jwks: must be a JWK Set with a 'keys' array",
        ),
        ({**NATIVE, "scope": "mcp:tools admin:all"}, "scope: unknown admin:all"),
        (
            {**NATIVE, "token_endpoint_auth_method": "client_secret_jwt"},
            "token_endpoint_auth_method: Input should be 'none', 'client_secret_basic', "
            "'client_secret_post' or 'private_key_jwt'",
        ),
        (
            {**NATIVE, "application_type": "desktop"},
            "application_type: Input should be 'web' or 'native'",
        ),
        (
            {**NATIVE, "client_id": "chosen-by-me"},
            "client_id and client_secret are assigned by the server",
        ),
        (
            {**NATIVE, "client_secret": "s3cret"},
            "client_id and client_secret are assigned by the server",
        ),
        ([REDIRECT_URI], "client metadata must be a JSON object"),
        ("just a string", "client metadata must be a JSON object"),
        (None, "client metadata must be a JSON object"),
    ],
)
async def test_a04_invalid_metadata_answers_invalid_client_metadata(
    app_client: httpx.AsyncClient, body: Any, description: str
) -> None:
    """RFC 7591 §3.2.2 invalid_client_metadata; OAuth 2.1 removes implicit and password; a
    client without credentials cannot use client_credentials; RFC 7591 §2: jwks and jwks_uri
    MUST NOT both be present; the server assigns client_id and client_secret."""
    response = await app_client.post(
        "/register", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert_error(
        response, 400, {"error": "invalid_client_metadata", "error_description": description}
    )


@pytest.mark.parametrize(
    ("content", "content_type", "description"),
    [
        (
            b"{not json",
            "application/json",
            "the body is not valid JSON: Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            b'{"a": "\xff"}',
            "application/json",
            "the body is not valid JSON: 'utf-8' codec "
            "can't decode byte 0xff in position 7: invalid start byte",
        ),
        (b'{"redirect_uris": []}', "text/plain", "send the body as application/json"),
        (
            b"redirect_uris=x",
            "application/x-www-form-urlencoded",
            "send the body as application/json",
        ),
    ],
)
async def test_a04_malformed_json_or_wrong_content_type_answers_invalid_request(
    app_client: httpx.AsyncClient, content: bytes, content_type: str, description: str
) -> None:
    """RFC 7591 §3.1: the request is a JSON document; anything else is malformed
    (invalid_request, RFC 6749 §5.2)."""
    response = await app_client.post(
        "/register", content=content, headers={"Content-Type": content_type}
    )
    assert_error(response, 400, {"error": "invalid_request", "error_description": description})


# Initial access token (RFC 7591 §3)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token"),
        {"Authorization": f"Basic {INITIAL_TOKEN}"},
        {"Authorization": "Bearer"},
    ],
)
async def test_a04_initial_access_token_is_required_when_configured(
    make_settings: Callable[..., Settings], headers: dict[str, str]
) -> None:
    """RFC 7591 §3: the server may require an initial access token; without the right one the
    answer is 401 invalid_token with a Bearer challenge (RFC 6750 §3)."""
    settings = make_settings(registration={"initial_access_token": INITIAL_TOKEN})
    async with running(settings) as client:
        refused = await post_register(client, NATIVE, headers=headers)
        sent_one = headers == bearer("wrong-token")
        assert_error(
            refused,
            401,
            {
                "error": "invalid_token",
                "error_description": (
                    "the initial access token is not valid (unknown, expired or used up)"
                    if sent_one
                    else "registration requires a valid initial access token"
                ),
            },
        )
        challenge = refused.headers["www-authenticate"]
        # RFC 6750 §3.1: no error code in the challenge when no credentials were sent at all.
        expected = "Bearer" if not headers else 'Bearer error="invalid_token"'
        assert challenge == expected
        accepted = await post_register(client, NATIVE, headers=bearer(INITIAL_TOKEN))
        assert accepted.status_code == 201, accepted.text


# Client configuration endpoint (RFC 7592)


@pytest.fixture
async def registered(app_client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(app_client, client_name="Managed app")


async def test_a04_get_returns_the_client_configuration(
    app_client: httpx.AsyncClient, registered: dict[str, Any]
) -> None:
    """RFC 7592 §2.1: GET with the registration access token returns the configuration."""
    response = await app_client.get(
        registered["registration_client_uri"],
        headers=bearer(registered["registration_access_token"]),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    for key in (
        "client_id",
        "client_id_issued_at",
        "client_name",
        "redirect_uris",
        "grant_types",
        "token_endpoint_auth_method",
        "registration_client_uri",
    ):
        assert data[key] == registered[key]


async def test_a04_put_replaces_the_metadata(
    app_client: httpx.AsyncClient, registered: dict[str, Any]
) -> None:
    """RFC 7592 §2.2: PUT replaces the metadata with what is sent; omitted fields are removed;
    the new redirect URI works and the old one no longer does."""
    new_redirect = "http://127.0.0.1:53682/new-callback"
    body = {
        "client_id": registered["client_id"],
        "redirect_uris": [new_redirect],
        "grant_types": ["authorization_code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        "registration_access_token": "ignored",
        "registration_client_uri": "ignored",
    }
    token = bearer(registered["registration_access_token"])
    response = await app_client.put(registered["registration_client_uri"], json=body, headers=token)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["redirect_uris"] == [new_redirect]
    assert data["grant_types"] == ["authorization_code"]
    assert "client_name" not in data
    assert data["registration_client_uri"] == registered["registration_client_uri"]
    shown = (await app_client.get(registered["registration_client_uri"], headers=token)).json()
    assert shown["redirect_uris"] == [new_redirect]
    assert "client_name" not in shown
    verifier = pkce.new_verifier()
    old = await app_client.get(
        "/authorize", params=authorization_params(registered["client_id"], verifier)
    )
    assert old.status_code == 400
    new = await app_client.get(
        "/authorize",
        params=authorization_params(registered["client_id"], verifier, redirect_uri=new_redirect),
    )
    assert new.status_code == 303


@pytest.mark.parametrize(
    ("change", "status", "body"),
    [
        (
            {"client_id": "another-id"},
            400,
            {
                "error": "invalid_request",
                "error_description": "the body's client_id must be the client's id (RFC 7592 2.2)",
            },
        ),
        (
            {"client_id": None},
            400,
            {
                "error": "invalid_request",
                "error_description": "the body's client_id must be the client's id (RFC 7592 2.2)",
            },
        ),
        (
            {"token_endpoint_auth_method": "client_secret_basic"},
            400,
            {
                "error": "invalid_client_metadata",
                "error_description": "token_endpoint_auth_method cannot change between secret "
                "and non-secret kinds; register a new client instead",
            },
        ),
        (
            {"token_endpoint_auth_method": "private_key_jwt", "jwks": EC_JWKS},
            400,
            {
                "error": "invalid_client_metadata",
                "error_description": "token_endpoint_auth_method cannot change between secret "
                "and non-secret kinds; register a new client instead",
            },
        ),
        (
            {"redirect_uris": ["http://attacker.example/cb"]},
            400,
            {
                "error": "invalid_redirect_uri",
                "error_description": "redirect URI 'http://attacker.example/cb' uses http on a "
                "non-loopback host; use https, or http only with localhost, 127.0.0.1 or [::1]",
            },
        ),
    ],
)
async def test_a04_put_refuses_another_client_id_an_auth_kind_change_or_bad_metadata(
    app_client: httpx.AsyncClient,
    registered: dict[str, Any],
    change: dict[str, Any],
    status: int,
    body: dict[str, str],
) -> None:
    """RFC 7592 §2.2: the client_id in the body MUST match; metadata is validated as at
    registration; changing between secret and non-secret authentication would need credentials
    the server cannot hand out here, so it is refused."""
    sent = {
        "client_id": registered["client_id"],
        "redirect_uris": registered["redirect_uris"],
        "grant_types": registered["grant_types"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        **change,
    }
    sent = {k: v for k, v in sent.items() if v is not None}
    token = bearer(registered["registration_access_token"])
    response = await app_client.put(registered["registration_client_uri"], json=sent, headers=token)
    assert_error(response, status, body)
    shown = (await app_client.get(registered["registration_client_uri"], headers=token)).json()
    assert shown["token_endpoint_auth_method"] == "none"
    assert shown["redirect_uris"] == registered["redirect_uris"]


async def test_a04_delete_removes_the_client(
    app_client: httpx.AsyncClient, registered: dict[str, Any]
) -> None:
    """RFC 7592 §2.3: DELETE answers 204; afterwards the client id is invalid everywhere and the
    registration access token no longer works."""
    token = bearer(registered["registration_access_token"])
    deleted = await app_client.delete(registered["registration_client_uri"], headers=token)
    assert deleted.status_code == 204
    assert deleted.content == b""
    again = await app_client.get(registered["registration_client_uri"], headers=token)
    assert again.status_code == 401
    at_token = await app_client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": "whatever",
            "client_id": registered["client_id"],
            "code_verifier": pkce.new_verifier(),
            "redirect_uri": REDIRECT_URI,
        },
    )
    assert at_token.status_code == 401
    assert at_token.json()["error"] == "invalid_client"
    page = await app_client.get(
        "/authorize", params=authorization_params(registered["client_id"], pkce.new_verifier())
    )
    assert page.status_code == 400
    assert "location" not in page.headers


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_a04_wrong_or_missing_registration_token_and_unknown_client_answer_the_same_401(
    app_client: httpx.AsyncClient, registered: dict[str, Any], method: str
) -> None:
    """RFC 7592 §2, §3: a wrong or missing token is 401 invalid_token; an unknown client id gets
    the same answer (RFC 7592 §2.1), so ids cannot be probed; one client's token does not open
    another's configuration."""
    other = await register(app_client)
    uri = registered["registration_client_uri"]
    attempts = [
        (uri, {}),
        (uri, bearer("wrong-token")),
        (uri, bearer(other["registration_access_token"])),
        (uri, {"Authorization": f"Basic {registered['registration_access_token']}"}),
        (f"{ISSUER}/register/no-such-client", bearer(registered["registration_access_token"])),
        (f"{ISSUER}/register/%00", bearer(registered["registration_access_token"])),
    ]
    expected = {
        "error": "invalid_token",
        "error_description": "the registration access token is not valid for this client",
    }
    for url, headers in attempts:
        kwargs: dict[str, Any] = {"headers": headers}
        if method == "PUT":
            kwargs["json"] = {**NATIVE, "client_id": registered["client_id"]}
        response = await app_client.request(method, url, **kwargs)
        assert_error(response, 401, expected)
        assert response.headers["www-authenticate"].startswith("Bearer")
    still = await app_client.get(uri, headers=bearer(registered["registration_access_token"]))
    assert still.status_code == 200


# Unused registrations expire (registration.unused_client_ttl)


async def test_a04_housekeeping_deletes_never_used_dynamic_clients_after_the_ttl(
    make_settings: Callable[..., Settings],
) -> None:
    """A dynamic client that never obtained a token is deleted once unused_client_ttl has
    passed; one that did obtain a token stays, and so do pre-registered clients and recent
    registrations."""
    settings = make_settings(registration={"unused_client_ttl": 3600})
    clock = MovableClock()
    async with running(settings, clock=clock) as client:
        await add_user(settings)
        unused = await register(client)
        used = await register(client)
        done = await authorize(client, used["client_id"])
        tokens = await exchange(client, used["client_id"], done)
        assert tokens.status_code == 200, tokens.text
        preregistered, _ = await preregister(settings)
        clock.advance(3601)
        recent = await register(client)
        await housekeeping(client.app.state.bastion)  # type: ignore[attr-defined]
        for reg, status in ((unused, 401), (used, 200), (recent, 200)):
            response = await client.get(
                reg["registration_client_uri"], headers=bearer(reg["registration_access_token"])
            )
            assert response.status_code == status, reg
        assert await count_rows(settings, schema.clients) == 3
        again = await client.get(
            "/authorize",
            params=authorization_params(unused["client_id"], pkce.new_verifier()),
        )
        assert again.status_code == 400
        kept = await client.get(
            "/authorize",
            params=authorization_params(preregistered, pkce.new_verifier()),
        )
        assert kept.status_code == 303


async def test_a04_a_shutdown_lets_the_sweep_under_way_finish(
    make_settings: Callable[..., Settings],
) -> None:
    """The sweep that starts with the server is not cut off by a shutdown that comes at once:
    it finishes its transaction (a sweep cancelled mid-statement left SQLite's driver thread
    answering an event loop that was closed by then)."""
    settings = make_settings(registration={"unused_client_ttl": 3600})
    clock = MovableClock()
    async with running(settings, clock=clock) as client:
        await register(client)
    clock.advance(3601)
    async with running(settings, clock=clock):
        pass  # started, swept, stopped
    assert await count_rows(settings, schema.clients) == 0


async def test_a04_unused_client_ttl_zero_keeps_registrations(
    make_settings: Callable[..., Settings],
) -> None:
    """registration.unused_client_ttl = 0 keeps unused registrations forever."""
    settings = make_settings(registration={"unused_client_ttl": 0})
    clock = MovableClock()
    async with running(settings, clock=clock) as client:
        await register(client)
        clock.advance(10 * 365 * 86400)
        await housekeeping(client.app.state.bastion)  # type: ignore[attr-defined]
    assert await count_rows(settings, schema.clients) == 1


async def test_l7_deeply_nested_json_is_400_not_a_500(live_as: tuple[str, Settings]) -> None:
    """40 KB of '[' at /register was a RecursionError: a 500 with a traceback. JSON from a
    request is nested at most 64 levels (also when Python could parse it), so it is 400
    invalid_request; the same in the payload of a private_key_jwt client assertion."""
    issuer, _ = live_as
    json_body = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=issuer) as http:
        for depth in (20_000, 500):
            response = await http.post(
                "/register", content=b"[" * depth + b"]" * depth, headers=json_body
            )
            assert response.status_code == 400, response.text
            assert response.json() == {
                "error": "invalid_request",
                "error_description": "the body is not valid JSON: JSON nested deeper than 64 "
                "levels",
            }
        payload = base64.urlsafe_b64encode(b"[" * 40_000).rstrip(b"=").decode()
        response = await http.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": f"eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln",
            },
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
