"""The token endpoint over real HTTP (uvicorn on loopback): every refusal pinned byte for byte,
status, body and headers, together with the success answer's headers.

The endpoint is served on its own path through the app's layers (request id, metrics, the
last-resort 500): these tests hold whatever path a request takes to exactly the answers the
RFCs prescribe (RFC 6749 §3.2, §5.1, §5.2; RFC 9449 §5 for DPoP), as real clients see them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings
from tests.authserver._tokens import Confidential, basic, confidential_client
from tests.support.live import free_port, serve

FORM = "application/x-www-form-urlencoded"
# Headers of every answer of the token endpoint besides the ones uvicorn adds.
UVICORN_HEADERS = {"date", "server"}
ANSWER_HEADERS = {"content-length", "content-type", "cache-control", "pragma", "x-request-id"}


@pytest.fixture
async def live(live_as: tuple[str, Settings]) -> tuple[str, Settings, Confidential]:
    issuer, settings = live_as
    return issuer, settings, await confidential_client(settings)


async def post(
    url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.request(method, url, content=body, headers=headers or {})


def refusal(
    response: httpx.Response, status: int, error: str, description: str, **extra: str
) -> None:
    """Exactly the RFC 6749 §5.2 answer: status, compact JSON body, no-store headers."""
    assert response.status_code == status, response.text
    assert (
        response.content
        == json.dumps(
            {"error": error, "error_description": description}, separators=(",", ":")
        ).encode()
    )
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert set(response.headers) - UVICORN_HEADERS == ANSWER_HEADERS | {k.lower() for k in extra}
    for name, value in extra.items():
        assert response.headers[name] == value


def cc(resource: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "resource": resource, **extra}


def form(params: dict[str, str] | list[tuple[str, str]]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(params).encode()


async def test_success_answer_headers_and_body(live: tuple[str, Settings, Confidential]) -> None:
    issuer, settings, client = live
    response = await post(
        f"{issuer}/token",
        form(cc(f"{issuer}/mcp", scope="mcp:tools")),
        {"Content-Type": FORM, "Authorization": basic(client.client_id, client.secret)},
    )
    assert response.status_code == 200, response.text
    assert set(response.headers) - UVICORN_HEADERS == ANSWER_HEADERS
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    ttl = settings.tokens.access_token_ttl
    assert (
        response.content
        == (
            f'{{"access_token":"{body["access_token"]}","token_type":"Bearer","expires_in":{ttl},'
            '"scope":"mcp:tools"}'
        ).encode()
    )
    assert int(response.headers["content-length"]) == len(response.content)


async def test_a_well_formed_request_id_is_echoed_on_answers_and_refusals(
    live: tuple[str, Settings, Confidential],
) -> None:
    issuer, _, client = live
    auth = {"Authorization": basic(client.client_id, client.secret), "X-Request-Id": "abc-123"}
    ok = await post(f"{issuer}/token", form(cc(f"{issuer}/mcp")), {"Content-Type": FORM, **auth})
    refused = await post(f"{issuer}/token", b"grant_type=password", {"Content-Type": FORM, **auth})
    assert ok.headers["x-request-id"] == refused.headers["x-request-id"] == "abc-123"
    fresh = await post(f"{issuer}/token", b"", {"Content-Type": FORM, "X-Request-Id": "a b"})
    assert len(fresh.headers["x-request-id"]) == 22


REFUSALS: list[tuple[str, bytes, dict[str, str], int, str, str, dict[str, str]]] = [
    (
        "wrong content type",
        b"grant_type=client_credentials",
        {"Content-Type": "text/plain"},
        400,
        "invalid_request",
        "send the parameters as application/x-www-form-urlencoded",
        {},
    ),
    (
        "no content type",
        b"grant_type=client_credentials",
        {},
        400,
        "invalid_request",
        "send the parameters as application/x-www-form-urlencoded",
        {},
    ),
    (
        "repeated grant_type",
        b"grant_type=client_credentials&grant_type=client_credentials",
        {"Content-Type": FORM},
        400,
        "invalid_request",
        "parameter grant_type is repeated; send it once",
        {},
    ),
    (
        "repeated scope, one empty",
        b"grant_type=client_credentials&scope=mcp%3Atools&scope=",
        {"Content-Type": FORM, "Authorization": "CLIENT"},
        200,
        "",
        "",
        {},
    ),
    (
        "repeated client_id",
        b"grant_type=client_credentials&client_id=a&client_id=b",
        {"Content-Type": FORM},
        400,
        "invalid_request",
        "parameter client_id is repeated; send it once",
        {},
    ),
    (
        "missing grant_type",
        b"scope=mcp%3Atools",
        {"Content-Type": FORM},
        400,
        "invalid_request",
        "grant_type is required",
        {},
    ),
    (
        "unknown grant_type",
        b"grant_type=password&username=a&password=b",
        {"Content-Type": FORM},
        400,
        "unsupported_grant_type",
        "grant_type password is not supported; use one of authorization_code, refresh_token, "
        "client_credentials",
        {},
    ),
    (
        "not UTF-8",
        b"grant_type=client_credentials&scope=\xff\xfe",
        {"Content-Type": FORM},
        400,
        "invalid_request",
        "the form body is not valid UTF-8 form encoding",
        {},
    ),
    (
        "NUL in a value",
        b"grant_type=client_credentials&scope=a%00b",
        {"Content-Type": FORM},
        400,
        "invalid_request",
        "a parameter contains a NUL character",
        {},
    ),
    (
        "no client authentication",
        b"grant_type=client_credentials",
        {"Content-Type": FORM},
        401,
        "invalid_client",
        "client authentication is required (or client_id for public clients)",
        {"WWW-Authenticate": 'Basic realm="bastion"'},
    ),
    (
        "wrong secret",
        b"grant_type=client_credentials",
        {"Content-Type": FORM, "Authorization": "WRONG"},
        401,
        "invalid_client",
        "client authentication failed",
        {"WWW-Authenticate": 'Basic realm="bastion"'},
    ),
    (
        "Bearer instead of Basic",
        b"grant_type=client_credentials",
        {"Content-Type": FORM, "Authorization": "Bearer abc"},
        401,
        "invalid_client",
        "only HTTP Basic client authentication is accepted in the header",
        {"WWW-Authenticate": 'Basic realm="bastion"'},
    ),
    (
        "Basic that is not base64",
        b"grant_type=client_credentials",
        {"Content-Type": FORM, "Authorization": "Basic %%%"},
        401,
        "invalid_client",
        "the Basic credentials are not valid base64",
        {"WWW-Authenticate": 'Basic realm="bastion"'},
    ),
    (
        "unknown client",
        b"grant_type=client_credentials",
        {"Content-Type": FORM, "Authorization": basic("nobody", "x")},
        401,
        "invalid_client",
        "client_id 'nobody' is not registered with this authorization server. Register it "
        "(`bastion clients add`), use dynamic registration, use a client ID metadata document "
        "URL, or set unknown_clients.policy = loopback_public",
        {"WWW-Authenticate": 'Basic realm="bastion"'},
    ),
    (
        "two authentication methods",
        b"grant_type=client_credentials&client_secret=x",
        {"Content-Type": FORM, "Authorization": "CLIENT"},
        400,
        "invalid_request",
        "use exactly one client authentication method per request",
        {},
    ),
    (
        "unknown scope",
        b"grant_type=client_credentials&scope=admin",
        {"Content-Type": FORM, "Authorization": "CLIENT"},
        400,
        "invalid_scope",
        "unknown scope: admin",
        {},
    ),
    (
        "unknown resource",
        b"grant_type=client_credentials&resource=https%3A%2F%2Felsewhere.example%2Fmcp",
        {"Content-Type": FORM, "Authorization": "CLIENT"},
        400,
        "invalid_target",
        "resource https://elsewhere.example/mcp is not served by this authorization server",
        {},
    ),
    (
        "two resources",
        b"grant_type=client_credentials&resource=a&resource=b",
        {"Content-Type": FORM, "Authorization": "CLIENT"},
        400,
        "invalid_target",
        "send one resource per request; each token has a single audience",
        {},
    ),
    (
        "a grant the client is not registered for",
        b"grant_type=refresh_token&refresh_token=abc",
        {"Content-Type": FORM, "Authorization": "CLIENT"},
        400,
        "unauthorized_client",
        "this client is not registered for the refresh_token grant",
        {},
    ),
    (
        "the secret in the body of a client registered for Basic",
        b"grant_type=client_credentials&client_id=CLIENT_ID&client_secret=x",
        {"Content-Type": FORM},
        401,
        "invalid_client",
        "client CLIENT_ID is registered for client_secret_basic authentication, but the request "
        "used client_secret_post",
        {"WWW-Authenticate": 'Basic realm="bastion"'},
    ),
    (
        "Basic credentials without a colon",
        b"grant_type=client_credentials",
        {"Content-Type": FORM, "Authorization": "Basic YWJj"},
        401,
        "invalid_client",
        "the Basic credentials must be client_id:client_secret",
        {"WWW-Authenticate": 'Basic realm="bastion"'},
    ),
    (
        "a content type with parameters and capitals",
        b"grant_type=client_credentials",
        {
            "Content-Type": "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            "Authorization": "CLIENT",
        },
        200,
        "",
        "",
        {},
    ),
    (
        "form content type as a prefix of another",
        b"grant_type=client_credentials",
        {"Content-Type": "application/x-www-form-urlencodedx", "Authorization": "CLIENT"},
        400,
        "invalid_request",
        "send the parameters as application/x-www-form-urlencoded",
        {},
    ),
    (
        "a DPoP header that is not a proof",
        b"grant_type=client_credentials",
        {"Content-Type": FORM, "Authorization": "CLIENT", "DPoP": "not-a-jwt"},
        400,
        "invalid_dpop_proof",
        "the DPoP header is not a signed JWT (RFC 9449 section 4.2): the token is not a JWS "
        "compact serialization of three parts",
        {},
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error", "description", "extra"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSALS],
)
async def test_refusals_are_exact(
    live: tuple[str, Settings, Confidential],
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
    description: str,
    extra: dict[str, str],
) -> None:
    issuer, _, client = live
    sent = dict(headers)
    if sent.get("Authorization") == "CLIENT":
        sent["Authorization"] = basic(client.client_id, client.secret)
    elif sent.get("Authorization") == "WRONG":
        sent["Authorization"] = basic(client.client_id, "wrong")
    body = body.replace(b"CLIENT_ID", client.client_id.encode())
    description = description.replace("CLIENT_ID", client.client_id)
    if b"resource=" not in body:
        body += b"&resource=" + f"{issuer}/mcp".replace(":", "%3A").replace("/", "%2F").encode()
    response = await post(f"{issuer}/token", body, sent)
    if status == 200:
        assert response.status_code == 200, response.text
        return
    refusal(response, status, error, description, **extra)


async def test_oversized_body_is_413(live: tuple[str, Settings, Confidential]) -> None:
    issuer, settings, _ = live
    limit = settings.max_body_bytes
    response = await post(f"{issuer}/token", b"a=" + b"x" * limit, {"Content-Type": FORM})
    refusal(response, 413, "invalid_request", f"request body exceeds {limit} bytes")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_are_405(live: tuple[str, Settings, Confidential], method: str) -> None:
    issuer, _, _ = live
    response = await post(f"{issuer}/token", b"", method=method)
    assert response.status_code == 405
    assert response.json() == {
        "error": "invalid_request",
        "error_description": f"{method} is not allowed",
    }
    assert response.headers["allow"] == "POST"
    assert response.headers["cache-control"] == "no-store"


async def test_token_path_with_a_trailing_slash_is_not_the_endpoint(
    live: tuple[str, Settings, Confidential],
) -> None:
    issuer, _, client = live
    response = await post(
        f"{issuer}/token/",
        form(cc(f"{issuer}/mcp")),
        {"Content-Type": FORM, "Authorization": basic(client.client_id, client.secret)},
    )
    assert response.status_code != 200
    assert b"access_token" not in response.content


@pytest.fixture
async def live_under_path(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[str, str, Confidential]]:
    """The authorization server with an issuer that has a path (``…/auth``): the token endpoint
    is served under it. Yields the server's root URL, the issuer and a confidential client."""
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    issuer = f"{root}/auth"
    settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=f"{issuer}/mcp", name="demo", scopes=["mcp:tools"])],
    )
    async with serve(create_app(settings), port=port):
        yield root, issuer, await confidential_client(settings)


