"""Tiny apps to put behind the resource-server middleware in tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bastion.resource import Principal

RESOURCE = "http://localhost/mcp"
PRM_URL = "http://localhost/.well-known/oauth-protected-resource/mcp"


async def echo(request: Request) -> Response:
    """Say who called, with which scopes, and give the body back byte for byte."""
    principal: Principal = request.state.principal
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "subject": principal.subject,
            "client_id": principal.client_id,
            "scopes": sorted(principal.scopes),
            "same_in_scope": request.scope["bastion.principal"] is principal,
            "calls": [list(c) for c in request.scope.get("bastion.calls", ())],
            "body": body.decode("latin-1"),
        }
    )


async def public(request: Request) -> Response:
    return PlainTextResponse("public")


def echo_app(gate: asyncio.Event | None = None, state: dict[str, Any] | None = None) -> Starlette:
    """/mcp (and below) echo; /public is not protected; /stream streams two chunks with a pause
    until ``gate`` is set; the lifespan records that it ran in ``state``."""

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            if gate is not None:
                await gate.wait()
            yield b"data: second\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if state is not None:
            state["lifespan"] = "started"
        yield

    methods = ["GET", "POST", "DELETE", "PUT", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/mcp", echo, methods=methods),
            Route("/mcp/stream", stream),
            Route("/mcp/{rest:path}", echo, methods=methods),
            Route("/public", public),
            Route("/api/{rest:path}", echo, methods=methods),
        ],
        lifespan=lifespan,
    )
