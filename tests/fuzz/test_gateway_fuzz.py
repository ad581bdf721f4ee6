"""The gateway under fuzzing: requests to an upstream's path, in front of a recording upstream.

Methods, headers (Authorization variants, Origin, Content-Type, Mcp-Session-Id, Accept), paths
(dot segments, encoded slashes, very long), JSON-RPC bodies (valid and broken messages, batches,
nested params, duplicate members, non-JSON), with a valid token for the upstream, a token for
another resource, garbage, or none. Properties: no 5xx but 502/503/504 (upstream trouble), no
traceback; refusals in the documented form (401 with a Bearer challenge, RFC 6750 §3; 403 with
a challenge for insufficient_scope; 400/413/415 with a JSON error body); and the upstream never
receives the client's Authorization header (MCP authorization, "Token Passthrough").

The AS and the gateway run in-process (ASGITransport; the gateway fetches the JWKS from the AS
through it); the upstream under uvicorn on loopback, since the gateway's upstream client speaks
HTTP/1.1 over a socket.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from bastion.config import GatewaySettings, ResourceSettings, Settings
from bastion.gateway import create_gateway_app
from tests.fuzz import properties as must
from tests.fuzz import strategies as fuzz
from tests.fuzz.profile import Tally, cases, run_cases
from tests.fuzz.world import AuthWorld, auth_world
from tests.support.live import serve

GROUP = "gateway"
GATEWAY = "http://gateway.example"
NOTES = f"{GATEWAY}/mcp/notes"
OTHER = "http://localhost:9001/mcp"
CREDENTIAL = "Bearer upstream-credential"
ACCEPT = "application/json, text/event-stream"


class Upstream:
    """An MCP server stand-in that records every request's headers and answers JSON-RPC
    ``{"result": {}}`` to anything (so that every 5xx seen is the gateway's own)."""

    def __init__(self) -> None:
        self.authorizations: list[list[bytes]] = []
        self.seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        self.seen += 1
        self.authorizations.append([v for k, v in scope["headers"] if k == b"authorization"])
        body = b'{"jsonrpc":"2.0","id":1,"result":{}}'
        headers = [(b"content-type", b"application/json"), (b"mcp-session-id", b"s-1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Gateway:
    world: AuthWorld
    client: httpx.AsyncClient
    upstream: Upstream
    tokens: dict[str, str] = field(default_factory=dict)

    def send(self, spec: fuzz.Spec) -> httpx.Response:
        request = self.client.build_request(
            spec.method, GATEWAY, headers=spec.headers, content=spec.content
        )
        request.url = request.url.copy_with(raw_path=spec.path.encode("ascii"))
        response = self.world.run(self.client.send(request))
        self.world.outcomes[f"{response.status_code}"] += 1
        return response


@pytest.fixture
def gateway(make_settings: Callable[..., Settings], backend_name: str) -> Iterator[Gateway]:
    upstream = Upstream()
    settings = make_settings(
        resources=[
            ResourceSettings(uri=NOTES, name="notes", scopes=["mcp:tools", "notes:write"]),
            ResourceSettings(uri=OTHER, name="other", scopes=["mcp:tools"]),
        ],
    )
    jwks_client: list[httpx.AsyncClient] = []
    with auth_world(settings, backend_name, codes=0, grants=0) as world:
        stack = contextlib.AsyncExitStack()
        try:
            base = world.run(stack.enter_async_context(serve(upstream)))
            jwks = httpx.AsyncClient(transport=httpx.ASGITransport(app=world.bastion_app))
            jwks_client.append(jwks)
            app = create_gateway_app(gateway_settings(settings, base), http=jwks)
            client = world.run(stack.enter_async_context(_lifespan(app)))
            made = Gateway(world, client, upstream)
            for resource in (NOTES, OTHER):
                made.tokens[resource] = machine_token(world, resource)
            yield made
        finally:
            world.run(stack.aclose())
            for jwks in jwks_client:
                world.run(jwks.aclose())


def gateway_settings(settings: Settings, upstream: str) -> Settings:
    """``settings`` with the gateway on: one upstream, ``notes``, at the recording server."""
    notes = {
        "name": "notes",
        "path": "/mcp/notes",
        "url": f"{upstream}/mcp",
        "resource": NOTES,
        "scopes": ["mcp:tools", "notes:write"],
        "policy": {"default": ["mcp:tools"], "tools": {"delete_note": ["notes:write"]}},
        "headers": {"Authorization": CREDENTIAL},
    }
    gateway = {"enabled": True, "public_url": GATEWAY, "upstreams": [notes]}
    return settings.model_copy(update={"gateway": GatewaySettings.model_validate(gateway)})


def machine_token(world: AuthWorld, resource: str) -> str:
    """A client_credentials token of the machine client for ``resource`` (scope mcp:tools)."""
    form = f"grant_type=client_credentials&resource={quote(resource)}".encode()
    spec = fuzz.Spec("POST", "/token", {"Authorization": world.machine.basic}, form)
    response = world.send(spec.header("Content-Type", b"application/x-www-form-urlencoded"))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> Any:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=GATEWAY) as client:
            yield client


def rpc() -> st.SearchStrategy[bytes]:
    """JSON-RPC bodies: valid messages, broken ones, batches, duplicates, nesting, non-JSON."""
    method = st.sampled_from(
        ["initialize", "tools/list", "tools/call", "resources/read", "notifications/initialized"]
    )
    message = st.fixed_dictionaries(
        {
            "jsonrpc": st.just("2.0"),
            "id": st.integers(0, 9) | fuzz.json_values(2),
            "method": method | fuzz.text(20),
        },
        optional={
            "params": st.fixed_dictionaries(
                {},
                optional={
                    "name": st.sampled_from(["search", "delete_note"]) | fuzz.json_values(3),
                    "arguments": fuzz.json_values(10),
                },
            )
            | fuzz.json_values(6)
        },
    )
    documents = st.one_of(message, st.lists(message, max_size=4), fuzz.json_values(10))
    duplicate = st.sampled_from(
        [
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete_note"}}',
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}',
            b"[" * 5000 + b"]" * 5000,
        ]
    )
    raw = st.one_of(st.binary(max_size=80), duplicate, st.just(b"x" * (1024 * 1024 + 1)))
    return fuzz.mostly(documents.map(fuzz.dumps), raw)


def paths() -> st.SearchStrategy[str]:
    below = st.sampled_from(
        ["", "/", "/sse", "/a/../b", "/%2e%2e/%2e%2e/x", "/..%2F..%2Fetc", "//x", "/%00", "/a%2Fb"]
    )
    weird = st.sampled_from(
        [
            "/mcp/notes/../notes",
            "/mcp/./notes",
            "/mcp//notes",
            "/MCP/notes",
            "/mcp/notes" + "/a" * 2000,
            "/mcp/notesx",
            "/mcp/notes%2F..%2F",
        ]
    )
    return fuzz.mostly(below.map(lambda b: "/mcp/notes" + b), weird)


@st.composite
def request(draw: st.DrawFn, gateway: Gateway) -> tuple[fuzz.Spec, str | None]:
    """A request and the token it carries (if any)."""
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", "DELETE", "PUT", "OPTIONS"]))
    spec = fuzz.Spec(method, draw(paths()))
    # Mostly the upstream's own token, so that most cases get past the token check and reach
    # what lies behind it; else one for another resource, or none.
    others = st.sampled_from(list(gateway.tokens.values())) | st.none()
    token = draw(fuzz.mostly(st.just(gateway.tokens[NOTES]), others))
    scheme = draw(
        fuzz.mostly(
            st.just(b"Bearer "), st.sampled_from([b"bearer  ", b"Basic ", b"Bearer\t", b""])
        )
    )
    auth = None if token is None else scheme + token.encode()
    auth = draw(fuzz.mostly(st.just(auth), fuzz.authorization([], ["x"], ["y"])))
    spec.header("Authorization", auth)
    spec.header("Accept", draw(fuzz.mostly(st.just(ACCEPT.encode()), fuzz.header_value(40))))
    if draw(st.integers(0, 3)) == 3:
        spec.header(
            "Origin",
            draw(
                st.sampled_from(
                    [
                        b"http://gateway.example",
                        b"https://evil.example",
                        b"null",
                        b"http://127.0.0.1:1",
                    ]
                )
                | fuzz.header_value(30)
            ),
        )
    if draw(st.integers(0, 3)) == 3:
        spec.header(
            "Mcp-Session-Id", draw(st.sampled_from([b"s-1", b"s-2"]) | fuzz.header_value(30))
        )
    if method in ("POST", "PUT"):
        spec.content = draw(rpc())
        spec.header(
            "Content-Type", draw(fuzz.mostly(st.just(b"application/json"), fuzz.content_type()))
        )
    return spec, token if auth and token and token.encode() in auth else None


def check(gateway: Gateway, case: tuple[fuzz.Spec, str | None]) -> None:
    spec, token = case
    before = gateway.upstream.seen
    response = gateway.send(spec)
    must.no_server_error(response, upstream_trouble=True)
    for received in gateway.upstream.authorizations[before:]:
        # The gateway's own credential, never the client's header or token (R05).
        assert received == [CREDENTIAL.encode()], must.describe(response)
        assert token is None or token.encode() not in received[0], must.describe(response)
    if response.status_code == 200:
        assert gateway.upstream.seen == before + 1, must.describe(response)
        return
    assert gateway.upstream.seen == before, must.describe(response)  # refused: not forwarded
    body = json.loads(response.content)
    assert isinstance(body, dict), must.describe(response)
    challenge = response.headers.get("www-authenticate", "")
    if response.status_code == 401:
        assert challenge.startswith("Bearer "), must.describe(response)
        assert 'resource_metadata="' in challenge, must.describe(response)
        assert body["error"] in ("unauthorized", "invalid_token"), must.describe(response)
    elif response.status_code == 403:
        assert body["error"] in ("insufficient_scope", "invalid_origin", "access_denied")
        if body["error"] == "insufficient_scope":
            assert 'error="insufficient_scope"' in challenge, must.describe(response)
    elif response.status_code in (400, 413, 415) and isinstance(body["error"], dict):
        # The proxy's own refusals (a path leaving the mount, L2) are JSON-RPC errors.
        assert body["error"]["code"] == -32600 and body["id"] is None, must.describe(response)
    elif response.status_code in (400, 413, 415):
        assert body["error"] == "invalid_request", must.describe(response)
        assert must.RFC6749_CHARS.fullmatch(body["error_description"]), must.describe(response)
    else:
        # 404 (no upstream at this path) and 405: JSON-RPC errors of the gateway itself.
        assert response.status_code in (404, 405), must.describe(response)
        assert body["error"]["code"] < 0, must.describe(response)


def test_gateway_answers_in_the_documented_form_and_never_passes_the_token_upstream(
    gateway: Gateway, backend_name: str, tally: Tally
) -> None:
    count = run_cases(cases(1.0, backend_name), request(gateway), lambda c: check(gateway, c))
    assert gateway.upstream.seen > count // 10  # the fuzzer got through, not only refused
    tally(GROUP, count, gateway.world.outcomes)
