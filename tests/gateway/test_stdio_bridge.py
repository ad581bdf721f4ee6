"""The stdio bridge: a stdio MCP server served over streamable HTTP, one process per session.

MCP transports (2025-11-25): "stdio" (newline-delimited JSON-RPC, stderr for logs) and
"Streamable HTTP" (Sending Messages, Listening for Messages, Session Management, Protocol
Version Header). The server is a real one built with the ``mcp`` SDK (stdio_server.py); the
client is the SDK's streamable HTTP client where it fits, raw HTTP for the error cases.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import LoggingMessageNotificationParams

from bastion.config import UpstreamSettings
from bastion.gateway.stdio_bridge import StdioBridge
from bastion.resource.principal import Principal
from tests.gateway.conftest import ALICE, STDIO_COMMAND, with_principal
from tests.support.live import serve

ACCEPT = "application/json, text/event-stream"
HANDSHAKE = "2025-11-25"
BOB = Principal(
    subject="bob",
    client_id="client-2",
    scopes=frozenset({"mcp:tools"}),
    claims={},
    token_id=None,
    expires_at=0,
)


def initialize(request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"},
        },
    }


def call(request_id: int, tool: str, **arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def events(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a complete SSE body."""
    return [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def until(predicate: Any, what: str) -> None:
    """Wait (bounded) until ``predicate()`` holds."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting until {what}")


@asynccontextmanager
async def bridged(
    principal: Principal | None = ALICE, *, max_body_bytes: int = 4 * 1024 * 1024, **fields: Any
) -> AsyncIterator[tuple[StdioBridge, str]]:
    """A StdioBridge for the SDK test server at /mcp under uvicorn; yields it and the URL."""
    values: dict[str, Any] = {"name": "stdio", "path": "/mcp", "command": STDIO_COMMAND, **fields}
    bridge = StdioBridge(UpstreamSettings(**values), grace=1.0, max_body_bytes=max_body_bytes)
    await bridge.start()
    try:
        async with serve(with_principal(bridge, principal)) as base:
            yield bridge, f"{base}/mcp"
    finally:
        await bridge.aclose()


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[StdioBridge, str]]:
    async with bridged() as running:
        yield running


async def open_session(http: httpx.AsyncClient, url: str) -> str:
    """Initialize a session with raw HTTP; return its id."""
    response = await http.post(url, json=initialize(), headers={"Accept": ACCEPT})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream"
    [answer] = events(response)
    assert answer["result"]["protocolVersion"] == HANDSHAKE
    session_id = response.headers["mcp-session-id"]
    headers = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
    acknowledged = await http.post(url, json=INITIALIZED, headers=headers)
    assert acknowledged.status_code == 202
    assert acknowledged.content == b""
    return session_id


async def test_sdk_client_initializes_lists_and_calls_tools_and_delete_ends_the_process(
    bridge: tuple[StdioBridge, str],
) -> None:
    """The official SDK client, unmodified, runs a whole session through the bridge: initialize
    (new session id), tools/list, tools/call with progress and log notifications on the POST's
    stream; closing the client sends DELETE, which ends the process."""
    running, url = bridge
    progress: list[float] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async with (
        httpx2.AsyncClient(timeout=10) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write, logging_callback=on_log) as session,
    ):
        result = await session.initialize()
        assert result.server_info.name == "bastion-test-server"
        assert len(running.sessions) == 1
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} >= {"echo", "add", "pid", "count"}
        added = await session.call_tool("add", {"a": 2, "b": 3})
        assert added.structured_content == {"result": 5}
        counted = await session.call_tool("count", {"n": 3}, progress_callback=on_progress)
        assert counted.structured_content == {"result": "counted 3"}
        pid_result = await session.call_tool("pid", {})
        pid = pid_result.structured_content["result"]  # type: ignore[union-attr,index]
        assert not gone(pid)
    assert progress == [1, 2, 3]
    assert logs == ["step 1", "step 2", "step 3"]
    assert running.sessions == {}
    assert gone(pid)


async def test_each_session_gets_its_own_process(bridge: tuple[StdioBridge, str]) -> None:
    """One process per session: two initializations, two session ids, two processes."""
    running, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        first = await open_session(http, url)
        second = await open_session(http, url)
    assert first != second
    pids = {s.process.pid for s in running.sessions.values()}
    assert len(pids) == 2


async def test_post_without_session_id_is_400_and_unknown_session_404(
    bridge: tuple[StdioBridge, str],
) -> None:
    """Session Management: requests other than initialize must carry the session id (400
    without); an id the server does not know is 404 (the client must re-initialize)."""
    _, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        missing = await http.post(url, json=call(2, "echo", text="x"), headers={"Accept": ACCEPT})
        unknown = await http.post(
            url,
            json=call(2, "echo", text="x"),
            headers={"Accept": ACCEPT, "Mcp-Session-Id": "no-such-session"},
        )
        delete_unknown = await http.delete(url, headers={"Mcp-Session-Id": "no-such-session"})
    assert missing.status_code == 400
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == -32001
    assert delete_unknown.status_code == 404


async def test_r10_a_session_id_is_not_authentication(bridge: tuple[StdioBridge, str]) -> None:
    """R10, MCP security best practices (Session Hijacking): a session belongs to the caller
    who created it; another authenticated caller presenting its id gets 404."""
    running, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        session_id = await open_session(http, url)
    async with (
        serve(with_principal(running, BOB)) as other,
        httpx.AsyncClient(timeout=10) as http,
    ):
        headers = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
        stolen = await http.post(f"{other}/mcp", json=call(2, "pid"), headers=headers)
        deleted = await http.delete(f"{other}/mcp", headers=headers)
    assert stolen.status_code == 404
    assert deleted.status_code == 404
    assert session_id in running.sessions


async def test_accept_content_type_and_protocol_version_are_checked(
    bridge: tuple[StdioBridge, str],
) -> None:
    """Sending Messages: Accept must list both types (406); the body is JSON (415); Protocol
    Version Header: a version other than the negotiated one is 400."""
    _, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        session_id = await open_session(http, url)
        no_sse = await http.post(url, json=initialize(), headers={"Accept": "application/json"})
        form = await http.post(
            url, content=b"a=b", headers={"Accept": ACCEPT, "Content-Type": "text/plain"}
        )
        wrong_version = await http.post(
            url,
            json=call(2, "echo", text="x"),
            headers={
                "Accept": ACCEPT,
                "Mcp-Session-Id": session_id,
                "MCP-Protocol-Version": "1999-01-01",
            },
        )
        right_version = await http.post(
            url,
            json=call(3, "echo", text="x"),
            headers={
                "Accept": ACCEPT,
                "Mcp-Session-Id": session_id,
                "MCP-Protocol-Version": HANDSHAKE,
            },
        )
        not_json = await http.post(
            url,
            content=b"{oops",
            headers={"Accept": ACCEPT, "Content-Type": "application/json"},
        )
    assert no_sse.status_code == 406
    assert form.status_code == 415
    assert wrong_version.status_code == 400
    assert right_version.status_code == 200
    assert events(right_version)[-1]["result"]["structuredContent"] == {"result": "x"}
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == -32700


async def test_get_stream_is_single_per_session_and_needs_a_session(
    bridge: tuple[StdioBridge, str],
) -> None:
    """Listening for Messages: GET opens the session's stream for unsolicited messages; the
    bridge allows one at a time (409 for a second)."""
    _, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        session_id = await open_session(http, url)
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id}
        no_session = await http.get(url, headers={"Accept": "text/event-stream"})
        async with http.stream("GET", url, headers=headers) as first:
            assert first.status_code == 200
            assert first.headers["content-type"] == "text/event-stream"
            second = await http.get(url, headers=headers)
    assert no_session.status_code == 400
    assert second.status_code == 409


async def test_unrelated_server_messages_go_to_the_get_stream_or_wait_for_one(
    bridge: tuple[StdioBridge, str],
) -> None:
    """Listening for Messages: messages unrelated to a request (here tools/list_changed) go to
    the GET stream, not the POST's; sent while no GET stream is open, they wait for one."""
    _, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        session_id = await open_session(http, url)
        post_headers = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
        get_headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id}
        before = await http.post(url, json=call(2, "changed"), headers=post_headers)
        assert [m.get("id") for m in events(before)] == [2]
        async with http.stream("GET", url, headers=get_headers) as stream:
            lines = stream.aiter_lines()
            waiting = [await asyncio.wait_for(anext(lines), 10) for _ in range(3)]
            during = await http.post(url, json=call(3, "changed"), headers=post_headers)
            live = [await asyncio.wait_for(anext(lines), 10) for _ in range(3)]
    assert [m.get("id") for m in events(during)] == [3]
    for got in (waiting, live):
        assert got[0] == "event: message"
        message = json.loads(got[1].removeprefix("data: "))
        assert message["method"] == "notifications/tools/list_changed"


