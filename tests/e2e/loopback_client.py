"""The loopback side of a native MCP client: where the browser lands after the AS is done.

One small Starlette app on 127.0.0.1 that records the query of every ``GET /callback`` (the
authorization response, RFC 6749 §4.1.2) and, for a CIMD client, serves the client's metadata
document at ``/client.json`` (draft-ietf-oauth-client-id-metadata-document §3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tests.support.live import serve

CLOSE_WINDOW = "You can close this window"


class LoopbackClient:
    """A running loopback callback server and, optionally, the client's metadata document."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.base = ""
        self.callbacks: list[dict[str, str]] = []

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/callback"

    @property
    def document_url(self) -> str:
        """The CIMD client_id: the URL of the document that describes this client."""
        return f"{self.base}/client.json"

    def document(self) -> dict[str, Any]:
        return {
            "client_id": self.document_url,
            "client_name": self.name,
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }

    def app(self) -> Starlette:
        async def callback(request: Request) -> PlainTextResponse:
            self.callbacks.append(dict(request.query_params))
            return PlainTextResponse(CLOSE_WINDOW)

        async def client_json(request: Request) -> JSONResponse:
            return JSONResponse(self.document(), headers={"Cache-Control": "max-age=60"})

        return Starlette(
            routes=[
                Route("/callback", callback, methods=["GET"]),
                Route("/client.json", client_json, methods=["GET"]),
            ]
        )


@asynccontextmanager
async def loopback_client(name: str) -> AsyncIterator[LoopbackClient]:
    """Run a :class:`LoopbackClient` on a free loopback port until the block ends."""
    client = LoopbackClient(name)
    async with serve(client.app()) as base:
        client.base = base
        yield client