async def test_under_an_issuer_path_only_that_path_is_the_token_endpoint(
    live_under_path: tuple[str, str, Confidential],
) -> None:
    root, issuer, client = live_under_path
    body = form(cc(f"{issuer}/mcp"))
    headers = {"Content-Type": FORM, "Authorization": basic(client.client_id, client.secret)}
    for elsewhere in (f"{root}/token", f"{root}/authtoken", f"{issuer}x/token"):
        answer = await post(elsewhere, body, headers)
        assert answer.status_code == 404, (elsewhere, answer.text)
        assert b"access_token" not in answer.content
    slash = await post(f"{issuer}/token/", body, headers)  # Starlette's redirect, no token
    assert slash.status_code == 307
    assert b"access_token" not in slash.content
    refused = await post(f"{issuer}/token", b"grant_type=password", headers)
    refusal(
        refused,
        400,
        "unsupported_grant_type",
        "grant_type password is not supported; use one of authorization_code, refresh_token, "
        "client_credentials",
    )
    unauthenticated = await post(f"{issuer}/token", body, {"Content-Type": FORM})
    refusal(
        unauthenticated,
        401,
        "invalid_client",
        "client authentication is required (or client_id for public clients)",
        **{"WWW-Authenticate": 'Basic realm="bastion"'},
    )
    ok = await post(f"{issuer}/token", body, headers)
    assert ok.status_code == 200, ok.text
    assert set(ok.headers) - UVICORN_HEADERS == ANSWER_HEADERS
    wrong_method = await post(f"{issuer}/token", b"", method="GET")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
