"""Malformed token requests: every one is a 4xx carrying an exact RFC 6749 §5.2 error body.

RFC 6749 §3.2 (POST, application/x-www-form-urlencoded, parameters sent once), §5.2 (error
response), OAuth 2.1 §3.2.2; nothing half-written remains after a refused request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bastion.config import Settings
from tests.authserver._tokens import (
    RESOURCE,
    TOKEN_ERRORS,
    assert_error,
    code_grant,
    refresh,
    row_counts,
)
from tests.support.flow import add_user, authorize, exchange, register

FORM = {"content-type": "application/x-www-form-urlencoded"}


async def test_missing_grant_type_is_invalid_request(app_client: httpx.AsyncClient) -> None:
    """RFC 6749 §5.2: a required parameter is missing."""
    response = await app_client.post("/token", data={"client_id": "x", "code": "y"})
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "implicit",
        "token",
        "code",
        "AUTHORIZATION_CODE",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ],
)
async def test_a08_unsupported_grant_type_is_refused(
    app_client: httpx.AsyncClient, grant_type: str
) -> None:
    """OAuth 2.1 §10.1, RFC 9700 §2.4: no password or implicit grant; any grant_type the server
    does not implement (compared case-sensitively) -> unsupported_grant_type."""
    public = await register(app_client)
    response = await app_client.post(
        "/token",
        data={
            "grant_type": grant_type,
            "client_id": public["client_id"],
            "username": "alice",
            "password": "pw",
        },
    )
    assert_error(response, 400, "unsupported_grant_type")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/json", b'{"grant_type": "client_credentials"}', id="json"),
        pytest.param("text/plain", b"grant_type=client_credentials", id="text-plain"),
        pytest.param(None, b"grant_type=client_credentials", id="no-content-type"),
        pytest.param(
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
            b"client_credentials\r\n--x--\r\n",
            id="multipart",
        ),
    ],
)
async def test_body_that_is_not_form_urlencoded_is_invalid_request(
    app_client: httpx.AsyncClient, content_type: str | None, body: bytes
) -> None:
    """RFC 6749 §3.2, §4.1.3: parameters use application/x-www-form-urlencoded."""
    headers = {"content-type": content_type} if content_type else {}
    response = await app_client.post("/token", content=body, headers=headers)
    assert_error(response, 400, "invalid_request")


async def test_form_content_type_with_a_charset_is_parsed(app_client: httpx.AsyncClient) -> None:
    """A media type parameter (charset) does not change the media type: the body is read, so the
    error is about the grant, not the encoding."""
    response = await app_client.post(
        "/token",
        content=b"grant_type=password",
        headers={"content-type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert_error(response, 400, "unsupported_grant_type")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"grant_type=client_credentials&grant_type=client_credentials", id="grant"),
        pytest.param(b"grant_type=authorization_code&code=a&code=b&client_id=c", id="code"),
        pytest.param(b"grant_type=refresh_token&refresh_token=r&client_id=a&client_id=b", id="id"),
        pytest.param(b"grant_type=client_credentials&scope=a&scope=b", id="scope"),
    ],
)
async def test_repeated_parameter_is_invalid_request(
    app_client: httpx.AsyncClient, body: bytes
) -> None:
    """RFC 6749 §3.2: request and response parameters MUST NOT be included more than once."""
    response = await app_client.post("/token", content=body, headers=FORM)
    assert_error(response, 400, "invalid_request")


async def test_oversized_body_is_413_with_an_error_body(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """A body over ``max_body_bytes`` is refused before it is parsed, with a JSON error body."""
    body = b"grant_type=client_credentials&scope=" + b"a" * settings.max_body_bytes
    response = await app_client.post("/token", content=body, headers=FORM)
    assert_error(response, 413, "invalid_request")


async def test_oversized_streamed_body_without_length_is_413(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """A chunked body (no Content-Length) is counted as it arrives and refused past the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"grant_type=client_credentials&scope="
        for _ in range(settings.max_body_bytes // 4096 + 2):
            yield b"a" * 4096

    response = await app_client.post("/token", content=chunks(), headers=FORM)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "invalid_request")


