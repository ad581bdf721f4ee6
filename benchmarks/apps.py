"""ASGI apps the benchmarks serve with uvicorn (``uvicorn --factory benchmarks.apps:<name>``).

- :func:`bare`: GET /mcp answers a small JSON document; no middleware.
- :func:`bare_form`: POST /token reads an ``application/x-www-form-urlencoded`` body and answers
  a small JSON document; no middleware (the floor a token endpoint is measured against).
- :func:`protected`: the same endpoint behind :class:`ResourceServerMiddleware` and a
  :class:`JwtVerifier` of the AS at ``BENCH_ISSUER`` for the resource ``BENCH_RESOURCE``; the
  verified-token cache holds ``BENCH_CACHE_SIZE`` tokens (0: every request checks the signature).
  With ``BENCH_REVOCATIONS=N`` the verifier also checks a revocation list holding N revoked
  grants, kept current from ``<issuer>/revocations`` by an :class:`HttpRevocationFeed`.
- :func:`authorization_with_resource`: bastion's AS (settings from ``BASTION_*``) with the
  protected endpoint at ``<issuer>/mcp`` in the same app, sharing one revocation list.
- :func:`upstream`: a minimal stateless MCP server over HTTP: POST /mcp answers ``tools/call``
  of ``echo`` with a JSON response (no SSE, no session), so that what a gateway adds shows.
- :func:`registry`: bastion's registry app with settings from ``BASTION_*`` (as a worker of
  ``bastion serve --workers N`` gets them).
- :func:`static`: a bare ASGI app answering each path-and-query of the JSON file
  ``BENCH_STATIC_PAGES`` names with that file's text for it, as precomputed bytes.

Every app answers GET /ready without a token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.resource import (
    HttpRevocationFeed,
    JwtVerifier,
    ResourceServerMiddleware,
    RevocationList,
)


async def _ready(request: Request) -> Response:
    return Response(b"ok")


async def _hello(request: Request) -> Response:
    principal = request.scope.get("bastion.principal")
    subject = principal.subject if principal is not None else "anonymous"
    return JSONResponse({"hello": subject})


def _routes() -> list[Route]:
    return [Route("/ready", _ready), Route("/mcp", _hello, methods=["GET", "POST"])]


def bare() -> Starlette:
    """The endpoint alone."""
    return Starlette(routes=_routes())


async def _form(request: Request) -> Response:
    params = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
    return JSONResponse({"grant_type": params.get("grant_type"), "parameters": len(params)})


def bare_form() -> Starlette:
    """POST /token: the form body read and parsed, a small JSON answer, nothing else."""
    return Starlette(routes=[Route("/ready", _ready), Route("/token", _form, methods=["POST"])])


def revocation_list(size: int) -> RevocationList:
    """A list holding ``size`` revoked grants for an hour (none of the benchmark's tokens)."""
    revoked = RevocationList()
    expires = int(time.time()) + 3600
    revoked.update({secrets.token_hex(16): expires for _ in range(size)}, {})
    return revoked


def protected() -> Starlette:
    """The endpoint behind the resource-server middleware (settings from BENCH_*)."""
    issuer = os.environ["BENCH_ISSUER"]
    resource = os.environ["BENCH_RESOURCE"]
    size = os.environ.get("BENCH_REVOCATIONS")
    revoked = revocation_list(int(size)) if size is not None else None
    feed = HttpRevocationFeed(f"{issuer}/revocations", revoked) if revoked is not None else None
    verifier = JwtVerifier(
        issuer=issuer,
        audience=resource,
        jwks_uri=f"{issuer}/jwks",
        cache_size=int(os.environ.get("BENCH_CACHE_SIZE", "10000")),
        revocations=revoked,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if feed is not None:
            await feed.start()
        try:
            yield
        finally:
            if feed is not None:
                await feed.aclose()
            await verifier.aclose()

    app = Starlette(routes=_routes(), lifespan=lifespan)
    app.add_middleware(
        ResourceServerMiddleware,
        resource=resource,
        verifier=verifier,
        authorization_servers=[issuer],
        scopes_supported=["mcp:tools"],
        protect_paths=["/mcp"],
    )
    return app


def authorization_with_resource() -> ASGIApp:
    """The AS and, at ``<issuer>/mcp``, the protected endpoint, checking the AS's own list."""
    from bastion.authserver.app import create_app
    from bastion.config import settings_from_environment

    settings = settings_from_environment()
    revoked = RevocationList()
    auth = create_app(settings, revocations=revoked)
    resource = f"{settings.issuer}/mcp"
    verifier = JwtVerifier(
        issuer=settings.issuer,
        audience=resource,
        jwks_uri=f"{settings.issuer}/jwks",
        revocations=revoked,
    )
    protected = ResourceServerMiddleware(
        Starlette(routes=_routes()),
        resource=resource,
        verifier=verifier,
        authorization_servers=[settings.issuer],
        protect_paths=["/mcp"],
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/mcp", "/ready"):
            await protected(scope, receive, send)
        else:
            await auth(scope, receive, send)

    return app


async def _rpc(request: Request) -> Response:
    message = json.loads(await request.body())
    params = message.get("params") or {}
    text = json.dumps(params.get("arguments") or {})
    result = {"content": [{"type": "text", "text": text}], "isError": False}
    return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"), "result": result})


def upstream() -> Starlette:
    """A stateless MCP echo server over HTTP (JSON responses)."""
    return Starlette(routes=[Route("/ready", _ready), Route("/mcp", _rpc, methods=["POST"])])


def registry() -> Starlette:
    """The registry alone, configured from the environment."""
    from bastion.config import settings_from_environment
    from bastion.registry.app import create_registry_app

    return create_registry_app(settings_from_environment())


class _Static:
    """Precomputed answers by raw path and query; nothing parsed, nothing built per request."""

    def __init__(self, pages: dict[bytes, bytes]) -> None:
        self.pages = pages
        self.headers = {
            target: [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ]
            for target, body in pages.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            for _ in ("startup", "shutdown"):
                message = await receive()
                await send({"type": f"{message['type']}.complete"})
            return
        query: bytes = scope["query_string"]
        target = scope["raw_path"] + (b"?" + query if query else b"")
        body = self.pages.get(target)
        if body is None:
            ready = scope["path"] == "/ready"
            await send({"type": "http.response.start", "status": 200 if ready else 404})
            await send({"type": "http.response.body", "body": b"ok" if ready else b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.headers[target]})
        await send({"type": "http.response.body", "body": body})


def static() -> _Static:
    """The pages of ``BENCH_STATIC_PAGES`` (a JSON object: path and query to response text)."""
    pages = json.loads(Path(os.environ["BENCH_STATIC_PAGES"]).read_text(encoding="utf-8"))
    return _Static({k.encode("latin-1"): v.encode("utf-8") for k, v in pages.items()})


__all__ = [
    "authorization_with_resource",
    "bare",
    "bare_form",
    "protected",
    "registry",
    "revocation_list",
    "static",
    "upstream",
]
