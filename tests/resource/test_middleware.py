"""The resource-server middleware: MCP authorization "Access Token Usage", "Error Handling" and
"Scope Challenge Handling"; RFC 6750 §2 (how tokens are sent) and §3 (challenges); RFC 9728 §5.1
(resource_metadata); the streamable HTTP transport's Origin rule. Checklist R02-R07, R11.

Fast tests drive a tiny Starlette app through httpx's ASGITransport; the streaming, chunked-body
and end-to-end tests run it under uvicorn, the last one against a real bastion AS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from bastion.oauth.www_authenticate import parse_challenges
from bastion.resource import (
    JwtVerifier,
    Principal,
    ResourceServerMiddleware,
    ScopePolicy,
    TokenVerifier,
)
from tests.resource.apps import PRM_URL, RESOURCE, echo_app
from tests.resource.conftest import ForeignAS, StartAS, get_token, service_client
from tests.support.live import free_port, serve

AS = "https://as.example.com"
POLICY = ScopePolicy(
    default=["mcp:tools"],
    tools={"delete_file": ["files:write"], "audit": ["audit:read"]},
    implies={"files:admin": ["files:write"]},
)
MakeClient = Callable[..., httpx.AsyncClient]


def middleware(app: Any, foreign_as: ForeignAS, **kwargs: Any) -> ResourceServerMiddleware:
    options: dict[str, Any] = {
        "resource": RESOURCE,
        "verifier": foreign_as.verifier(RESOURCE),
        "authorization_servers": [AS],
        "scopes_supported": ["mcp:tools"],
        "policy": POLICY,
    }
    options.update(kwargs)
    return ResourceServerMiddleware(app, **options)


@pytest.fixture
async def make_client(foreign_as: ForeignAS) -> AsyncIterator[MakeClient]:
    """Build an httpx client for the echo app behind the middleware (keyword arguments go to the
    middleware)."""
    clients: list[httpx.AsyncClient] = []

    def make(**kwargs: Any) -> httpx.AsyncClient:
        app = middleware(kwargs.pop("app", None) or echo_app(), foreign_as, **kwargs)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: MakeClient) -> httpx.AsyncClient:
    return make_client()


def bearer(foreign_as: ForeignAS, scope: str = "mcp:tools", **claims: Any) -> dict[str, str]:
    token = foreign_as.sign(foreign_as.claims(RESOURCE, scope=scope, **claims))
    return {"Authorization": f"Bearer {token}"}


def call(name: str, request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {}},
    }


def assert_json_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert set(body) == {"error", "error_description"}
    return body


# -- 401 -------------------------------------------------------------------------------------------


async def test_r02_r03_request_without_token_gets_401_with_metadata_and_scope(
    client: httpx.AsyncClient,
) -> None:
    """RFC 9728 §5.1, RFC 6750 §3: no error code when no credentials were sent; the scope hint
    names what every request needs (MCP "Scope Selection Strategy")."""
    response = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    assert_json_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{PRM_URL}", scope="mcp:tools", '
        f'DPoP resource_metadata="{PRM_URL}", scope="mcp:tools", algs="ES256 EdDSA RS256 PS256"'
    )


async def test_r03_401_scope_falls_back_to_scopes_supported(make_client: MakeClient) -> None:
    """Without a default policy scope, the 401 suggests the advertised scopes_supported."""
    client = make_client(policy=None, scopes_supported=["mcp:tools", "mcp:prompts"])
    response = await client.get("/mcp")
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{PRM_URL}", scope="mcp:prompts mcp:tools", '
        f'DPoP resource_metadata="{PRM_URL}", scope="mcp:prompts mcp:tools", '
        'algs="ES256 EdDSA RS256 PS256"'
    )


async def test_r06_other_authentication_schemes_count_as_no_token(
    client: httpx.AsyncClient,
) -> None:
    """RFC 6750 §3.1: an unsupported authentication method gets a challenge without error."""
    response = await client.get("/mcp", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_json_error(response, 401, "unauthorized")
    assert "error=" not in response.headers["www-authenticate"]


async def test_r04_r06_bad_signature_gets_401_invalid_token(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """RFC 6750 §3.1 invalid_token, with what was wrong in error_description."""
    stranger = foreign_as.keys["r1"]
    token = foreign_as.sign(foreign_as.claims(RESOURCE), kid="k1", alg="RS256", key=stranger)
    response = await client.get("/mcp", headers={"Authorization": f"Bearer {token}"})
    body = assert_json_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{PRM_URL}", scope="mcp:tools", error="invalid_token", '
        "error_description=\"key 'k1' (EC) cannot verify alg RS256: key type, curve or the key's "
        'own alg does not fit"'
    )
    assert body["error_description"].startswith("key 'k1' (EC) cannot verify alg RS256")


async def test_r04_expired_token_gets_401(client: httpx.AsyncClient, foreign_as: ForeignAS) -> None:
    """MCP "Token Handling": invalid or expired tokens MUST receive a 401."""
    response = await client.get("/mcp", headers=bearer(foreign_as, exp=1000, iat=900))
    body = assert_json_error(response, 401, "invalid_token")
    assert body["error_description"].startswith("token expired at 1000")
    challenge = parse_challenges(response.headers["www-authenticate"])[0]
    assert challenge.get("error_description") == body["error_description"]


async def test_r04_token_for_another_resource_gets_401(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """RFC 8707 §2: a token whose aud does not include this resource is refused."""
    token = foreign_as.sign(foreign_as.claims("https://other.example.com/mcp"))
    response = await client.get("/mcp", headers={"Authorization": f"Bearer {token}"})
    body = assert_json_error(response, 401, "invalid_token")
    assert body["error_description"] == (
        f"wrong audience: expected '{RESOURCE}', got 'https://other.example.com/mcp'"
    )


async def test_r04_oversized_token_gets_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/mcp", headers={"Authorization": "Bearer " + "a" * 20000})
    body = assert_json_error(response, 401, "invalid_token")
    assert body["error_description"] == "token is longer than 16384 characters"


# -- 400 -------------------------------------------------------------------------------------------


async def test_r06_token_in_the_query_string_gets_400(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """MCP "Token Requirements": access tokens MUST NOT be in the query string; refused even when
    the header carries a good token too (RFC 6750 §3.1: more than one method)."""
    token = foreign_as.sign(foreign_as.claims(RESOURCE))
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        response = await client.get(
            "/mcp", params={"x": "1", "access_token": token}, headers=headers
        )
        body = assert_json_error(response, 400, "invalid_request")
        assert response.headers["www-authenticate"] == (
            f'Bearer resource_metadata="{PRM_URL}", error="invalid_request", '
            f'error_description="{body["error_description"]}"'
        )
        assert "query string" in body["error_description"]


async def test_r06_token_in_a_form_body_gets_400(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """RFC 6750 §2.2 form-encoded body parameter: not allowed by MCP (header only)."""
    token = foreign_as.sign(foreign_as.claims(RESOURCE))
    response = await client.post("/mcp", data={"access_token": token})
    body = assert_json_error(response, 400, "invalid_request")
    assert "form body" in body["error_description"]


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer a b", "Bearer a,b", "Bearer é"])
async def test_r06_malformed_authorization_header_gets_400(
    client: httpx.AsyncClient, value: str
) -> None:
    """RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; anything else is malformed."""
    response = await client.get("/mcp", headers=[("Authorization", value.encode("utf-8"))])
    body = assert_json_error(response, 400, "invalid_request")
    assert body["error_description"].startswith("malformed Authorization header")


async def test_r06_two_authorization_headers_get_400(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    token = foreign_as.sign(foreign_as.claims(RESOURCE))
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = await client.get("/mcp", headers=headers)
    assert_json_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"method": "tools/call", "method": "tools/list"}', b"\xff\xfe"],
)
async def test_r06_json_body_that_cannot_be_read_unambiguously_gets_400(
    client: httpx.AsyncClient, foreign_as: ForeignAS, body: bytes
) -> None:
    """A body the policy cannot read (invalid JSON, duplicate members that another parser could
    resolve the other way, bad UTF-8) is malformed, never waved through."""
    headers = {**bearer(foreign_as), "Content-Type": "application/json"}
    response = await client.post("/mcp", content=body, headers=headers)
    assert_json_error(response, 400, "invalid_request")


# -- 403 and the scope policy ----------------------------------------------------------------------


async def test_r07_missing_scope_gets_403_naming_every_scope_the_operation_needs(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """RFC 6750 §3.1, MCP "Runtime Insufficient Scope Errors": 403 with error, the full scope set
    of the operation (not only the missing part) and resource_metadata."""
    response = await client.post("/mcp", json=call("delete_file"), headers=bearer(foreign_as))
    body = assert_json_error(response, 403, "insufficient_scope")
    assert body["error_description"] == (
        "this operation needs scope files:write mcp:tools; the token lacks files:write"
    )
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{PRM_URL}", scope="files:write mcp:tools", '
        f'error="insufficient_scope", error_description="{body["error_description"]}"'
    )


async def test_r07_batch_challenge_names_the_scopes_of_every_message(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """MCP: all scopes for the operation in one challenge, not one per retry."""
    batch = [call("delete_file", 1), call("audit", 2), {"jsonrpc": "2.0", "method": "ping"}]
    response = await client.post("/mcp", json=batch, headers=bearer(foreign_as))
    assert response.status_code == 403
    challenge = parse_challenges(response.headers["www-authenticate"])[0]
    assert challenge.get("scope") == "audit:read files:write mcp:tools"


async def test_r07_step_up_token_with_the_challenged_scopes_is_admitted(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """MCP "Step-Up Authorization Flow": the retried request with the union of scopes passes."""
    headers = bearer(foreign_as, scope="mcp:tools files:write")
    response = await client.post("/mcp", json=call("delete_file"), headers=headers)
    assert response.status_code == 200
    assert response.json()["calls"] == [["tools/call", "delete_file"]]


async def test_broader_scope_implies_the_narrower_one(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """MCP "Step-Up": servers MUST account for scope hierarchies (files:admin implies
    files:write here)."""
    headers = bearer(foreign_as, scope="mcp:tools files:admin")
    response = await client.post("/mcp", json=call("delete_file"), headers=headers)
    assert response.status_code == 200


async def test_r07_default_scope_applies_to_every_request(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """A GET (SSE stream) or DELETE (session end) needs the default scope too."""
    for method in ("GET", "DELETE"):
        response = await client.request(method, "/mcp", headers=bearer(foreign_as, scope="other"))
        assert response.status_code == 403
        assert parse_challenges(response.headers["www-authenticate"])[0].get("scope") == (
            "mcp:tools"
        )


async def test_r07_policy_reads_bodies_whatever_json_content_type_is_claimed(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """Servers read Content-Type differently (the SDK accepts "text/plain, application/json"):
    any type mentioning json, or none at all, is parsed, so no tool call slips past the policy."""
    for content_type in ("text/plain, application/json", "application/JSON; charset=utf-8", ""):
        headers = {**bearer(foreign_as), "Content-Type": content_type}
        response = await client.post(
            "/mcp", content=json.dumps(call("delete_file")).encode(), headers=headers
        )
        assert response.status_code == 403, content_type


# -- admitted requests -----------------------------------------------------------------------------


async def test_principal_is_visible_to_the_app(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """request.state.principal (Starlette) and scope["bastion.principal"] hold the Principal."""
    response = await client.get("/mcp", headers=bearer(foreign_as, scope="mcp:tools extra"))
    assert response.status_code == 200
    assert response.json() == {
        "method": "GET",
        "path": "/mcp",
        "subject": "alice",
        "client_id": "client-1",
        "scopes": ["extra", "mcp:tools"],
        "same_in_scope": True,
        "calls": [],
        "body": "",
    }


async def test_body_is_replayed_to_the_app_byte_for_byte(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """The middleware reads the body to learn the method, then hands the same bytes on."""
    raw = '  {"jsonrpc":"2.0", "id": 7,\n "method":"tools/list", "params": {"q": "é\\u00e9"}}  '
    headers = {**bearer(foreign_as), "Content-Type": "application/json"}
    response = await client.post("/mcp", content=raw.encode("utf-8"), headers=headers)
    assert response.status_code == 200
    assert response.json()["body"].encode("latin-1") == raw.encode("utf-8")
    assert response.json()["calls"] == [["tools/list", None]]


async def test_413_when_the_body_is_larger_than_allowed(
    make_client: MakeClient, foreign_as: ForeignAS
) -> None:
    """Bounded body reads: a declared or streamed body over max_body_bytes gets 413."""
    client = make_client(max_body_bytes=1024)
    headers = {**bearer(foreign_as), "Content-Type": "application/json"}
    big = json.dumps({"jsonrpc": "2.0", "method": "x", "params": {"p": "a" * 2000}}).encode()
    response = await client.post("/mcp", content=big, headers=headers)
    body = assert_json_error(response, 413, "invalid_request")
    assert body["error_description"] == "the request body is larger than 1024 bytes"
    assert "www-authenticate" not in response.headers

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 400

    response = await client.post("/mcp", content=chunks(), headers=headers)
    assert response.status_code == 413


async def test_unprotected_paths_pass_without_a_token(make_client: MakeClient) -> None:
    """By default only the resource's path and below need a token."""
    client = make_client()
    assert (await client.get("/public")).text == "public"
    assert (await client.get("/mcp/sub/path")).status_code == 401
    assert (await client.get("/mcpx")).status_code == 404  # not under /mcp: reaches the app


