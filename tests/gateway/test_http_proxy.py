"""The reverse proxy to streamable HTTP upstreams.

MCP transports (2025-11-25) "Streamable HTTP": POST answered as JSON or SSE, GET SSE streams,
DELETE, Mcp-Session-Id and MCP-Protocol-Version; MCP authorization "Token Passthrough" (R05);
RFC 9110 §7.6.1 (hop-by-hop headers).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from bastion.config import UpstreamSettings
from bastion.gateway.http_proxy import HttpProxy
from bastion.gateway.identity import verify_identity_headers
from bastion.gateway.upstream_http import UpstreamPool
from bastion.resource.principal import Principal, attach_principal
from bastion.serve import proxy_options
from tests.gateway.conftest import ALICE, ProxyFactory, sealed
from tests.gateway.test_upstream_http import raw_server
from tests.gateway.upstream import RecordingUpstream
from tests.support.live import free_port, raw_request, serve

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
ACCEPT = "application/json, text/event-stream"
SECRET = b"an-identity-secret-of-at-least-32-bytes!"


async def test_r05_client_authorization_is_never_forwarded_to_the_upstream(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """MCP authorization, Token Passthrough: the client's token must not reach the upstream,
    nor its cookies or identity headers it made up; the configured credential is added."""
    recorder, url = upstream
    async with proxied(url=url, headers={"Authorization": "Bearer upstream-credential"}) as base:
        response = await http.post(
            f"{base}/mcp",
            json=INIT,
            headers={
                "Authorization": "Bearer client-token-must-not-leak",
                "Cookie": "session=abc",
                "X-Bastion-Subject": "mallory",
                "Proxy-Authorization": "Basic xyz",
                "Accept": ACCEPT,
            },
        )
    assert response.status_code == 200, response.text
    seen = recorder.requests[-1]["headers"]
    authorizations = [v for k, v in seen if k.lower() == "authorization"]
    assert authorizations == ["Bearer upstream-credential"]
    assert "client-token-must-not-leak" not in json.dumps(seen)
    names = {k.lower() for k, _ in seen}
    assert not names & {"cookie", "proxy-authorization", "x-bastion-subject", "origin"}


async def test_r05_without_configured_headers_the_upstream_gets_no_authorization_at_all(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """MCP authorization, Token Passthrough: stripping does not depend on configuration."""
    recorder, url = upstream
    async with proxied(url=url) as base:
        response = await http.post(
            f"{base}/mcp", json=INIT, headers={"Authorization": "Bearer t", "Accept": ACCEPT}
        )
    assert response.status_code == 200
    assert "authorization" not in recorder.last_headers


async def test_mcp_headers_pass_through_both_ways(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """MCP transports, Session Management and Protocol Version Header: Mcp-Session-Id,
    MCP-Protocol-Version, Accept, Content-Type and the 2026 Mcp-Method/Mcp-Name headers reach the
    upstream (the session id as the upstream issued it); its Mcp-Session-Id comes back, sealed to
    the caller. Its Set-Cookie and WWW-Authenticate do not."""
    recorder, url = upstream
    async with proxied(url=url) as base:
        response = await http.post(
            f"{base}/mcp",
            content=json.dumps(INIT),
            headers={
                "Content-Type": "application/json",
                "Accept": ACCEPT,
                "Mcp-Session-Id": sealed("client-session"),
                "MCP-Protocol-Version": "2025-11-25",
                "Mcp-Method": "initialize",
                "User-Agent": "test-agent",
            },
        )
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": 1, "result": {"ok": True}}
    assert response.headers["mcp-session-id"] == sealed("upstream-session-1")
    assert response.headers["mcp-protocol-version"] == "2025-11-25"
    assert response.headers["x-upstream"] == "yes"
    assert "set-cookie" not in response.headers
    assert "www-authenticate" not in response.headers
    got = recorder.last_headers
    assert got["mcp-session-id"] == "client-session"
    assert got["mcp-protocol-version"] == "2025-11-25"
    assert got["mcp-method"] == "initialize"
    assert got["accept"] == ACCEPT
    assert got["content-type"] == "application/json"
    assert got["user-agent"] == "test-agent"
    assert got["accept-encoding"] == "identity"


async def test_hop_by_hop_headers_and_those_named_in_connection_are_dropped(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """RFC 9110 §7.6.1: a proxy removes Connection, the fields it lists, and the other
    connection-specific fields before forwarding."""
    recorder, url = upstream
    async with proxied(url=url) as base:
        await http.post(
            f"{base}/mcp",
            json=INIT,
            headers={
                "Accept": ACCEPT,
                "Connection": "keep-alive, X-Private-Hop",
                "X-Private-Hop": "1",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Upgrade": "h2c",
            },
        )
    names = set(recorder.last_headers)
    assert not names & {"x-private-hop", "keep-alive", "te", "upgrade"}
    assert recorder.last_headers.get("connection") != "keep-alive, X-Private-Hop"


async def test_sse_answer_is_relayed_as_it_arrives(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """MCP transports: a POST may be answered with an SSE stream. The first event reaches the
    client before the upstream has finished the stream (nothing is buffered): the upstream sends
    its final event only after the client has read the first one through the proxy."""
    recorder, url = upstream
    async with (
        proxied(url=url) as base,
        http.stream(
            "POST", f"{base}/mcp/sse", json={**INIT, "id": 7}, headers={"Accept": ACCEPT}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        # One of each, though both the upstream's server and the gateway's write them.
        assert response.headers.get_list("x-accel-buffering") == ["no"]
        assert len(response.headers.get_list("date")) == 1
        lines = response.aiter_lines()
        first = await asyncio.wait_for(anext(lines), 10)
        assert first == "event: message"
        data = await asyncio.wait_for(anext(lines), 10)
        assert json.loads(data.removeprefix("data: "))["method"] == "notifications/progress"
        assert not recorder.released.is_set()  # the upstream is still holding its answer
        recorder.release()
        rest = [line async for line in lines]
    final = [json.loads(x.removeprefix("data: ")) for x in rest if x.startswith("data: ")]
    assert final == [{"jsonrpc": "2.0", "id": 7, "result": {"done": True}}]


async def test_an_sse_answer_that_ends_with_its_event_is_relayed_whole_on_one_connection(
    proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """An SSE answer whose end arrives with its one event (as the SDK's answers to a POST
    usually do) reaches the client whole, and the upstream connection is kept for the next."""
    event = b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\r\n\r\n'

    async def reply(head: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(event):x}\r\n".encode()
            + event
            + b"\r\n0\r\n\r\n"
        )

    async with raw_server(reply) as (server, url), proxied(url=f"{url}/mcp") as base:
        for _ in range(3):
            response = await http.post(f"{base}/mcp", json=INIT, headers={"Accept": ACCEPT})
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.content == event
    assert server.connections == 1


async def test_get_stream_passes_last_event_id_and_closes_upstream_when_client_leaves(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """MCP transports, Listening for Messages and Resumability: GET opens an SSE stream and
    Last-Event-ID reaches the server; when the client disconnects the proxy closes the upstream
    stream too."""
    recorder, url = upstream
    async with proxied(url=url) as base:
        async with http.stream(
            "GET",
            f"{base}/mcp",
            headers={
                "Accept": "text/event-stream",
                "Mcp-Session-Id": sealed("s1"),
                "Last-Event-ID": "41",
            },
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 10) == "id: 1"
        await asyncio.wait_for(recorder.stream_closed.wait(), 10)
    got = recorder.last_headers
    assert got["last-event-id"] == "41"
    assert got["mcp-session-id"] == "s1"


async def test_delete_is_forwarded_with_the_session_id(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """MCP transports, Session Management: DELETE with Mcp-Session-Id ends a session."""
    recorder, url = upstream
    async with proxied(url=url) as base:
        response = await http.delete(f"{base}/mcp", headers={"Mcp-Session-Id": sealed("s1")})
    assert response.status_code == 204
    assert recorder.requests[-1]["method"] == "DELETE"
    assert recorder.last_headers["mcp-session-id"] == "s1"


async def test_paths_below_the_mount_and_the_query_map_to_the_upstream(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """The mount path maps to the upstream URL; what is below it is appended, encoded as sent."""
    _, url = upstream
    async with proxied(url=url) as base:
        response = await http.get(f"{base}/mcp/a%20b/c?x=1&y=2")
    assert response.json() == {"path": "/mcp/a b/c", "query": "x=1&y=2"}


async def test_a_deeply_nested_body_is_relayed_not_a_server_error(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """Found by the fuzzer (tests/fuzz), a case of L7: reading the request id of a body nested
    deeper than Python's recursion limit raised RecursionError (a 500). Such a body has no
    JSON-RPC id to read; it is relayed and the upstream decides."""
    recorder, url = upstream
    body = b"[" * 5000 + b"]" * 5000
    async with proxied(url=url) as base:
        response = await http.post(
            f"{base}/mcp/deep", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200
    assert recorder.requests[-1]["body"] == body


async def test_compressed_upstream_answers_are_relayed_with_their_encoding(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """The body is relayed byte for byte, so Content-Encoding and Content-Length stay true."""
    _, url = upstream
    async with proxied(url=url) as base:
        response = await http.post(f"{base}/mcp/gzip", json=INIT)
    assert response.headers["content-encoding"] == "gzip"
    assert response.json() == {"jsonrpc": "2.0", "id": 1, "result": {"zipped": True}}


async def test_upstream_down_is_502_naming_the_upstream(
    proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """An unreachable upstream is a bad gateway; the JSON-RPC error names the upstream (not its
    address) and answers the request's id."""
    async with proxied(url=f"http://127.0.0.1:{free_port()}/mcp") as base:
        response = await http.post(f"{base}/mcp", json={**INIT, "id": 5})
    assert response.status_code == 502
    body = response.json()
    assert body["id"] == 5
    assert body["error"]["code"] == -32000
    assert "'notes'" in body["error"]["message"]
    assert "127.0.0.1" not in body["error"]["message"]


