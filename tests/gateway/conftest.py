"""Fixtures of the gateway tests: a recording upstream and the proxy or bridge under uvicorn."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.config import UpstreamSettings
from bastion.gateway.http_proxy import HttpProxy
from bastion.gateway.replicas import SessionSeal
from bastion.gateway.upstream_http import UpstreamPool
from bastion.resource.principal import Principal, attach_principal
from tests.gateway.upstream import RecordingUpstream
from tests.support.live import serve

STDIO_SERVER = str(Path(__file__).with_name("stdio_server.py"))
STDIO_COMMAND = [sys.executable, STDIO_SERVER]
ALICE = Principal(
    subject="alice",
    client_id="client-1",
    scopes=frozenset({"mcp:tools", "notes:read"}),
    claims={},
    token_id=None,
    expires_at=0,
)
# The key the proxies of ``proxied`` seal session ids with (as every gateway replica would).
SESSION_KEY = b"session-key-every-replica-has-0123456789"


def sealed(session_id: str, principal: Principal = ALICE, upstream: str = "notes") -> str:
    """The Mcp-Session-Id a proxy of ``proxied`` hands ``principal`` for the upstream's id."""
    return SessionSeal(SESSION_KEY, upstream).seal(
        session_id, (principal.subject, principal.client_id)
    )


def with_principal(app: ASGIApp, principal: Principal | None) -> ASGIApp:
    """Stand in for the resource-server middleware: put a verified caller in the scope."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if principal is not None:
            attach_principal(scope, principal)
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[RecordingUpstream, str]]:
    """The recording upstream under uvicorn; yields it and its MCP endpoint URL."""
    recorder = RecordingUpstream()
    async with serve(recorder.app) as base:
        try:
            yield recorder, f"{base}/mcp"
        finally:
            recorder.release()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


ProxyFactory = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def proxied() -> ProxyFactory:
    """``async with proxied(url=..., **settings) as base``: an HttpProxy for that upstream,
    mounted at /mcp under uvicorn; ``principal=``, ``identity_secret=`` and ``session_key=``
    (default :data:`SESSION_KEY`) as for the proxy, ``serve_options=`` for uvicorn."""

    @asynccontextmanager
    async def start(
        *,
        principal: Principal | None = ALICE,
        identity_secret: bytes | None = None,
        session_key: bytes = SESSION_KEY,
        max_body_bytes: int = 4 * 1024 * 1024,
        serve_options: dict[str, Any] | None = None,
        **fields: Any,
    ) -> AsyncIterator[str]:
        values: dict[str, Any] = {
            "name": "notes",
            "path": "/mcp",
            "resource": "http://127.0.0.1:1/mcp",
            **fields,
        }
        pool = UpstreamPool()
        try:
            proxy = HttpProxy(
                UpstreamSettings(**values),
                http=pool,
                identity_secret=identity_secret,
                session_key=session_key,
                max_body_bytes=max_body_bytes,
            )
            async with serve(with_principal(proxy, principal), **(serve_options or {})) as base:
                yield base
        finally:
            await pool.aclose()

    return start


__all__ = [
    "ALICE",
    "SESSION_KEY",
    "STDIO_COMMAND",
    "STDIO_SERVER",
    "ProxyFactory",
    "sealed",
    "with_principal",
]