async def test_protect_paths_overrides_the_default(make_client: MakeClient) -> None:
    client = make_client(protect_paths=["/api/"])
    assert (await client.get("/api/things")).status_code == 401
    assert (await client.get("/public")).status_code == 200


async def test_verifier_outage_gets_503_not_401(make_client: MakeClient) -> None:
    """An unreachable AS does not make tokens invalid: 503 with Retry-After and no challenge."""
    unreachable = JwtVerifier(
        issuer=AS, audience=RESOURCE, jwks_uri=f"http://127.0.0.1:{free_port()}/jwks"
    )
    client = make_client(verifier=unreachable)
    response = await client.get("/mcp", headers={"Authorization": "Bearer a.b.c"})
    # a.b.c is malformed before keys are needed: a well-formed token is required to reach them
    assert response.status_code == 401
    token = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsiLCJ0eXAiOiJhdCtqd3QifQ.e30.c2ln"
    response = await client.get("/mcp", headers={"Authorization": f"Bearer {token}"})
    assert_json_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "5"
    assert "www-authenticate" not in response.headers
    await unreachable.aclose()


# -- Origin (R11) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://localhost.evil.example", "null", "garbage"]
)
async def test_r11_foreign_origin_gets_403_before_anything_else(
    client: httpx.AsyncClient, foreign_as: ForeignAS, origin: str
) -> None:
    """Streamable HTTP transport: servers MUST validate Origin (DNS rebinding); 403 whether or
    not a token is sent."""
    for headers in ({"Origin": origin}, {"Origin": origin, **bearer(foreign_as)}):
        response = await client.get("/mcp", headers=headers)
        assert_json_error(response, 403, "invalid_origin")
        assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    "origin",
    ["http://localhost", "http://LOCALHOST:80", "http://127.0.0.1:6274", "http://[::1]:3000"],
)
async def test_r11_same_and_loopback_origins_are_allowed_for_a_loopback_resource(
    client: httpx.AsyncClient, foreign_as: ForeignAS, origin: str
) -> None:
    """Default: the resource's own origin, and any loopback origin when the resource itself is on
    loopback (the MCP Inspector runs on its own local port)."""
    response = await client.get("/mcp", headers={"Origin": origin, **bearer(foreign_as)})
    assert response.status_code == 200