async def test_process_exit_answers_open_requests_and_ends_the_session(
    bridge: tuple[StdioBridge, str],
) -> None:
    """A stdio server that exits ends its session: the request it left open gets a JSON-RPC
    error, and the session id is then unknown (404)."""
    running, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        session_id = await open_session(http, url)
        pid = running.sessions[session_id].process.pid
        headers = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
        crashed = await http.post(url, json=call(9, "crash", code=3), headers=headers)
        assert crashed.status_code == 200
        [answer] = events(crashed)
        assert answer["id"] == 9
        assert answer["error"]["code"] == -32000
        await until(lambda: session_id not in running.sessions, "the session is removed")
        after = await http.post(url, json=call(10, "pid"), headers=headers)
    assert after.status_code == 404
    await until(lambda: gone(pid), "the process is reaped")


async def test_idle_sessions_are_reaped() -> None:
    """Sessions without traffic for session_idle_timeout lose their process."""
    async with bridged(session_idle_timeout=0.2) as (running, url):
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await open_session(http, url)
        pid = running.sessions[session_id].process.pid
        await until(lambda: not running.sessions, "the idle session is reaped")
        await until(lambda: gone(pid), "its process ends")


async def test_shutdown_terminates_every_process() -> None:
    """The gateway's shutdown (StdioBridge.aclose) ends all sessions' processes."""
    async with bridged() as (running, url):
        async with httpx.AsyncClient(timeout=10) as http:
            await open_session(http, url)
            await open_session(http, url)
        pids = [s.process.pid for s in running.sessions.values()]
    assert running.sessions == {}
    assert all(gone(pid) for pid in pids)


