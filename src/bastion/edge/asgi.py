"""Answers and disconnects at the ASGI edge: what the resource middleware, the HTTP proxy, the
stdio bridge and the gateway app send, and how they notice a client that left.

Request headers are read with Starlette's :class:`~starlette.datastructures.Headers`
(``Headers(scope=scope)``; ASGI gives names in lowercase); the body with
:mod:`bastion.edge.body`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from starlette.types import Receive, Send

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected: there is nobody left to answer."""


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` value: lowercase, without parameters (RFC 9110
    §8.3.1); empty when there is none."""
    return (content_type or "").split(";")[0].strip().lower()


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[str, str]] = (),
    *,
    length: int | None = None,
) -> None:
    """A complete answer: ``headers``, then ``Content-Length`` (``length``, for a HEAD answer
    without its body, else the body's)."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body) if length is None else length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send,
    status: int,
    document: Mapping[str, object],
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    """A complete ``application/json`` answer."""
    body = json.dumps(document).encode("utf-8")
    await send_bytes(send, status, body, [("Content-Type", "application/json"), *headers])


async def send_empty(send: Send, status: int, headers: Sequence[tuple[str, str]] = ()) -> None:
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
        waiting: set[asyncio.Future[T] | asyncio.Future[None]] = {task, disconnected}
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


class DisconnectWatch:
    """Cancel the current task when the client disconnects (call once the request body has
    been read): one watcher task and a callback, cheaper than racing each wait against it.

    The task's wait is then interrupted by :class:`asyncio.CancelledError`; whoever catches it
    asks :meth:`left` (which takes the cancellation back when it was ours, else the error must
    be raised again), and :meth:`close` ends the watch in a ``finally``."""

    __slots__ = ("_closed", "_gone", "_task", "_watcher")

    def __init__(self, receive: Receive) -> None:
        self._gone = False
        self._closed = False
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        self._watcher.add_done_callback(self._done)

    def _done(self, watcher: asyncio.Future[None]) -> None:
        # A callback scheduled before close() may still run after it: then it does nothing.
        if self._closed or watcher.cancelled() or watcher.exception() is not None:
            return
        self._gone = True
        if self._task is not None:
            self._task.cancel()

    def left(self) -> bool:
        """Whether the client left (the cancellation was this watch's, now taken back)."""
        if not self._gone:
            return False
        if self._task is not None:
            self._task.uncancel()
        self._gone = False
        return True

    def close(self) -> None:
        """Stop watching."""
        self._closed = True
        self._watcher.remove_done_callback(self._done)
        self._watcher.cancel()


__all__ = [
    "ClientGone",
    "DisconnectWatch",
    "media_type",
    "race_disconnect",
    "send_bytes",
    "send_empty",
    "send_json",
    "wait_for_disconnect",
]
