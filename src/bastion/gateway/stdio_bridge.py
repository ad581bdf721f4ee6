"""Serve a stdio MCP server over streamable HTTP: the HTTP face of one process per session.

MCP transports (2025-11-25), "Streamable HTTP":

- A POST of an ``initialize`` request without ``Mcp-Session-Id`` starts the command (in
  :mod:`bastion.gateway.stdio_process`); the answer carries a new random session id in
  ``Mcp-Session-Id``. Later requests must send it: without it 400, with an unknown one (or one
  created by another caller) 404.
- A POST carrying requests is answered with an SSE stream that carries their responses, closing
  once all have arrived; progress notifications, log messages and requests the server makes
  while the POST is open travel on it too. Other server messages go to the session's GET
  stream. A POST of only notifications or responses gets 202.
- ``MCP-Protocol-Version``, when sent, must be the version ``initialize`` negotiated (else 400).
- DELETE ends the session and its process; 204.

Session ids are bound to the caller that created them (``sub`` and ``client_id`` from the
resource-server middleware): possession of a session id is never authentication (checklist R10).
Behind a load balancer, session ids start with the replica's id (``<replica_id>.<random>``, see
:mod:`bastion.gateway.replicas`); a replica that does not hold a session answers 404 like for any
unknown one. A new session beyond the process limits is refused: ``max_sessions`` with 503,
``max_sessions_per_subject`` with 429 and ``Retry-After`` (L9).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from bastion.config import UpstreamSettings
from bastion.edge import jsonrpc
from bastion.edge.asgi import (
    ClientGone,
    media_type,
    race_disconnect,
    send_empty,
    send_json,
    wait_for_disconnect,
)
from bastion.edge.body import BodyTooLarge, read_body
from bastion.gateway.mcp_session import (
    owner_of,
    send_session_not_found,
    send_session_required,
    session_id_of,
)
from bastion.gateway.stdio_process import (
    MAX_MESSAGE_BYTES,
    CannotStart,
    MessageStream,
    ShuttingDown,
    StdioSession,
    StdioSessions,
    SubjectLimitReached,
    TooManySessions,
)
from bastion.ops import metrics

# The answer to a POST with requests, and to a GET: an SSE stream that proxies must not buffer.
SSE_HEADERS = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


def _accepts(scope: Scope, *media: str) -> bool:
    values = [media_type(v) for v in (Headers(scope=scope).get("accept") or "").split(",")]
    for wanted in media:
        kind = wanted.split("/")[0]
        if not any(v in (wanted, f"{kind}/*", "*/*") for v in values):
            return False
    return True


def _event(message: jsonrpc.Message) -> bytes:
    return b"event: message\ndata: " + jsonrpc.dumps(message) + b"\n\n"


class StdioBridge:
    """ASGI app serving one stdio upstream over streamable HTTP at its mount path."""

    def __init__(
        self,
        upstream: UpstreamSettings,
        *,
        max_body_bytes: int = 4 * 1024 * 1024,
        grace: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        replica_id: str | None = None,
    ) -> None:
        self.processes = StdioSessions(upstream, grace=grace, clock=clock, replica_id=replica_id)
        metrics.gateway_upstream(
            upstream.name,
            sessions=self.processes.sessions.__len__,
            processes=self.processes.live_count,
        )
        self.upstream = upstream
        self._max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"StdioBridge(upstream={self.upstream.name!r}, sessions={len(self.sessions)})"

    @property
    def sessions(self) -> dict[str, StdioSession]:
        """The open sessions by id."""
        return self.processes.sessions

    async def start(self) -> None:
        """Start reaping idle sessions (the gateway's lifespan calls this)."""
        await self.processes.start()

    async def aclose(self) -> None:
        """End every session's process (the gateway's shutdown)."""
        await self.processes.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        if scope["path"].rstrip("/") != self.upstream.path:
            await send_json(send, 404, jsonrpc.error(jsonrpc.INVALID_REQUEST, "not found"))
            return
        method = scope["method"]
        try:
            if method == "POST":
                await self._post(scope, receive, send)
            elif method == "GET":
                await self._get(scope, receive, send)
            elif method == "DELETE":
                await self._delete(scope, send)
            else:
                await send_json(
                    send,
                    405,
                    jsonrpc.error(jsonrpc.INVALID_REQUEST, f"method {method} is not allowed"),
                    [("Allow", "GET, POST, DELETE")],
                )
        except ClientGone:
            return

    async def _session(self, scope: Scope, send: Send) -> StdioSession | None:
        """The session the request names; answers 400/404 itself and returns None."""
        session_id = session_id_of(scope)
        if session_id is None:
            await send_session_required(send)
            return None
        session = self.processes.sessions.get(session_id)
        # Another caller's session is reported exactly like a missing one (R10).
        if session is None or session.ended.is_set() or session.owner != owner_of(scope):
            await send_session_not_found(send)
            return None
        session.touch()
        return session

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _accepts(scope, "application/json", "text/event-stream"):
            await send_json(
                send,
                406,
                jsonrpc.error(
                    jsonrpc.INVALID_REQUEST,
                    "Not Acceptable: Accept must list application/json and text/event-stream",
                ),
            )
            return
        if media_type(Headers(scope=scope).get("content-type")) != "application/json":
            await send_json(
                send,
                415,
                jsonrpc.error(jsonrpc.INVALID_REQUEST, "Content-Type must be application/json"),
            )
            return
        try:
            body = await read_body(scope, receive, self._max_body_bytes)
        except BodyTooLarge as exc:
            await send_json(send, 413, jsonrpc.error(jsonrpc.INVALID_REQUEST, str(exc)))
            return
        if body.problem is not None:
            await send_json(send, 400, jsonrpc.error(body.problem.code, str(body.problem)))
            return
        messages = list(body.messages)
        initialize = [m for m in messages if m.get("method") == "initialize"]
        if initialize and (len(messages) > 1 or not jsonrpc.is_request(initialize[0])):
            await send_json(
                send,
                400,
                jsonrpc.error(jsonrpc.INVALID_REQUEST, "initialize must be sent alone"),
            )
            return
        if initialize and session_id_of(scope) is None:
            session = await self._new_session(scope, send)
        elif initialize:
            await send_json(
                send,
                400,
                jsonrpc.error(jsonrpc.INVALID_REQUEST, "this session is initialized already"),
            )
            return
        else:
            session = await self._session(scope, send)
            if session is not None and not await self._version_ok(scope, session, send):
                return
        if session is None:
            return
        await self._exchange(session, messages, receive, send, new=bool(initialize))

    async def _new_session(self, scope: Scope, send: Send) -> StdioSession | None:
        try:
            return await self.processes.open(owner_of(scope))
        except ShuttingDown:
            await send_json(send, 503, jsonrpc.error(jsonrpc.UPSTREAM_ERROR, "shutting down"))
        except SubjectLimitReached as exc:
            await send_json(
                send,
                429,
                jsonrpc.error(
                    jsonrpc.UPSTREAM_ERROR,
                    f"you hold {exc.held} sessions of upstream {self.upstream.name!r}, the most "
                    "one user may; end one (DELETE) or retry later",
                ),
                [("Retry-After", str(exc.retry_after))],
            )
        except TooManySessions:
            await send_json(
                send,
                503,
                jsonrpc.error(
                    jsonrpc.UPSTREAM_ERROR,
                    f"upstream {self.upstream.name!r} has too many sessions; retry later",
                ),
                [("Retry-After", "5")],
            )
        except CannotStart:
            metrics.upstream_failed(self.upstream.name, "stdio", "cannot_start")
            await send_json(
                send,
                502,
                jsonrpc.error(
                    jsonrpc.UPSTREAM_ERROR, f"upstream {self.upstream.name!r} cannot be started"
                ),
            )
        return None

    async def _version_ok(self, scope: Scope, session: StdioSession, send: Send) -> bool:
        version = Headers(scope=scope).get("mcp-protocol-version")
        if version is None or session.protocol_version is None:
            return True
        if version == session.protocol_version:
            return True
        await send_json(
            send,
            400,
            jsonrpc.error(
                jsonrpc.INVALID_REQUEST,
                f"Bad Request: MCP-Protocol-Version {version[:40]!r} is not the version this "
                f"session negotiated ({session.protocol_version})",
            ),
        )
        return False

    async def _exchange(
        self,
        session: StdioSession,
        messages: list[jsonrpc.Message],
        receive: Receive,
        send: Send,
        *,
        new: bool,
    ) -> None:
        started = time.perf_counter()
        if not any(jsonrpc.is_request(m) for m in messages):
            if await self._write(session, messages, send):
                await send_empty(send, 202)
            return
        try:
            stream = await session.open_post(messages)
        except jsonrpc.MalformedMessage as exc:
            await send_json(send, 400, jsonrpc.error(exc.code, str(exc)))
            return
        try:
            if not await self._write(session, messages, send):
                if new:
                    await self.processes.end(session)
                return
            headers = [*SSE_HEADERS]
            if new:
                headers.append((b"mcp-session-id", session.id.encode()))
            await self._stream(stream, headers, receive, send, started=started)
        finally:
            await session.close_post(stream)

    async def _write(
        self, session: StdioSession, messages: list[jsonrpc.Message], send: Send
    ) -> bool:
        try:
            async with asyncio.timeout(self.upstream.timeout):
                await session.write(messages)
        except TimeoutError:
            metrics.upstream_failed(self.upstream.name, "stdio", "timeout")
            await send_json(
                send,
                504,
                jsonrpc.error(
                    jsonrpc.UPSTREAM_ERROR, f"upstream {self.upstream.name!r} is not reading"
                ),
            )
            return False
        except OSError:
            metrics.upstream_failed(self.upstream.name, "stdio", "ended")
            await send_json(
                send,
                502,
                jsonrpc.error(jsonrpc.UPSTREAM_ERROR, f"upstream {self.upstream.name!r} ended"),
            )
            return False
        return True

    async def _stream(
        self,
        stream: MessageStream,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        *,
        started: float | None = None,
    ) -> None:
        """Relay ``stream`` as SSE until it closes or the client leaves; the first message's
        delay after ``started`` (a call written to the process) is the upstream's latency."""
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        disconnected = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            while (message := await race_disconnect(stream.get(), disconnected)) is not None:
                if started is not None:
                    metrics.upstream_answered(
                        self.upstream.name, "stdio", time.perf_counter() - started
                    )
                    started = None
                await send(
                    {"type": "http.response.body", "body": _event(message), "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            disconnected.cancel()

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _accepts(scope, "text/event-stream"):
            await send_json(
                send,
                406,
                jsonrpc.error(jsonrpc.INVALID_REQUEST, "Not Acceptable: Accept text/event-stream"),
            )
            return
        session = await self._session(scope, send)
        if session is None or not await self._version_ok(scope, session, send):
            return
        stream = await session.open_get()
        if stream is None:
            await send_json(
                send,
                409,
                jsonrpc.error(jsonrpc.INVALID_REQUEST, "a GET stream is open on this session"),
            )
            return
        try:
            await self._stream(stream, [*SSE_HEADERS], receive, send)
        finally:
            await session.close_get(stream)

    async def _delete(self, scope: Scope, send: Send) -> None:
        session = await self._session(scope, send)
        if session is None:
            return
        await self.processes.end(session)
        await send_empty(send, 204)


__all__ = ["MAX_MESSAGE_BYTES", "StdioBridge", "StdioSession"]
