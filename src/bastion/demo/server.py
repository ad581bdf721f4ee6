"""A small MCP server to try bastion with: a few tools, one of which the quickstart's gateway
guards with an extra scope (``notes:write``) to show step-up authorization.

It knows nothing of OAuth: the gateway in front of it does that. Run it over stdio with
``python -m bastion.demo`` or over streamable HTTP with :func:`demo_app`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette

INSTRUCTIONS = (
    "A demo server behind mcp-bastion. echo and add need mcp:tools; add_note also needs "
    "notes:write, which the gateway asks for when you first call it (step-up authorization)."
)


def build_demo_server() -> MCPServer:
    """A fresh demo server; its notes live in this instance only."""
    server: MCPServer = MCPServer(name="bastion-demo", instructions=INSTRUCTIONS, version="1")
    notes: list[str] = []

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @server.tool()
    def list_notes() -> list[str]:
        """The notes written so far."""
        return list(notes)

    @server.tool()
    def add_note(text: str) -> str:
        """Write a note (needs the notes:write scope at the gateway)."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        notes.append(f"{stamp} {text}")
        return f"note {len(notes)} saved"

    return server


def demo_app() -> Starlette:
    """The demo server as a streamable HTTP app at /mcp."""
    return build_demo_server().streamable_http_app(streamable_http_path="/mcp")


__all__ = ["INSTRUCTIONS", "build_demo_server", "demo_app"]
