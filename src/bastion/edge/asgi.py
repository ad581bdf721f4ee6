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


# Seconds a watched wait runs before the watch starts reading ``receive``: most waits end sooner,
# and then no watcher task was made at all. A client that left is noticed at most this late.
WATCH_AFTER = 0.05


class DisconnectWatch:
    """Cancel the current task when the client disconnects (call once the request body has
    been read) or, while :meth:`limit` has set one, when a deadline passes: a timer per
    request, cheaper than a watcher task and a timeout per wait.

    The watcher task that reads ``receive`` starts only once the watch has run for
    :data:`WATCH_AFTER` seconds (most requests are answered before). The task's wait is then
    interrupted by :class:`asyncio.CancelledError`; whoever catches it asks :meth:`left` or
    :meth:`expired` (which take the cancellation back when it was this watch's, else the error
    must be raised again), and :meth:`close` ends the watch in a ``finally``."""

    __slots__ = ("_closed", "_deadline", "_reason", "_receive", "_start", "_task", "_watcher")

    def __init__(self, receive: Receive) -> None:
        self._closed = False
        # Why this watch cancelled the task ("left" or "expired"), until that is taken back.
        self._reason: str | None = None
        self._receive = receive
        self._task = asyncio.current_task()
        self._watcher: asyncio.Future[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._start: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            WATCH_AFTER, self._begin
        )

    def _begin(self) -> None:
        self._start = None
        if not self._closed:
            self._watcher = asyncio.ensure_future(wait_for_disconnect(self._receive))
            self._watcher.add_done_callback(self._done)

    def _done(self, watcher: asyncio.Future[None]) -> None:
        # A callback scheduled before close() may still run after it: then it does nothing.
        if not watcher.cancelled() and watcher.exception() is None:
            self._cancel("left")

    def _expire(self) -> None:
        self._deadline = None
        self._cancel("expired")

    def _cancel(self, reason: str) -> None:
        # One cancellation of ours at a time: the first reason is the one the task is told.
        if self._closed or self._reason is not None or self._task is None:
            return
        self._reason = reason
        self._task.cancel()

    def _taken_back(self, reason: str) -> bool:
        if self._reason != reason:
            return False
        self._reason = None
        if self._task is not None:
            self._task.uncancel()
        return True

    def limit(self, seconds: float | None) -> None:
        """Cancel the task ``seconds`` from now unless :meth:`limit` is called again first
        (``None``: no deadline)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if seconds is not None and not self._closed:
            self._deadline = asyncio.get_running_loop().call_later(seconds, self._expire)

    def left(self) -> bool:
        """Whether the client left (the cancellation was this watch's, now taken back)."""
        return self._taken_back("left")

    def expired(self) -> bool:
        """Whether the deadline of :meth:`limit` passed (the cancellation was this watch's,
        now taken back)."""
        return self._taken_back("expired")

    def close(self) -> None:
        """Stop watching."""
        self._closed = True
        for handle in (self._start, self._deadline):
            if handle is not None:
                handle.cancel()
        self._start = self._deadline = None
        if self._watcher is not None:
            self._watcher.remove_done_callback(self._done)
            self._watcher.cancel()


__all__ = [
    "WATCH_AFTER",
    "ClientGone",
    "DisconnectWatch",
    "media_type",
    "race_disconnect",
    "send_bytes",
    "send_empty",
    "send_json",
    "wait_for_disconnect",
]