async def test_non_numeric_content_length_is_invalid_request(
    app_client: httpx.AsyncClient,
) -> None:
    """RFC 9110 §8.6: Content-Length is digits; anything else is a malformed request."""
    request = app_client.build_request(
        "POST", "/token", content=b"grant_type=password", headers=FORM
    )
    request.headers["content-length"] = "nineteen"
    response = await app_client.send(request)
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"grant_type=client_credentials&scope=\xff\xfe", id="invalid-utf8"),
        pytest.param(b"\xc3\x28=\xa0\xa1", id="invalid-utf8-key"),
        pytest.param(b"\x00\x01\x02\x03", id="control-bytes"),
        pytest.param(b"&&&===&&&", id="separators"),
        pytest.param(b"%%%%=%zz", id="bad-escapes"),
        pytest.param(b"grant_type", id="name-without-value"),
        pytest.param(b"grant_type=", id="empty-value"),
        pytest.param(b"=client_credentials", id="value-without-name"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b"&".join(b"p%d=v" % i for i in range(150)), id="too-many-fields"),
    ],
)
async def test_garbage_body_is_invalid_request(app_client: httpx.AsyncClient, body: bytes) -> None:
    """RFC 6749 §5.2: a body that is not a usable form (bad UTF-8, no grant_type, far too many
    fields) is invalid_request, never a server error."""
    response = await app_client.post("/token", content=body, headers=FORM)
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("credentials", [b"\xe9t\xe9", b"YWJj\xff", b"\x80"])
async def test_basic_credentials_with_non_ascii_bytes_are_invalid_client(
    app_client: httpx.AsyncClient, credentials: bytes
) -> None:
    """Found by the fuzzer (tests/fuzz): HTTP allows obs-text bytes in a header value; a Basic
    header carrying them is not base64, so RFC 6749 §5.2 invalid_client with a Basic challenge,
    not a server error."""
    response = await app_client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": b"Basic " + credentials},
    )
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_token_endpoint_accepts_only_post(app_client: httpx.AsyncClient, method: str) -> None:
    """RFC 6749 §3.2: the client MUST use POST; other methods -> 405 naming POST in Allow."""
    response = await app_client.request(method, "/token?grant_type=client_credentials")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/token"), ("GET", "/introspect"), ("GET", "/revoke"), ("POST", "/register/x")],
)
async def test_wrong_method_error_is_not_cached(
    app_client: httpx.AsyncClient, method: str, path: str
) -> None:
    """Found by the fuzzer (tests/fuzz): the 405 error of the back-channel endpoints is a JSON
    error like the others, so it carries Cache-Control: no-store (RFC 6749 §5.1, §5.2)."""
    response = await app_client.request(method, path)
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"


# Property: arbitrary forms never cause a server error -------------------------------------

CLIENT = "<registered public client>"
NAMES = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
    "resource",
    "client_assertion",
    "client_assertion_type",
]
VALUES = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    CLIENT,
    RESOURCE,
    "mcp:tools",
    "mcp:tools mcp:prompts",
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "a" * 43,
    "http://127.0.0.1:53682/callback",
]
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
forms = st.dictionaries(
    st.sampled_from(NAMES) | text,
    st.lists(st.sampled_from(VALUES) | text, min_size=1, max_size=2),
    max_size=8,
)
headers = st.none() | st.builds(
    lambda scheme, value: f"{scheme} {value}",
    st.sampled_from(["Basic", "Bearer", "basic", "Digest"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
)


@pytest.fixture
async def public_client(app_client: httpx.AsyncClient) -> str:
    reg = await register(app_client)
    client_id: str = reg["client_id"]
    return client_id


@hypothesis_settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(form=forms, authorization=headers)
async def test_arbitrary_forms_never_cause_a_server_error(
    app_client: httpx.AsyncClient,
    public_client: str,
    form: dict[str, list[str]],
    authorization: str | None,
) -> None:
    """RFC 6749 §5.2: whatever the form holds, the answer is a 4xx with a JSON object whose
    ``error`` is one of the token endpoint's error codes."""
    data: dict[str, Any] = {
        name: [public_client if v == CLIENT else v for v in values] for name, values in form.items()
    }
    sent = {"Authorization": authorization} if authorization else {}
    response = await app_client.post("/token", data=data, headers=sent)
    assert response.status_code in (400, 401), response.text
    body = response.json()
    assert isinstance(body, dict)
    assert body["error"] in TOKEN_ERRORS, body
    assert isinstance(body.get("error_description", ""), str)
    if response.status_code == 401:
        assert "www-authenticate" in response.headers


# Nothing half-written --------------------------------------------------------------------


@pytest.fixture
async def alice(settings: Settings, app_client: httpx.AsyncClient) -> None:
    await add_user(settings)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"code_verifier": "b" * 43}, id="wrong-verifier"),
        pytest.param({"resource": "http://localhost:9001/other"}, id="other-resource"),
        pytest.param({"redirect_uri": "http://127.0.0.1:53682/elsewhere"}, id="other-redirect"),
    ],
)
async def test_failed_code_exchange_leaves_no_token_family(
    settings: Settings, app_client: httpx.AsyncClient, alice: None, bad: dict[str, str]
) -> None:
    """A refused code exchange stores no family, refresh token or access token record; the code
    itself is spent (OAuth 2.1 §4.1.3: a code is used once, successfully or not)."""
    reg = await register(app_client)
    done = await authorize(app_client, reg["client_id"])
    response = await exchange(app_client, reg["client_id"], done, **bad)
    assert response.status_code == 400, response.text
    assert await row_counts(settings) == {
        "authorization_codes": 1,
        "token_families": 0,
        "refresh_tokens": 0,
        "family_access_tokens": 0,
    }
    retry = await exchange(app_client, reg["client_id"], done)
    assert_error(retry, 400, "invalid_grant")
    assert (await row_counts(settings))["token_families"] == 0


async def test_failed_refresh_adds_no_token(
    settings: Settings, app_client: httpx.AsyncClient, alice: None
) -> None:
    """A refused refresh (scope escalation) issues nothing: no new refresh token, no access
    token record."""
    grant = await code_grant(app_client)
    before = await row_counts(settings)
    response = await refresh(
        app_client, grant.client_id, grant.tokens["refresh_token"], scope="mcp:prompts"
    )
    assert_error(response, 400, "invalid_scope")
    assert await row_counts(settings) == before
