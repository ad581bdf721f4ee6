"""Small ASGI helpers shared by the HTTP proxy, the stdio bridge and the gateway app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from starlette.types import Receive, Scope, Send

from bastion.resource.principal import Principal

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected: there is nobody left to answer."""


def principal_of(scope: Scope) -> Principal | None:
    """The caller the resource-server middleware verified, if any."""
    found = scope.get("bastion.principal")
    return found if isinstance(found, Principal) else None


def header(scope: Scope, name: str) -> str | None:
    """The first value of a request header (``name`` in lowercase)."""
    key = name.encode("latin-1")
    for k, v in scope.get("headers", []):
        if k.lower() == key:
            return str(v.decode("latin-1"))
    return None


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it exceeds ``limit`` bytes; raises ClientGone."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def send_json(
    send: Send,
    status: int,
    document: dict[str, Any],
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """A complete JSON answer."""
    body = json.dumps(document).encode()
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_empty(send: Send, status: int, headers: Iterable[tuple[str, str]] = ()) -> None:
    """An answer without a body (202, 204)."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if status not in (204, 304):
        raw.append((b"content-length", b"0"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b""})


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (call once the request body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def race_disconnect(work: Awaitable[T], disconnected: asyncio.Future[None]) -> T:
    """Run ``work`` unless the client disconnects first (then cancel it, raise ClientGone)."""
    task = asyncio.ensure_future(work)
    try:
        waiting: set[asyncio.Future[Any]] = {task, disconnected}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():  # we were cancelled from outside: propagate
            raise
    except Exception:  # noqa: S110 -- its failure no longer matters, the client is gone
        pass
    raise ClientGone


__all__ = [
    "ClientGone",
    "header",
    "principal_of",
    "race_disconnect",
    "read_body",
    "send_empty",
    "send_json",
    "wait_for_disconnect",
]
