"""bastion's demo MCP server (:mod:`bastion.demo`, built with the official ``mcp`` SDK's
MCPServer, formerly FastMCP, with default settings: stateful sessions, answers as SSE streams)
as an upstream of the gateway benchmarks.

- ``uvicorn --factory benchmarks.mcp_demo:http_app``: streamable HTTP at /mcp, and GET /ready.
- ``python -m bastion.demo``: the same server on stdio (:data:`STDIO_COMMAND`).
"""

from __future__ import annotations

import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from bastion.demo.server import demo_app

STDIO_COMMAND = [sys.executable, "-m", "bastion.demo"]


async def _ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ready")


def http_app() -> Starlette:
    """The demo over streamable HTTP at /mcp, with GET /ready."""
    app = demo_app()
    app.add_route("/ready", _ready)
    return app


__all__ = ["STDIO_COMMAND", "http_app"]
