"""The gateway end to end: bastion's AS, the gateway and real upstreams, each under uvicorn.

MCP authorization (2026-07-28) for servers: RFC 9728 metadata (R01, R02), challenges (R03,
R06, R07), audience-bound tokens (R04, RFC 8707), no token passthrough (R05), Origin (R11);
MCP transports (streamable HTTP, stdio). Tokens come from the live AS (client_credentials).
"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings
from bastion.gateway import create_gateway_app, verify_identity_headers
from bastion.oauth.www_authenticate import parse_challenges
from tests.gateway.conftest import STDIO_COMMAND
from tests.gateway.stdio_server import build
from tests.gateway.upstream import RecordingUpstream
from tests.support.clients import machine_client
from tests.support.live import free_port, raw_request, serve

IDENTITY_SECRET = "gateway-identity-secret-0123456789abcdef"
ACCEPT = "application/json, text/event-stream"
JSON = {"Content-Type": "application/json"}
MAX_BODY = 64 * 1024
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
}


def tool_call(name: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name}}


@dataclass
class Stack:
    """The running AS and gateway, their settings, a client that may get tokens, and the
    upstreams behind the gateway."""

    issuer: str
    gateway: str
    settings: Settings
    client_id: str
    secret: str
    recorder: RecordingUpstream
    audit_log: Path

    def url(self, name: str) -> str:
        return f"{self.gateway}/mcp/{name}"

    async def token(
        self, resource: str, scope: str = "mcp:tools", *, client: tuple[str, str] | None = None
    ) -> str:
        """An access token for ``resource`` from the client_credentials grant, for the stack's
        client or ``client`` (its id and secret)."""
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{self.issuer}/token",
                data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
                auth=client or (self.client_id, self.secret),
            )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]


@pytest.fixture
async def stack(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Stack]:
    """AS + gateway with three upstreams: ``notes`` (the recording upstream, identity
    forwarded, delete_note needs notes:write), ``sdk`` (an SDK server over HTTP) and ``files``
    (the SDK server over stdio); bodies up to :data:`MAX_BODY` bytes."""
    recorder = RecordingUpstream()
    sdk_server = build()
    as_port, gateway_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    audit_log = tmp_path / "audit.jsonl"
    async with (
        serve(recorder.app) as recorder_base,
        serve(sdk_server.streamable_http_app(streamable_http_path="/mcp")) as sdk_base,
    ):
        settings = make_settings(
            issuer=issuer,
            resources=[
                ResourceSettings(
                    uri=f"{gateway}/mcp/notes", name="notes", scopes=["mcp:tools", "notes:write"]
                ),
                ResourceSettings(uri=f"{gateway}/mcp/sdk", name="sdk", scopes=["mcp:tools"]),
                ResourceSettings(uri=f"{gateway}/mcp/files", name="files", scopes=["mcp:tools"]),
                ResourceSettings(uri=f"{issuer}/elsewhere", name="other", scopes=["mcp:tools"]),
            ],
            gateway={
                "enabled": True,
                "public_url": gateway,
                "identity_secret": IDENTITY_SECRET,
                "audit_log": audit_log,
                "max_body_bytes": MAX_BODY,
                "upstreams": [
                    {
                        "name": "notes",
                        "path": "/mcp/notes",
                        "url": f"{recorder_base}/mcp",
                        "scopes": ["mcp:tools", "notes:write"],
                        "policy": {
                            "default": ["mcp:tools"],
                            "tools": {
                                "delete_note": ["notes:write"],
                                "add_note": ["notes:write"],
                            },
                        },
                        "forward_identity": True,
                        "headers": {"Authorization": "Bearer upstream-credential"},
                    },
                    {
                        "name": "sdk",
                        "path": "/mcp/sdk",
                        "url": f"{sdk_base}/mcp",
                        "scopes": ["mcp:tools"],
                        "policy": {"default": ["mcp:tools"]},
                    },
                    {
                        "name": "files",
                        "path": "/mcp/files",
                        "command": STDIO_COMMAND,
                        "scopes": ["mcp:tools"],
                        "policy": {"default": ["mcp:tools"]},
                    },
                ],
            },
        )
        async with (
            serve(create_app(settings), port=as_port),
            serve(create_gateway_app(settings), port=gateway_port),
        ):
            created = await machine_client(settings, name="service", scope="mcp:tools notes:write")
            try:
                yield Stack(
                    issuer=issuer,
                    gateway=gateway,
                    settings=settings,
                    client_id=created.client_id,
                    secret=created.secret,
                    recorder=recorder,
                    audit_log=audit_log,
                )
            finally:
                recorder.release()


async def test_r01_r02_r03_no_token_is_401_pointing_at_the_resource_metadata(
    stack: Stack,
) -> None:
    """RFC 9728 §5.1, RFC 6750 §3: 401 with resource_metadata and scope; the metadata names the
    upstream's own resource and bastion's AS. Nothing reaches the upstream."""
    async with httpx.AsyncClient() as http:
        response = await http.post(stack.url("notes"), json=INIT, headers={"Accept": ACCEPT})
        assert response.status_code == 401
        challenge, dpop = parse_challenges(response.headers["www-authenticate"])
        assert (challenge.scheme, dpop.scheme) == ("bearer", "dpop")
        metadata_url = f"{stack.gateway}/.well-known/oauth-protected-resource/mcp/notes"
        assert challenge.params["resource_metadata"] == metadata_url
        assert challenge.params["scope"] == "mcp:tools"
        assert "error" not in challenge.params
        metadata = await http.get(metadata_url)
    assert metadata.status_code == 200
    document = metadata.json()
    assert document["resource"] == stack.url("notes")
    assert document["authorization_servers"] == [stack.issuer]
    assert document["scopes_supported"] == ["mcp:tools", "notes:write"]
    assert document["resource_name"] == "notes"
    assert stack.recorder.requests == []


async def test_r04_r05_a_valid_token_is_proxied_but_never_forwarded(stack: Stack) -> None:
    """R04: a token for this upstream's resource is accepted. R05: the upstream gets the
    gateway's configured credential and signed identity headers, never the client's token."""
    token = await stack.token(stack.url("notes"))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            stack.url("notes"),
            json=INIT,
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        )
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"ok": True}
    headers = stack.recorder.last_headers
    assert headers["authorization"] == "Bearer upstream-credential"
    assert token not in json.dumps(stack.recorder.requests[-1]["headers"])
    identity = verify_identity_headers(headers, IDENTITY_SECRET, audience=stack.url("notes"))
    assert identity.client_id == stack.client_id
    assert identity.scopes == {"mcp:tools"}


async def test_r04_a_token_for_another_resource_is_401_invalid_token(stack: Stack) -> None:
    """RFC 8707, MCP authorization "Token Audience Binding": a token whose audience is another
    server (even another upstream of the same gateway) is refused."""
    async with httpx.AsyncClient() as http:
        for resource in (f"{stack.issuer}/elsewhere", stack.url("sdk")):
            token = await stack.token(resource)
            response = await http.post(
                stack.url("notes"),
                json=INIT,
                headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
            )
            assert response.status_code == 401
            [challenge] = parse_challenges(response.headers["www-authenticate"])
            assert challenge.params["error"] == "invalid_token"
    assert stack.recorder.requests == []


async def test_r07_a_tool_needing_another_scope_is_403_naming_every_scope(stack: Stack) -> None:
    """RFC 6750 §3.1, MCP "Runtime Insufficient Scope Errors": 403 insufficient_scope with all
    the scopes the operation needs, so the client can step up; with them the call goes through."""
    narrow = await stack.token(stack.url("notes"), scope="mcp:tools")
    broad = await stack.token(stack.url("notes"), scope="mcp:tools notes:write")
    async with httpx.AsyncClient() as http:
        denied = await http.post(
            stack.url("notes"),
            json=tool_call("delete_note"),
            headers={"Authorization": f"Bearer {narrow}", "Accept": ACCEPT},
        )
        allowed = await http.post(
            stack.url("notes"),
            json=tool_call("delete_note"),
            headers={"Authorization": f"Bearer {broad}", "Accept": ACCEPT},
        )
    assert denied.status_code == 403
    [challenge] = parse_challenges(denied.headers["www-authenticate"])
    assert challenge.params["error"] == "insufficient_scope"
    assert challenge.params["scope"] == "mcp:tools notes:write"
    assert allowed.status_code == 200
    assert len(stack.recorder.requests) == 1


async def test_sse_is_relayed_as_it_arrives_through_the_whole_stack(stack: Stack) -> None:
    """MCP transports: SSE answers pass the audit and resource-server middleware unbuffered:
    the first event reaches the client while the upstream still holds back its response."""
    token = await stack.token(stack.url("notes"))
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            f"{stack.url('notes')}/sse",
            json=tool_call("count"),
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await asyncio.wait_for(anext(lines), 10) == "event: message"
        first = await asyncio.wait_for(anext(lines), 10)
        assert json.loads(first.removeprefix("data: "))["method"] == "notifications/progress"
        assert not stack.recorder.released.is_set()
        stack.recorder.release()
        rest = [line async for line in lines]
    assert any('"done": true' in line for line in rest)


async def test_r11_a_foreign_origin_is_403(stack: Stack) -> None:
    """MCP transports, Security Warning: a present, invalid Origin is refused with 403."""
    token = await stack.token(stack.url("notes"))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            stack.url("notes"),
            json=INIT,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": ACCEPT,
                "Origin": "https://evil.example",
            },
        )
    assert response.status_code == 403
    assert stack.recorder.requests == []


async def test_sdk_client_reaches_an_http_and_a_stdio_upstream_through_the_gateway(
    stack: Stack,
) -> None:
    """The official SDK client, with a bearer token, runs sessions through the gateway to an
    SDK server over streamable HTTP and to the same server over stdio (MCP transports)."""
    for name in ("sdk", "files"):
        token = await stack.token(stack.url(name))
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client,
            streamable_http_client(stack.url(name), http_client=client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = await session.list_tools()
            assert "echo" in {t.name for t in tools.tools}
            echoed = await session.call_tool("echo", {"text": f"via {name}"})
            assert echoed.structured_content == {"result": f"via {name}"}
    records = [r for r in stack.audit() if r["upstream"] in ("sdk", "files")]
    assert {(r["upstream"], r["rpc_method"]) for r in records} >= {
        ("sdk", "initialize"),
        ("sdk", "tools/call"),
        ("files", "tools/list"),
        ("files", "tools/call"),
    }
    assert {r["client_id"] for r in records} == {stack.client_id}
    assert any(r["http_method"] == "DELETE" and r["status"] == 204 for r in records)


async def test_every_request_is_audited_refusals_included_and_never_the_token(
    stack: Stack,
) -> None:
    """One record per request: who, upstream, method, tool, status, latency; 401 and 403 are
    recorded too (the audit sits outside the middleware); the token appears nowhere."""
    token = await stack.token(stack.url("notes"))
    async with httpx.AsyncClient() as http:
        await http.post(stack.url("notes"), json=INIT, headers={"Accept": ACCEPT})
        await http.post(
            stack.url("notes"),
            json=tool_call("delete_note"),
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        )
        await http.post(
            stack.url("notes"),
            json=tool_call("search"),
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        )
    unauthorized, forbidden, ok = stack.audit()
    assert (unauthorized["status"], unauthorized["sub"], unauthorized["client_id"]) == (
        401,
        None,
        None,
    )
    assert (forbidden["status"], forbidden["error"], forbidden["tool"]) == (
        403,
        "insufficient_scope",
        "delete_note",
    )
    assert (ok["status"], ok["rpc_method"], ok["tool"], ok["upstream"]) == (
        200,
        "tools/call",
        "search",
        "notes",
    )
    assert (ok["sub"], ok["client_id"]) == (stack.client_id, stack.client_id)
    assert ok["latency_ms"] >= 0
    assert token not in stack.audit_log.read_text()
    assert stat.S_IMODE(stack.audit_log.stat().st_mode) == 0o600


async def test_a_403_record_names_the_caller_who_was_refused(stack: Stack) -> None:
    """Who was refused matters most in an audit: the token was valid, only its scope fell short."""
    token = await stack.token(stack.url("notes"))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            stack.url("notes"),
            json=tool_call("delete_note"),
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        )
    assert response.status_code == 403
    [forbidden] = stack.audit()
    assert (forbidden["status"], forbidden["client_id"]) == (403, stack.client_id)


async def test_paths_of_no_upstream_are_404(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{stack.gateway}/mcp/unknown", json=INIT)
        root = await http.get(f"{stack.gateway}/")
    assert response.status_code == 404
    assert root.status_code == 404


# -- what the edge refuses, alike for an HTTP and a stdio upstream ------------------------------


async def test_r06_a_repeated_member_or_an_oversized_body_is_refused_before_any_upstream(
    stack: Stack,
) -> None:
    """The gateway reads a body once, with one parser: an object repeating a member (RFC 8259
    §4: names SHOULD be unique; two parsers may pick different copies, so the policy could
    check one tool and the upstream run another) is 400, a body over max_body_bytes 413 (a
    declared length or a chunked one), both before any upstream, HTTP or stdio, sees it."""
    repeated = (
        b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call",'
        b' "params": {"name": "search", "name": "delete_note"}}'
    )
    oversized = json.dumps({**tool_call("search"), "pad": "x" * MAX_BODY}).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(oversized), 8192):
            yield oversized[start : start + 8192]

    async with httpx.AsyncClient() as http:
        for name in ("notes", "files"):
            token = await stack.token(stack.url(name))
            headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT, **JSON}
            response = await http.post(stack.url(name), content=repeated, headers=headers)
            assert response.status_code == 400, (name, response.text)
            assert response.headers["cache-control"] == "no-store"
            assert response.json() == {
                "error": "invalid_request",
                "error_description": "the request body is not valid JSON: send UTF-8 JSON "
                "without repeated members, nested at most 64 levels",
            }
            for body in (oversized, chunked()):
                response = await http.post(stack.url(name), content=body, headers=headers)
                assert response.status_code == 413, (name, response.text)
                assert response.headers["cache-control"] == "no-store"
                assert "www-authenticate" not in response.headers
                assert response.json() == {
                    "error": "invalid_request",
                    "error_description": f"the request body is larger than {MAX_BODY} bytes",
                }
    assert stack.recorder.requests == []
    records = stack.audit()
    assert [(r["upstream"], r["status"]) for r in records] == [
        ("notes", 400),
        ("notes", 413),
        ("notes", 413),
        ("files", 400),
        ("files", 413),
        ("files", 413),
    ]
    # The audit reads the body as the edge read it: a body refused as not JSON names no method.
    assert {r["rpc_method"] for r in records} == {None}


async def test_r10_session_ids_missing_unknown_or_another_callers_get_the_same_answers(
    stack: Stack,
) -> None:
    """MCP transports, "Session Management": a request of the stdio upstream without
    Mcp-Session-Id is 400, with an unknown one 404 (JSON-RPC -32001, the client must
    initialize again); a session the HTTP upstream issued to one caller is, to another caller,
    the same 404 (R10: a session id is not authentication) and never reaches the upstream."""
    missing = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": -32600,
            "message": "Bad Request: Mcp-Session-Id header is required (send initialize first)",
        },
    }
    not_found = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32001, "message": "Session not found"},
    }
    other = (await machine_client(stack.settings, name="other service")).auth
    async with httpx.AsyncClient() as http:
        token = await stack.token(stack.url("files"))
        headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
        response = await http.post(stack.url("files"), json=tool_call("echo"), headers=headers)
        assert response.status_code == 400
        assert response.json() == missing
        unknown = {**headers, "Mcp-Session-Id": "no-such-session"}
        for method in ("POST", "GET", "DELETE"):
            body = tool_call("echo") if method == "POST" else None
            response = await http.request(method, stack.url("files"), json=body, headers=unknown)
            assert response.status_code == 404, (method, response.text)
            assert response.json() == not_found

        token = await stack.token(stack.url("notes"))
        started = await http.post(
            stack.url("notes"),
            json=INIT,
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        )
        session_id = started.headers["mcp-session-id"]
        seen = len(stack.recorder.requests)
        theirs = await stack.token(stack.url("notes"), client=other)
        stolen = await http.post(
            stack.url("notes"),
            json=tool_call("search"),
            headers={
                "Authorization": f"Bearer {theirs}",
                "Accept": ACCEPT,
                "Mcp-Session-Id": session_id,
            },
        )
    assert stolen.status_code == 404
    assert stolen.json() == not_found
    assert len(stack.recorder.requests) == seen


# -- security review findings ----------------------------------------------------------------------


async def test_m1_tools_call_as_text_plain_is_refused(stack: Stack) -> None:
    """The per-tool policy reads JSON bodies only, so a body of another type never reaches the
    upstream: a tools/call sent as text/plain or form-encoded gets 415 saying what to send. A
    body without Content-Type is read by the policy (403 for a tool the token may not call) and
    then refused all the same."""
    narrow = await stack.token(stack.url("notes"), scope="mcp:tools")
    auth = {"Authorization": f"Bearer {narrow}", "Accept": ACCEPT}
    forbidden = json.dumps(tool_call("delete_note")).encode()
    allowed = json.dumps(tool_call("search")).encode()
    async with httpx.AsyncClient() as http:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = await http.post(
                stack.url("notes"),
                content=forbidden,
                headers={**auth, "Content-Type": content_type},
            )
            assert response.status_code == 415, (content_type, response.text)
            assert response.json() == {
                "error": "invalid_request",
                "error_description": "the request body must be JSON; it was sent with "
                f"Content-Type {content_type!r}. Send it with 'Content-Type: application/json'",
            }
        untyped = await http.post(stack.url("notes"), content=forbidden, headers=auth)
        assert untyped.status_code == 403
        untyped = await http.post(stack.url("notes"), content=allowed, headers=auth)
        assert untyped.status_code == 415
        assert "no Content-Type" in untyped.json()["error_description"]
    assert stack.recorder.requests == []


async def test_m1_batch_is_checked_message_by_message(stack: Stack) -> None:
    """Every message of a JSON-RPC batch counts: [ping, tools/call add_note] with a token that
    lacks notes:write is 403 and reaches nobody; JSON sent as application/json or a +json type
    still goes through."""
    narrow = await stack.token(stack.url("notes"), scope="mcp:tools")
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, tool_call("add_note")]
    headers = {"Authorization": f"Bearer {narrow}", "Accept": ACCEPT}
    async with httpx.AsyncClient() as http:
        denied = await http.post(stack.url("notes"), json=batch, headers=headers)
        assert denied.status_code == 403
        [challenge] = parse_challenges(denied.headers["www-authenticate"])
        assert challenge.params["scope"] == "mcp:tools notes:write"
        assert stack.recorder.requests == []
        for content_type in ("application/json; charset=utf-8", "application/vnd.x+json"):
            allowed = await http.post(
                stack.url("notes"),
                content=json.dumps(tool_call("search")).encode(),
                headers={**headers, "Content-Type": content_type},
            )
            assert allowed.status_code == 200, allowed.text
    assert len(stack.recorder.requests) == 2


async def test_l1_every_message_of_a_batch_is_audited(stack: Stack) -> None:
    """[ping, tools/call add_note] runs add_note: the audit has a record per message, each with
    its own method, tool and id, whether the batch was let through or refused."""
    broad = await stack.token(stack.url("notes"), scope="mcp:tools notes:write")
    narrow = await stack.token(stack.url("notes"), scope="mcp:tools")
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, tool_call("add_note")]
    async with httpx.AsyncClient() as http:
        for token, status in ((broad, 200), (narrow, 403)):
            response = await http.post(
                f"{stack.url('notes')}/batch",
                json=batch,
                headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
            )
            assert response.status_code == status, response.text
    records = stack.audit()
    assert [(r["rpc_method"], r["tool"], r["rpc_id"], r["status"]) for r in records] == [
        ("ping", None, 1, 200),
        ("tools/call", "add_note", 2, 200),
        ("ping", None, 1, 403),
        ("tools/call", "add_note", 2, 403),
    ]
    assert {r["client_id"] for r in records} == {stack.client_id}


async def test_l2_dot_segments_below_a_mount_path_are_refused(stack: Stack) -> None:
    """/mcp/notes/../../secret-admin with a good token is 400 at the gateway: the upstream never
    sees a path with dot segments."""
    token = await stack.token(stack.url("notes"))
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    body = json.dumps(INIT).encode()
    for target in ("/mcp/notes/../../secret-admin", "/mcp/notes/%2e%2e/%2E%2E/secret-admin"):
        response = await raw_request(stack.gateway, "POST", target, headers, body)
        assert response.status == 400, response.body
        assert "leave this MCP server's path" in json.loads(response.body)["error"]["message"]
    assert stack.recorder.requests == []


async def test_l7_deeply_nested_json_is_400_and_a_deep_token_401(stack: Stack) -> None:
    """A body of nested arrays (deeper than 64 levels, whether or not Python's parser would
    cope) is 400 invalid_request for every upstream; a bearer token whose header is nested
    arrays is 401 invalid_token. Neither is a 500, neither reaches an upstream."""
    async with httpx.AsyncClient() as http:
        for name in ("notes", "files"):
            token = await stack.token(stack.url(name))
            auth = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
            for depth in (20_000, 900, 65):
                body = b"[" * depth + b"]" * depth
                response = await http.post(stack.url(name), content=body, headers={**auth, **JSON})
                assert response.status_code == 400, (name, depth, response.text)
                assert response.json()["error"] == "invalid_request"
                assert "nested at most 64 levels" in response.json()["error_description"]
        header = base64.urlsafe_b64encode(b"[" * 10_000).rstrip(b"=").decode()
        response = await http.post(
            stack.url("notes"),
            json=INIT,
            headers={"Authorization": f"Bearer {header}.e30.c2ln", "Accept": ACCEPT},
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_token"
    assert stack.recorder.requests == []
