"""A token endpoint on loopback that answers every request with one fixed response, for the
tests of how bastion's client and federation read token responses (RFC 6749 §5.1, §5.2)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.live import serve


@asynccontextmanager
async def token_endpoint(
    status: int, body: object, media_type: str = "application/json"
) -> AsyncIterator[str]:
    """Serve ``body`` (JSON-encoded unless it is bytes) with ``status`` on POST /token under
    uvicorn on 127.0.0.1; yield the endpoint's URL. The requests it got are not kept."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def token(request: Request) -> Response:
        await request.body()
        return Response(content, status_code=status, media_type=media_type)

    async with serve(Starlette(routes=[Route("/token", token, methods=["POST"])])) as base:
        yield f"{base}/token"


# The cases both readers are tested with: the same rules on both sides.
OK = {"access_token": "at", "token_type": "Bearer", "expires_in": 300}
NO_ACCESS_TOKEN = ["", None, 5]
NOT_BEARER = ["mac", "DPoP", None, 1]
BEARER_SPELLINGS = ["Bearer", "bearer", "BEARER"]
NOT_A_SCOPE = [["mcp:tools"], 1, {"mcp:tools": True}]
NOT_AN_ERROR_OBJECT = [{"error": 5}, {"error": ""}, ["invalid_grant"]]
# expires_in as sent, as read (RFC 6749 Appendix A.14: a non-negative integer or nothing)
EXPIRES_IN = [(300, 300), (0, 0), ("300", None), (300.5, None), (-1, None)]
