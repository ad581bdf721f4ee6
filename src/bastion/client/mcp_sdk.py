"""bastion's client under the official ``mcp`` Python SDK (2.x).

The SDK's streamable HTTP transport (``mcp.client.streamable_http.streamable_http_client``)
takes an ``httpx2.AsyncClient`` (``http_client=``): authentication is that client's ``auth``.
``httpx2`` is a separate package from ``httpx``, so :class:`SdkAuth` is the same flow as
:class:`~bastion.client.auth.BastionAuth` written as an ``httpx2.Auth``; both share one
:class:`~bastion.client.authorizer.Authorizer` (tokens, logins, storage)::

    auth = BastionAuth(ClientSettings())
    async with connect("https://mcp.example.com/mcp", auth=auth) as client:
        tools = await client.list_tools()        # mcp.Client; client.session is the ClientSession
        await client.call_tool("search", {"q": "x"})

The SDK follows redirects only within the endpoint's origin and never for requests made by an
auth flow; bastion makes its discovery and token requests with its own client anyway.
Requires the ``mcp`` package (2.x).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation

from bastion.client.auth import BastionAuth, authorized_flow
from bastion.client.authorizer import Authorizer

DEFAULT_TIMEOUT = 30.0
DEFAULT_SSE_READ_TIMEOUT = 300.0


class SdkAuth(httpx2.Auth):
    """An ``httpx2.Auth`` over a bastion :class:`Authorizer` (for the ``mcp`` SDK's client)."""

    requires_request_body = True

    def __init__(self, auth: BastionAuth | Authorizer) -> None:
        self.authorizer = auth.authorizer if isinstance(auth, BastionAuth) else auth

    def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        return authorized_flow(self.authorizer, request)


def http_client(
    auth: BastionAuth | Authorizer,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    sse_read_timeout: float = DEFAULT_SSE_READ_TIMEOUT,
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` with bastion's authorization and the SDK's usual timeouts, for
    ``streamable_http_client(url, http_client=...)``. The caller closes it."""
    return httpx2.AsyncClient(
        auth=SdkAuth(auth),
        timeout=httpx2.Timeout(timeout, read=sse_read_timeout),
        follow_redirects=False,
    )


@asynccontextmanager
async def connect(
    url: str,
    *,
    auth: BastionAuth | Authorizer,
    mode: str = "auto",
    client_info: Implementation | None = None,
    http_timeout: float = DEFAULT_TIMEOUT,
    sse_read_timeout: float = DEFAULT_SSE_READ_TIMEOUT,
) -> AsyncIterator[Client]:
    """An ``mcp.Client`` connected to ``url`` over streamable HTTP with bastion's authorization.

    ``mode`` is the SDK's: ``"auto"`` (probe ``server/discover``, fall back to ``initialize``),
    ``"legacy"`` (the initialize handshake of revisions up to 2025-11-25), or a modern protocol
    version such as ``"2026-07-28"`` (stateless, per-request ``_meta``). ``client.session`` is
    the underlying ``ClientSession``.
    """
    async with http_client(auth, timeout=http_timeout, sse_read_timeout=sse_read_timeout) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, client_info=client_info) as client:
            yield client


__all__ = ["SdkAuth", "connect", "http_client"]