async def test_r11_configured_origins_for_a_public_resource(foreign_as: ForeignAS) -> None:
    """A public resource accepts its own origin and the configured ones, not loopback pages."""
    resource = "https://mcp.example.com/mcp"
    verifier = foreign_as.verifier(resource)
    for allowed, origin, status in [
        (None, "https://mcp.example.com", 200),
        (None, "http://127.0.0.1:6274", 403),
        (["https://app.example"], "https://app.example:443", 200),
        (["https://app.example"], "https://mcp.example.com", 403),
        (["*"], "https://anything.example", 200),
    ]:
        app = middleware(
            echo_app(), foreign_as, resource=resource, verifier=verifier, allowed_origins=allowed
        )
        token = foreign_as.sign(foreign_as.claims(resource))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://mcp.example.com"
        ) as http:
            response = await http.get(
                "/mcp", headers={"Origin": origin, "Authorization": f"Bearer {token}"}
            )
        assert response.status_code == status, (allowed, origin)


# -- raw ASGI behaviour ----------------------------------------------------------------------------


class Recorder:
    """A raw ASGI app that records what it received and answers 200."""

    def __init__(self, read_twice: bool = False) -> None:
        self.read_twice = read_twice
        self.scopes: list[Scope] = []
        self.received: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        while True:
            message = await receive()
            self.received.append(message)
            if not message.get("more_body"):
                break
        if self.read_twice:
            self.received.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def run_asgi(
    app: ResourceServerMiddleware, scope: Scope, inbound: list[Message]
) -> list[Message]:
    queue = list(inbound)
    sent: list[Message] = []

    async def receive() -> Message:
        return queue.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http_scope(path: str, headers: dict[str, str], method: str = "POST") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("localhost", 80),
    }


