"""The ``Mcp-Session-Id`` of a gateway request: who may use it, and the answers when it is
missing or not found (MCP transports, "Streamable HTTP", Session Management).

A request that needs a session and names none is 400; one naming a session the gateway does not
know, that has ended, or that another caller started is 404 with JSON-RPC error -32001, which
tells the client to initialize a new session. Possession of a session id is never
authentication: sessions belong to the caller (``sub`` and ``client_id``) who started them
(MCP security best practices, "Session Hijacking"; checklist R10).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Scope, Send

from bastion.edge import jsonrpc
from bastion.edge.asgi import send_json
from bastion.resource.principal import principal_of

HEADER = "mcp-session-id"
_HEADER = HEADER.encode()
SESSION_NOT_FOUND = -32001
# Who started a session: (sub, client_id), or None for a request no middleware verified.
Owner = tuple[str, str | None] | None


def session_id_of(scope: Scope) -> str | None:
    """The ``Mcp-Session-Id`` the request names (the first, if several), if any."""
    return session_header(scope.get("headers", ()))


def session_header(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The first ``Mcp-Session-Id`` of ASGI ``headers``, if any."""
    for name, value in headers:
        if name.lower() == _HEADER:
            return value.decode("latin-1")
    return None


def owner_of(scope: Scope) -> Owner:
    """The caller making the request, as sessions are bound to it."""
    principal = principal_of(scope)
    return None if principal is None else (principal.subject, principal.client_id)


async def send_session_required(send: Send) -> None:
    """400: this request must name its session."""
    await send_json(
        send,
        400,
        jsonrpc.error(
            jsonrpc.INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required (send initialize first)",
        ),
    )


async def send_session_not_found(send: Send) -> None:
    """404: no such session for this caller (unknown, ended, or another caller's)."""
    await send_json(send, 404, jsonrpc.error(SESSION_NOT_FOUND, "Session not found"))


__all__ = [
    "HEADER",
    "SESSION_NOT_FOUND",
    "Owner",
    "owner_of",
    "send_session_not_found",
    "send_session_required",
    "session_header",
    "session_id_of",
]