async def test_upstream_that_does_not_answer_in_time_is_504(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """A gateway timeout when the upstream does not answer within its configured timeout."""
    recorder, url = upstream
    async with proxied(url=url, timeout=0.2) as base:
        response = await http.post(f"{base}/mcp/slow", json=INIT)
    recorder.release()
    assert response.status_code == 504
    assert "'notes'" in response.json()["error"]["message"]


async def test_a_client_leaving_before_the_answer_closes_the_upstream_request(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory
) -> None:
    """When the client goes away while the upstream has not answered yet (well within its
    timeout), the upstream request is closed too: that is how a request is cancelled."""
    recorder, url = upstream
    async with proxied(url=url, timeout=30) as base:
        async with httpx.AsyncClient(timeout=0.3) as leaving:
            with pytest.raises(httpx.ReadTimeout):
                await leaving.post(f"{base}/mcp/slow", json=INIT)
        await asyncio.wait_for(recorder.slow_abandoned.wait(), 10)
    assert len(recorder.requests) == 1


async def test_upstream_401_becomes_502_without_its_challenge(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """A 401 from the upstream is about the gateway's credential, not the client's token:
    relaying it would send the client into a needless re-authorization."""
    _, url = upstream
    async with proxied(url=url) as base:
        response = await http.post(f"{base}/mcp/unauthorized", json=INIT)
    assert response.status_code == 502
    assert "www-authenticate" not in response.headers
    assert "credentials" in response.json()["error"]["message"]


async def test_other_methods_are_405_and_large_bodies_413(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """Streamable HTTP uses POST, GET and DELETE only; bodies are bounded."""
    recorder, url = upstream
    async with proxied(url=url, max_body_bytes=1024) as base:
        put = await http.put(f"{base}/mcp", json=INIT)
        large = await http.post(f"{base}/mcp", content=b"x" * 2048)
    assert put.status_code == 405
    assert put.headers["allow"] == "GET, POST, DELETE"
    assert large.status_code == 413
    assert recorder.requests == []


async def test_r05_forwarded_identity_is_signed_and_verifiable_by_the_upstream(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """Instead of the token, the gateway may send who called, signed with a shared key; the
    upstream checks it with verify_identity_headers."""
    recorder, url = upstream
    async with proxied(url=url, forward_identity=True, identity_secret=SECRET) as base:
        await http.post(
            f"{base}/mcp", json=INIT, headers={"Authorization": "Bearer x", "Accept": ACCEPT}
        )
    headers = recorder.last_headers
    assert "authorization" not in headers
    identity = verify_identity_headers(headers, SECRET, audience="http://127.0.0.1:1/mcp")
    assert identity.subject == "alice"
    assert identity.client_id == "client-1"
    assert identity.scopes == {"mcp:tools", "notes:read"}


async def test_r10_an_upstream_session_stays_with_the_caller_who_started_it(
    upstream: tuple[RecordingUpstream, str], http: httpx.AsyncClient
) -> None:
    """R10, MCP security best practices (Session Hijacking): the session id the upstream
    issued to one caller is not usable by another authenticated caller (404, like an unknown
    session, and the upstream never sees the request); the owner's requests reach the upstream
    with the upstream's own id, the sealed one never."""
    recorder, url = upstream
    bob = Principal("bob", "client-2", frozenset({"mcp:tools"}), {}, None, 0)
    pool = UpstreamPool()
    try:
        proxy = HttpProxy(
            UpstreamSettings(name="notes", path="/mcp", url=url, resource="http://gw/mcp"),
            http=pool,
        )

        async def as_caller(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                bob_asks = (b"x-test-as", b"bob") in scope["headers"]
                attach_principal(scope, bob if bob_asks else ALICE)
            await proxy(scope, receive, send)

        async with serve(as_caller) as base:
            started = await http.post(f"{base}/mcp", json=INIT, headers={"Accept": ACCEPT})
            session_id = started.headers["mcp-session-id"]
            seen = len(recorder.requests)
            as_bob = {"Accept": ACCEPT, "Mcp-Session-Id": session_id, "X-Test-As": "bob"}
            stolen = await http.post(f"{base}/mcp", json=INIT, headers=as_bob)
            as_alice = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
            own = await http.post(f"{base}/mcp", json=INIT, headers=as_alice)
            await http.delete(f"{base}/mcp", headers=as_alice)
    finally:
        await pool.aclose()
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == -32001
    assert own.status_code == 200
    assert len(recorder.requests) == seen + 2  # alice's request and her DELETE, not bob's
    assert session_id != "upstream-session-1"
    upstream_ids = [dict(r["headers"]).get("mcp-session-id") for r in recorder.requests[seen:]]
    assert upstream_ids == ["upstream-session-1", "upstream-session-1"]


@pytest.mark.parametrize(
    "target",
    [
        "/mcp/../secret-admin",
        "/mcp/a/../../secret-admin",
        "/mcp/%2e%2e/secret-admin",
        "/mcp/.%2E/%2e./secret-admin",
        "/mcp/..%2fsecret-admin",
        "/mcp/x/..%2F..%2Fsecret-admin",
        "/mcp/..\\secret-admin",
        "/mcp/%5c..%5csecret-admin",
    ],
)
async def test_l2_a_path_that_leaves_the_mount_is_refused(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, target: str
) -> None:
    """Dot segments below the mount path, plain or percent-encoded (%2e, or hidden behind an
    encoded / or a backslash), that would climb above it get 400 and never reach the upstream
    (which would otherwise serve /secret-admin)."""
    recorder, url = upstream
    async with proxied(url=url) as base:
        response = await raw_request(base, "GET", target)
    assert response.status == 400
    error = json.loads(response.body)["error"]
    assert error["code"] == -32600
    assert "/mcp" in error["message"]
    assert recorder.requests == []


async def test_l2_dot_segments_inside_the_mount_are_removed(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory
) -> None:
    """RFC 3986 §5.2.4: a path that stays below the mount path is forwarded without its dot
    segments; other percent-encodings travel as sent."""
    recorder, url = upstream
    async with proxied(url=url) as base:
        for target, seen in [
            ("/mcp/a/../b", "/mcp/b"),
            ("/mcp/./a/%2e/b%20c", "/mcp/a/b%20c"),
            ("/mcp/a/b/..", "/mcp/a/"),
        ]:
            response = await raw_request(base, "GET", target)
            assert response.status == 200, (target, response.body)
            assert recorder.requests[-1]["raw_path"] == seen


async def test_forwarded_headers_of_the_caller_are_replaced_by_the_gateways_own(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """X-Forwarded-*, Forwarded and X-Real-IP a client makes up never reach the upstream (which
    may trust them for logs or rate limits): it gets the client address the gateway saw, the
    scheme and the Host, once each."""
    recorder, url = upstream
    async with proxied(url=url, serve_options=proxy_options([])) as base:
        response = await http.post(
            f"{base}/mcp",
            json=INIT,
            headers={
                "X-Forwarded-For": "6.6.6.6",
                "X-Forwarded-Host": "admin.internal",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Prefix": "/admin",
                "Forwarded": "for=6.6.6.6;host=admin.internal",
                "X-Real-IP": "6.6.6.6",
            },
        )
    assert response.status_code == 200, response.text
    seen = [(k.lower(), v) for k, v in recorder.requests[-1]["headers"]]
    forwarded = sorted(
        (k, v) for k, v in seen if k.startswith("x-forwarded-") or k in ("forwarded", "x-real-ip")
    )
    assert forwarded == [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", base.removeprefix("http://")),
        ("x-forwarded-proto", "http"),
    ]