async def test_replayed_body_is_followed_by_the_real_disconnect(foreign_as: ForeignAS) -> None:
    """ASGI: after the body the app's next receive() is the client's http.disconnect, so
    streaming apps notice a client going away."""
    recorder = Recorder(read_twice=True)
    app = middleware(recorder, foreign_as)
    body = json.dumps(call("search")).encode()
    scope = http_scope("/mcp", {**bearer(foreign_as), "content-type": "application/json"})
    sent = await run_asgi(
        app,
        scope,
        [
            {"type": "http.request", "body": body[:10], "more_body": True},
            {"type": "http.request", "body": body[10:], "more_body": False},
            {"type": "http.disconnect"},
        ],
    )
    assert sent[0]["status"] == 200
    assert recorder.received == [
        {"type": "http.request", "body": body, "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert recorder.scopes[0]["bastion.calls"] == (("tools/call", "search"),)
    assert isinstance(recorder.scopes[0]["state"]["principal"], Principal)


async def test_client_gone_while_the_body_is_read_gets_no_answer(foreign_as: ForeignAS) -> None:
    recorder = Recorder()
    app = middleware(recorder, foreign_as)
    scope = http_scope("/mcp", {**bearer(foreign_as), "content-type": "application/json"})
    sent = await run_asgi(
        app,
        scope,
        [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}],
    )
    assert sent == []
    assert recorder.scopes == []


@pytest.mark.parametrize("path", ["/public/../mcp", "//mcp", "/./mcp/x", "/mcp/./../mcp"])
async def test_dot_segments_and_double_slashes_do_not_escape_protection(
    foreign_as: ForeignAS, path: str
) -> None:
    """RFC 3986 §5.2.4: a path that normalises into the protected prefix is protected, whatever
    a server or proxy behind does with it."""
    recorder = Recorder()
    sent = await run_asgi(
        middleware(recorder, foreign_as),
        http_scope(path, {}, method="GET"),
        [{"type": "http.request", "body": b""}],
    )
    assert sent[0]["status"] == 401
    assert recorder.scopes == []


async def test_websocket_handshake_needs_a_valid_token(foreign_as: ForeignAS) -> None:
    """A WebSocket under a protected path is refused (close 1008 before accept) without a
    token, and admitted with one."""
    recorder = Recorder()
    app = middleware(recorder, foreign_as)
    scope = {**http_scope("/mcp/ws", {}, method="GET"), "type": "websocket"}
    sent = await run_asgi(app, scope, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert recorder.scopes == []
    scope = {**http_scope("/mcp/ws", bearer(foreign_as), method="GET"), "type": "websocket"}
    sent = await run_asgi(app, scope, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.accept"}]
    assert recorder.scopes[0]["bastion.principal"].subject == "alice"


# -- under uvicorn ---------------------------------------------------------------------------------


async def test_streamed_responses_pass_through_unbuffered_and_lifespan_runs(
    foreign_as: ForeignAS,
) -> None:
    """A pure ASGI middleware: the first event reaches the client before the app finishes (the
    app waits for the test to see it), and the lifespan reaches the app."""
    gate = asyncio.Event()
    state: dict[str, Any] = {}
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    verifier = foreign_as.verifier(resource)
    app = middleware(echo_app(gate, state), foreign_as, resource=resource, verifier=verifier)
    token = foreign_as.sign(foreign_as.claims(resource))
    async with serve(app, port=port) as base, httpx.AsyncClient(base_url=base) as http:
        assert state == {"lifespan": "started"}
        async with http.stream(
            "GET", "/mcp/stream", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status_code == 200
            chunks = response.aiter_text()
            first = await asyncio.wait_for(chunks.__anext__(), timeout=10)
            assert first == "data: first\n\n"
            gate.set()
            rest = "".join([c async for c in chunks])
            assert rest == "data: second\n\n"


async def test_chunked_body_over_the_limit_gets_413_over_http(foreign_as: ForeignAS) -> None:
    """Transfer-Encoding: chunked (no Content-Length) is bounded while it is read."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    verifier = foreign_as.verifier(resource)
    app = middleware(
        echo_app(), foreign_as, resource=resource, verifier=verifier, max_body_bytes=2048
    )
    token = foreign_as.sign(foreign_as.claims(resource))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    async with serve(app, port=port) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            "/mcp",
            content=chunks(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert response.status_code == 413


async def test_r06_over_http_a_repeated_member_is_400_and_an_oversized_body_413(
    foreign_as: ForeignAS,
) -> None:
    """A protected app under uvicorn: a JSON body repeating a member (RFC 8259 §4: another
    parser could resolve it the other way, so the policy could check one tool and the app run
    another) is 400, a declared body over max_body_bytes 413; neither reaches the app."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    verifier = JwtVerifier(
        issuer=AS, audience=resource, jwks_uri=foreign_as.jwks_uri, http=foreign_as.http
    )
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"])
        await echo_app()(scope, receive, send)

    protected = middleware(
        app, foreign_as, resource=resource, verifier=verifier, max_body_bytes=2048
    )
    token = foreign_as.sign(foreign_as.claims(resource))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    repeated = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call",'
        b' "params": {"name": "x", "name": "delete_file"}}'
    )
    async with serve(protected, port=port) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/mcp", content=repeated, headers=headers)
        body = assert_json_error(response, 400, "invalid_request")
        assert body["error_description"] == (
            "the request body is not valid JSON: send UTF-8 JSON without repeated members, "
            "nested at most 64 levels"
        )
        response = await http.post("/mcp", content=b" " * 4096, headers=headers)
        body = assert_json_error(response, 413, "invalid_request")
        assert body["error_description"] == "the request body is larger than 2048 bytes"
        assert "www-authenticate" not in response.headers
    assert reached == []


async def test_r01_to_r04_discovery_from_a_401_to_an_admitted_request(start_as: StartAS) -> None:
    """End to end, as an MCP client does it (MCP authorization-server discovery): 401 ->
    resource_metadata -> authorization_servers -> AS metadata -> token for this resource (RFC
    8707) with the challenged scope -> admitted. Real AS, real resource server, both uvicorn."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    async with start_as(extra_resources=[resource]) as live:
        verifier: TokenVerifier = JwtVerifier(
            issuer=live.issuer, audience=resource, jwks_uri=live.jwks_uri
        )
        app = ResourceServerMiddleware(
            echo_app(),
            resource=resource,
            verifier=verifier,
            authorization_servers=[live.issuer],
            scopes_supported=["mcp:tools"],
            policy=ScopePolicy(default=["mcp:tools"], tools={"delete_file": ["files:write"]}),
        )
        async with serve(app, port=port) as base, httpx.AsyncClient() as http:
            first = await http.post(f"{base}/mcp", json=call("delete_file"))
            assert first.status_code == 401
            [challenge, _dpop] = parse_challenges(first.headers["www-authenticate"])
            prm = (await http.get(challenge.get("resource_metadata") or "")).json()
            assert prm["resource"] == resource
            [issuer] = prm["authorization_servers"]
            as_meta = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
            assert as_meta["issuer"] == live.issuer
            client = await service_client(live.settings)
            token = await get_token(
                issuer, client, resource=prm["resource"], scope=challenge.get("scope")
            )
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            second = await http.post(f"{base}/mcp", json=call("delete_file"), headers=auth)
            assert second.status_code == 403
            [step_up] = parse_challenges(second.headers["www-authenticate"])
            assert step_up.get("scope") == "files:write mcp:tools"
            token = await get_token(
                issuer, client, resource=prm["resource"], scope=step_up.get("scope")
            )
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            third = await http.post(f"{base}/mcp", json=call("delete_file"), headers=auth)
            assert third.status_code == 200
            assert third.json()["subject"] == client.client_id
        await verifier.aclose()  # type: ignore[attr-defined]


# -- bodies the policy cannot read (security review M1) --------------------------------------------


async def test_m1_put_and_patch_bodies_must_be_json_too(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """POST, PUT and PATCH bodies of another type get 415 (the registry uses PUT and PATCH);
    JSON and +json types pass; a body-less request and GET are not concerned."""
    auth = bearer(foreign_as)
    for method in ("POST", "PUT", "PATCH"):
        response = await client.request(
            method, "/mcp", content=b"x", headers={**auth, "Content-Type": "text/plain"}
        )
        body = assert_json_error(response, 415, "invalid_request")
        assert "'text/plain'" in body["error_description"]
        assert "www-authenticate" not in response.headers
    for content_type in ("application/json", "application/merge-patch+json"):
        response = await client.put(
            "/mcp", content=b"{}", headers={**auth, "Content-Type": content_type}
        )
        assert response.status_code == 200, content_type
    assert (await client.put("/mcp", headers=auth)).status_code == 200
    assert (await client.get("/mcp", headers=auth)).status_code == 200


async def test_m1_a_token_in_a_form_body_is_400_before_the_415(
    client: httpx.AsyncClient, foreign_as: ForeignAS
) -> None:
    """RFC 6750 §2.2 form tokens are refused as such (400) whether or not a header token is sent
    too; a form body without one is 401 without a token, 415 with one."""
    token = foreign_as.sign(foreign_as.claims(RESOURCE))
    for headers in ({}, bearer(foreign_as)):
        response = await client.post("/mcp", data={"access_token": token}, headers=headers)
        assert_json_error(response, 400, "invalid_request")
    assert (await client.post("/mcp", data={"a": "b"})).status_code == 401
    response = await client.post("/mcp", data={"a": "b"}, headers=bearer(foreign_as))
    assert_json_error(response, 415, "invalid_request")
