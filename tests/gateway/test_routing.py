"""The gateway's own ASGI routing (bastion.gateway.routing), served by uvicorn: refusals at an
upstream's path, its metadata, the probes before any route, 404 elsewhere, WebSocket handshakes
closed, and the route templates the access log names."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import websockets

from bastion.config import Settings
from bastion.gateway import create_gateway_app
from bastion.ops.request_id import ACCESS_LOGGER
from tests.support.live import free_port, serve

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}


@pytest.fixture
async def gateway(make_settings: Callable[..., Settings]) -> AsyncIterator[str]:
    """A gateway with two HTTP upstreams (neither reached by these tests) on a real server."""
    port = free_port()
    settings = make_settings(
        issuer=f"http://127.0.0.1:{free_port()}",
        gateway={
            "enabled": True,
            "public_url": f"http://127.0.0.1:{port}",
            "upstreams": [
                {"name": "notes", "path": "/mcp/notes", "url": "http://127.0.0.1:9/mcp"},
                {"name": "files", "path": "/mcp/files", "url": "http://127.0.0.1:9/mcp"},
            ],
        },
    )
    async with serve(create_gateway_app(settings), port=port) as base:
        yield base


async def test_no_token_at_either_upstream_or_below_it_is_401_naming_its_resource(
    gateway: str,
) -> None:
    async with httpx.AsyncClient() as http:
        answers = {
            path: await http.post(f"{gateway}{path}", json=INIT)
            for path in ("/mcp/notes", "/mcp/notes/below", "/mcp/files", "/mcp/files/")
        }
    for path, answer in answers.items():
        assert answer.status_code == 401, path
        assert answer.json()["error"] == "unauthorized"
        name = path.split("/")[2]
        metadata = f"{gateway}/.well-known/oauth-protected-resource/mcp/{name}"
        assert f'resource_metadata="{metadata}"' in answer.headers["www-authenticate"]
        assert answer.headers["x-request-id"]


async def test_a_foreign_origin_is_403_before_any_token_check(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{gateway}/mcp/notes",
            json=INIT,
            headers={"Origin": "https://evil.example", "Authorization": "Bearer abc"},
        )
    assert answer.status_code == 403
    assert answer.json()["error"] == "invalid_origin"


async def test_each_upstream_serves_its_own_metadata(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        notes = await http.get(f"{gateway}/.well-known/oauth-protected-resource/mcp/notes")
        files = await http.get(f"{gateway}/.well-known/oauth-protected-resource/mcp/files")
    assert (notes.status_code, files.status_code) == (200, 200)
    assert notes.json()["resource"].endswith("/mcp/notes")
    assert files.json()["resource"].endswith("/mcp/files")


async def test_probes_answer_and_other_paths_are_404_for_any_method(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{gateway}/healthz")
        answers = [
            await http.request(method, f"{gateway}{path}")
            for method, path in (("GET", "/"), ("POST", "/mcp"), ("PATCH", "/mcp/notesx"))
        ]
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    for answer in answers:
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == "no MCP server at this path"


async def test_websocket_handshakes_are_closed(gateway: str) -> None:
    url = gateway.replace("http://", "ws://") + "/mcp/notes"
    with pytest.raises(websockets.exceptions.WebSocketException):
        async with websockets.connect(url, open_timeout=5) as socket:
            await socket.recv()


async def test_the_access_log_names_route_templates(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    async with httpx.AsyncClient() as http:
        for path in ("/mcp/notes", "/mcp/notes/a/b", "/elsewhere"):
            await http.post(f"{gateway}{path}", json=INIT)
    routes = [r.route for r in caplog.records if r.name == ACCESS_LOGGER]  # type: ignore[attr-defined]
    assert routes == ["/mcp/notes", "/mcp/notes/{below:path}", "/{anything:path}"]
    assert json.dumps(routes)  # plain strings, never a raw path