async def test_max_sessions_is_503_and_a_missing_command_502(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Processes are bounded per upstream; a command that cannot start is a bad gateway."""
    async with bridged(max_sessions=1) as (_, url), httpx.AsyncClient(timeout=10) as http:
        await open_session(http, url)
        refused = await http.post(url, json=initialize(), headers={"Accept": ACCEPT})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    caplog.set_level(logging.ERROR, "bastion.gateway.stdio")
    missing = [sys.executable + "-does-not-exist"]
    async with bridged(command=missing) as (_, url), httpx.AsyncClient(timeout=10) as http:
        response = await http.post(url, json=initialize(), headers={"Accept": ACCEPT})
    assert response.status_code == 502
    assert "'stdio'" in response.json()["error"]["message"]
    assert "check upstreams.command" in caplog.text


async def test_l9_one_subject_cannot_take_every_stdio_session() -> None:
    """L9: of requests to start sessions one user sends at once, max_sessions_per_subject start
    a process; the others get 429 with Retry-After and a JSON-RPC error, and start none (those
    still starting count). Another user still gets a session; ending one of the first user's
    lets them start one again."""
    async with bridged() as (running, url), httpx.AsyncClient(timeout=30) as http:
        limit = running.upstream.max_sessions_per_subject
        answers = await asyncio.gather(
            *(http.post(url, json=initialize(), headers={"Accept": ACCEPT}) for _ in range(8))
        )
        assert sorted(a.status_code for a in answers) == [200] * limit + [429] * (8 - limit)
        refused = next(a for a in answers if a.status_code == 429)
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= running.upstream.session_idle_timeout
        assert refused.json()["error"]["code"] == -32000
        assert "mcp-session-id" not in refused.headers
        assert len(running.sessions) == limit
        async with serve(with_principal(running, BOB)) as other:
            theirs = await http.post(f"{other}/mcp", json=initialize(), headers={"Accept": ACCEPT})
            assert theirs.status_code == 200
        mine = next(a for a in answers if a.status_code == 200).headers["mcp-session-id"]
        assert (await http.delete(url, headers={"Mcp-Session-Id": mine})).status_code == 204
        again = await http.post(url, json=initialize(), headers={"Accept": ACCEPT})
        assert again.status_code == 200


async def test_stderr_of_the_process_is_logged(
    bridge: tuple[StdioBridge, str], caplog: pytest.LogCaptureFixture
) -> None:
    """stdio: the server MAY log to stderr; the bridge captures it in its log."""
    caplog.set_level(logging.INFO, "bastion.gateway.stdio")
    _, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        await open_session(http, url)
    await until(lambda: "stdio test server starting" in caplog.text, "stderr is logged")


async def test_paths_below_the_endpoint_are_404(bridge: tuple[StdioBridge, str]) -> None:
    _, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{url}/below", json=initialize(), headers={"Accept": ACCEPT})
    assert response.status_code == 404


async def test_l7_deeply_nested_json_is_a_json_rpc_parse_error(
    bridge: tuple[StdioBridge, str],
) -> None:
    """The bridge parses bodies itself: nested arrays deeper than 64 levels are a 400 JSON-RPC
    parse error (-32700) saying so, never a 500."""
    _, url = bridge
    async with httpx.AsyncClient(timeout=10) as http:
        for depth in (20_000, 900):
            response = await http.post(
                url,
                content=b"[" * depth + b"]" * depth,
                headers={"Accept": ACCEPT, "Content-Type": "application/json"},
            )
            assert response.status_code == 400, response.text
            assert response.json()["error"] == {
                "code": -32700,
                "message": "the body is not valid JSON: JSON nested deeper than 64 levels",
            }


async def test_a_body_repeating_a_member_or_over_the_limit_is_refused() -> None:
    """The bridge reads bodies with the gateway's one JSON-RPC reader, whoever stands in front
    of it: an object repeating a member (RFC 8259 §4; another parser could pick the other copy)
    or a body that is not UTF-8 is a 400 JSON-RPC parse error, a body over max_body_bytes 413;
    no process starts."""
    async with (
        bridged(max_body_bytes=1024) as (running, url),
        httpx.AsyncClient(timeout=10) as http,
    ):
        headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
        repeated = json.dumps(initialize())[:-1].encode() + b', "method": "tools/list"}'
        response = await http.post(url, content=repeated, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32700,
                "message": "the body is not valid JSON: repeated member 'method'",
            },
        }
        # RFC 8259 §8.1: JSON between systems is UTF-8; other encodings are not guessed at.
        utf16 = json.dumps(initialize()).encode("utf-16")
        response = await http.post(url, content=utf16, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == {"code": -32700, "message": "the body is not valid JSON"}
        padded = {**initialize(), "pad": "x" * 1024}
        response = await http.post(url, json=padded, headers={"Accept": ACCEPT})
        assert response.status_code == 413
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32600, "message": "the request body is larger than 1024 bytes"},
        }
    assert running.sessions == {}
