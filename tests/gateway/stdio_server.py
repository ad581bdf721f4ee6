"""A tiny MCP server built with the official ``mcp`` SDK, for the gateway tests.

``python tests/gateway/stdio_server.py`` serves it on stdio (the stdio bridge tests);
``build().streamable_http_app()`` gives the same server over streamable HTTP (:func:`http_app`
for uvicorn in a process of its own).
"""

from __future__ import annotations

import os
import sys
import warnings

from mcp.server.mcpserver import Context, MCPServer
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse

warnings.filterwarnings("ignore", message="The logging capability is deprecated")


def build() -> MCPServer:
    """A fresh server (an SDK server's HTTP session manager runs only once)."""
    server = MCPServer(name="bastion-test-server")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def pid() -> int:
        """The server's process id (tests check the process ends with its session)."""
        return os.getpid()

    @server.tool()
    async def count(n: int, ctx: Context) -> str:
        """Report progress and a log message n times, then answer."""
        for i in range(n):
            await ctx.report_progress(i + 1, n)
            await ctx.info(f"step {i + 1}")
        return f"counted {n}"

    @server.tool()
    async def changed(ctx: Context) -> str:
        """Announce a changed tool list (a notification unrelated to the request)."""
        await ctx.request_context.session.send_tool_list_changed()
        return "announced"

    @server.tool()
    def delete_note(name: str) -> str:
        """A tool the gateway's policy guards with an extra scope."""
        return f"deleted {name}"

    @server.tool()
    def crash(code: int) -> str:
        """Exit at once, without answering (tests check the session ends with its process)."""
        sys.stdout.flush()
        os._exit(code)

    return server


def http_app() -> Starlette:
    """The server over streamable HTTP at /mcp (``uvicorn --factory ...:http_app``), and
    GET /ready answering 200 once it runs."""
    app = build().streamable_http_app(streamable_http_path="/mcp")
    app.add_route("/ready", lambda _: PlainTextResponse("ready"))
    return app


if __name__ == "__main__":
    print("stdio test server starting", file=sys.stderr, flush=True)
    build().run("stdio")
