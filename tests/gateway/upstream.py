"""A small streamable-HTTP-like upstream that records what reaches it, for the proxy tests.

Routes (all under /mcp):

- POST /mcp: answers the JSON-RPC request with JSON; the result echoes the headers it received.
  Answers with ``Mcp-Session-Id``, ``MCP-Protocol-Version``, a ``Set-Cookie`` and a
  ``WWW-Authenticate`` (the last two must not reach the client).
- POST /mcp/sse: an SSE answer: a progress event, then (once the test calls ``release``) the
  response event. A proxy that buffers would never deliver the first event before the release.
- GET /mcp: an SSE stream with one event, then open until the client leaves (``closed`` is set).
- DELETE /mcp: 204.
- POST /mcp/slow: answers only after ``release`` (for the 504 test); ``slow_abandoned`` is set
  when its client (the proxy) closes the connection first.
- POST /mcp/unauthorized: 401 with a challenge (for the gateway credential test).
- POST /mcp/gzip: a JSON answer compressed even though the client asked for identity.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class RecordingUpstream:
    """The upstream app plus what the tests look at: requests seen and stream events."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.released = asyncio.Event()
        self.stream_closed = asyncio.Event()
        # Set when a client of /mcp/slow left before it was released.
        self.slow_abandoned = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/mcp", self.mcp, methods=["GET", "POST", "DELETE"]),
                Route("/mcp/sse", self.sse, methods=["POST"]),
                Route("/mcp/slow", self.slow, methods=["POST"]),
                Route("/mcp/unauthorized", self.unauthorized, methods=["POST"]),
                Route("/mcp/gzip", self.gzipped, methods=["POST"]),
                Route("/mcp/{below:path}", self.below, methods=["GET", "POST"]),
            ]
        )

    def release(self) -> None:
        self.released.set()

    async def _record(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        seen = {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "query": request.url.query,
            "headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            "body": body,
        }
        self.requests.append(seen)
        return seen

    @property
    def last_headers(self) -> dict[str, str]:
        """Headers of the last request, names lowercased (repeated names: the last value)."""
        return {k.lower(): v for k, v in self.requests[-1]["headers"]}

    async def mcp(self, request: Request) -> Response:
        seen = await self._record(request)
        if request.method == "DELETE":
            return Response(status_code=204)
        if request.method == "GET":
            return StreamingResponse(self._get_stream(), media_type="text/event-stream")
        message = json.loads(seen["body"])
        response = JSONResponse(
            {"jsonrpc": "2.0", "id": message.get("id"), "result": {"ok": True}},
            headers={
                "Mcp-Session-Id": "upstream-session-1",
                "MCP-Protocol-Version": "2025-11-25",
                "WWW-Authenticate": 'Bearer realm="upstream"',
                "X-Upstream": "yes",
            },
        )
        response.set_cookie("upstream", "secret-cookie")
        return response

    async def _get_stream(self) -> AsyncIterator[bytes]:
        try:
            yield b'id: 1\nevent: message\ndata: {"jsonrpc":"2.0","method":"notifications/x"}\n\n'
            await asyncio.Event().wait()  # until the client leaves
        finally:
            self.stream_closed.set()

    async def sse(self, request: Request) -> Response:
        seen = await self._record(request)
        request_id = json.loads(seen["body"]).get("id")

        async def events() -> AsyncIterator[bytes]:
            try:
                progress = {
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {"progressToken": 1, "progress": 1},
                }
                yield b"event: message\ndata: " + json.dumps(progress).encode() + b"\n\n"
                await self.released.wait()
                final = {"jsonrpc": "2.0", "id": request_id, "result": {"done": True}}
                yield b"event: message\ndata: " + json.dumps(final).encode() + b"\n\n"
            finally:
                self.stream_closed.set()

        # As the MCP Python SDK does: an upstream that asks for no buffering itself.
        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    async def slow(self, request: Request) -> Response:
        await self._record(request)
        released = asyncio.ensure_future(self.released.wait())
        left = asyncio.ensure_future(_client_left(request))
        await asyncio.wait({released, left}, return_when=asyncio.FIRST_COMPLETED)
        released.cancel()
        left.cancel()
        if left.done() and not left.cancelled():
            self.slow_abandoned.set()
        return JSONResponse({"jsonrpc": "2.0", "id": 1, "result": {}})

    async def unauthorized(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(
            {"error": "invalid_token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    async def gzipped(self, request: Request) -> Response:
        await self._record(request)
        body = gzip.compress(b'{"jsonrpc":"2.0","id":1,"result":{"zipped":true}}')
        return Response(body, media_type="application/json", headers={"Content-Encoding": "gzip"})

    async def below(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"path": request.url.path, "query": request.url.query})


async def _client_left(request: Request) -> None:
    """Return when the client of ``request`` (its body read) closes the connection."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


__all__ = ["RecordingUpstream"]
