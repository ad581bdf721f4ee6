"""Serve a stdio MCP server over streamable HTTP: one process per session.

MCP transports (2025-11-25), "stdio" and "Streamable HTTP":

- A POST of an ``initialize`` request without ``Mcp-Session-Id`` starts the command; the answer
  carries a new random session id in ``Mcp-Session-Id``. Later requests must send it: without it
  400, with an unknown one (or one created by another caller) 404.
- Messages go to the process's stdin as newline-delimited JSON-RPC; a reader task per process
  routes what it writes to stdout. A POST carrying requests is answered with an SSE stream that
  carries their responses, closing once all have arrived; progress notifications whose
  ``progressToken`` one of them set, log messages and requests the server makes while the POST
  is open travel on it too. Other server messages (list changes, resource updates, or anything
  when no POST is open) go to the session's GET stream; while none is open they wait in a
  bounded backlog. A POST of only notifications or responses gets 202.
- ``MCP-Protocol-Version``, when sent, must be the version ``initialize`` negotiated (else 400).
- DELETE ends the session: stdin is closed, then SIGTERM, then SIGKILL (to the process group),
  each after a grace period; 204. A process that exits ends its session (its open requests get
  a JSON-RPC error). Sessions without traffic for ``session_idle_timeout`` (and no open stream)
  are reaped; :meth:`StdioBridge.aclose` (the gateway's shutdown) ends every process.
- The process's stderr is logged (logger ``bastion.gateway.stdio``); stdout lines that are not
  JSON are logged and skipped. Its environment is only what the upstream's settings give it.

Session ids are bound to the caller that created them (``sub`` and ``client_id`` from the
resource-server middleware): possession of a session id is never authentication (checklist R10).
Processes are bounded per upstream (``max_sessions``, then 503) and per subject
(``max_sessions_per_subject``, then 429 with ``Retry-After``), so that one token holder cannot
take every process (L9); sessions whose process is still starting count too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from bastion import safe_json
from bastion.config import UpstreamSettings
from bastion.gateway import jsonrpc
from bastion.gateway.asgi import (
    ClientGone,
    header,
    principal_of,
    race_disconnect,
    read_body,
    send_empty,
    send_json,
    wait_for_disconnect,
)
from bastion.logs import get_logger

log = get_logger("bastion.gateway.stdio")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
STREAM_QUEUE = 256  # messages waiting for one slow SSE reader
BACKLOG = 256  # server messages waiting for a GET stream
DELIVERY_TIMEOUT = 10.0  # seconds a stalled SSE reader may hold up its session
SESSION_NOT_FOUND = -32001
Owner = tuple[str, str | None] | None


def _subject(owner: Owner) -> str | None:
    """Whose session it is, for max_sessions_per_subject (the token's ``sub``)."""
    return None if owner is None else owner[0]


def _key(request_id: Any) -> str:
    """Request ids "1" and 1 differ; JSON text keeps them apart."""
    return json.dumps(request_id)


def _accepts(scope: Scope, *media: str) -> bool:
    values = [v.split(";")[0].strip().lower() for v in (header(scope, "accept") or "").split(",")]
    for wanted in media:
        kind = wanted.split("/")[0]
        if not any(v in (wanted, f"{kind}/*", "*/*") for v in values):
            return False
    return True


def _event(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + jsonrpc.dumps(message) + b"\n\n"


class _Stream:
    """The messages for one open SSE answer, bounded; ``close`` ends it after what is queued."""

    def __init__(self, limit: int = STREAM_QUEUE) -> None:
        self.pending: set[str] = set()
        self.progress_tokens: set[str] = set()
        self.closed = False
        self._items: deque[dict[str, Any]] = deque()
        self._limit = limit
        self._changed = asyncio.Condition()

    async def put(self, message: dict[str, Any]) -> bool:
        """Queue a message; False when the reader stalled past DELIVERY_TIMEOUT (then closed)."""
        async with self._changed:
            try:
                async with asyncio.timeout(DELIVERY_TIMEOUT):
                    await self._changed.wait_for(
                        lambda: self.closed or len(self._items) < self._limit
                    )
            except TimeoutError:
                self.closed = True
                self._changed.notify_all()
                return False
            if self.closed:
                return False
            self._items.append(message)
            self._changed.notify_all()
            return True

    async def close(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()

    async def get(self) -> dict[str, Any] | None:
        """The next message, or None once closed and drained."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items) or self.closed)
            if self._items:
                item = self._items.popleft()
                self._changed.notify_all()
                return item
            return None


class StdioSession:
    """One process and the HTTP streams of the session it serves."""

    def __init__(
        self,
        session_id: str,
        process: asyncio.subprocess.Process,
        *,
        upstream: UpstreamSettings,
        owner: Owner,
        clock: Callable[[], float],
        on_exit: Callable[[StdioSession], None],
        on_done: Callable[[StdioSession], None] = lambda _: None,
        grace: float = 2.0,
    ) -> None:
        self.id = session_id
        self.process = process
        self.upstream = upstream
        self.owner = owner
        self.clock = clock
        self.last_activity = clock()
        self.protocol_version: str | None = None
        self._initialize_key: str | None = None
        self._on_exit = on_exit
        self._on_done = on_done
        self._grace = grace
        self._termination: asyncio.Future[None] | None = None
        self._posts: list[_Stream] = []
        self._by_request: dict[str, _Stream] = {}
        self._get: _Stream | None = None
        self._backlog: deque[dict[str, Any]] = deque(maxlen=BACKLOG)
        self._write_lock = asyncio.Lock()
        self._route_lock = asyncio.Lock()
        self.ended = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._read_stdout(), name=f"stdio-{upstream.name}-stdout"),
            asyncio.create_task(self._read_stderr(), name=f"stdio-{upstream.name}-stderr"),
        ]

    def __repr__(self) -> str:
        return f"StdioSession(upstream={self.upstream.name!r}, pid={self.process.pid})"

    @property
    def busy(self) -> bool:
        """Whether an HTTP stream is open on this session."""
        return bool(self._posts) or self._get is not None

    def touch(self) -> None:
        self.last_activity = self.clock()

    # -- client to process ----------------------------------------------------------------------

    async def write(self, messages: list[dict[str, Any]]) -> None:
        """Write messages to stdin, one line each; OSError when the process is gone."""
        stdin = self.process.stdin
        if stdin is None or self.ended.is_set():
            raise BrokenPipeError("the process has ended")
        data = b"".join(jsonrpc.dumps(m) + b"\n" for m in messages)
        async with self._write_lock:
            stdin.write(data)
            await stdin.drain()

    async def open_post(self, messages: list[dict[str, Any]]) -> _Stream:
        """Register the requests of a POST before they are written, so no answer is missed.

        Raises MalformedMessage when a request id is already awaited in this session.
        """
        stream = _Stream()
        async with self._route_lock:
            for message in messages:
                if not jsonrpc.is_request(message):
                    continue
                key = _key(message["id"])
                if key in self._by_request or key in stream.pending:
                    raise jsonrpc.MalformedMessage(f"request id {message['id']!r} is in use")
                stream.pending.add(key)
                if message["method"] == "initialize":
                    self._initialize_key = key
                params = message.get("params")
                meta = params.get("_meta") if isinstance(params, dict) else None
                token = meta.get("progressToken") if isinstance(meta, dict) else None
                if token is not None:
                    stream.progress_tokens.add(_key(token))
            for key in stream.pending:
                self._by_request[key] = stream
            self._posts.append(stream)
        return stream

    async def close_post(self, stream: _Stream) -> None:
        """The POST's answer ended (or its client left): later answers to it are dropped."""
        async with self._route_lock:
            for key in stream.pending:
                self._by_request.pop(key, None)
            with contextlib.suppress(ValueError):
                self._posts.remove(stream)
        await stream.close()
        self.touch()

    async def open_get(self) -> _Stream | None:
        """The GET stream, with the backlog queued on it; None if one is open already."""
        async with self._route_lock:
            if self._get is not None:
                return None
            stream = self._get = _Stream(limit=STREAM_QUEUE + BACKLOG)
            while self._backlog:
                await stream.put(self._backlog.popleft())
        return stream

    async def close_get(self, stream: _Stream) -> None:
        async with self._route_lock:
            if self._get is stream:
                self._get = None
        await stream.close()
        self.touch()

    # -- process to client ----------------------------------------------------------------------

    async def _route(self, message: dict[str, Any]) -> None:
        async with self._route_lock:
            target = self._target(message)
            if target is None:
                if "method" in message:
                    if len(self._backlog) == BACKLOG:
                        log.warning(
                            "%s: no GET stream for a while; dropped its oldest message", self
                        )
                    self._backlog.append(message)
                else:
                    log.debug("%s: dropped a response to an abandoned request", self)
                return
            if not await target.put(message):
                log.warning("%s: an SSE reader stalled; closed its stream", self)
                return
            if "method" not in message:
                key = _key(message.get("id"))
                target.pending.discard(key)
                self._by_request.pop(key, None)
                if key == self._initialize_key:
                    self._note_version(message)
                if not target.pending:
                    await target.close()

    def _target(self, message: dict[str, Any]) -> _Stream | None:
        method = message.get("method")
        if method is None:
            return self._by_request.get(_key(message.get("id")))
        params = message.get("params")
        token = params.get("progressToken") if isinstance(params, dict) else None
        if token is not None:
            for stream in self._posts:
                if _key(token) in stream.progress_tokens:
                    return stream
        related = "id" in message or method == "notifications/message"
        open_posts = [s for s in self._posts if not s.closed]
        if related and open_posts:
            return open_posts[0]
        if self._get is not None and not self._get.closed:
            return self._get
        return None

    def _note_version(self, message: dict[str, Any]) -> None:
        result = message.get("result")
        if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
            self.protocol_version = result["protocolVersion"]
        self._initialize_key = None

    async def _read_stdout(self) -> None:
        stdout = self.process.stdout
        try:
            while stdout is not None:
                try:
                    line = await stdout.readline()
                except ValueError:
                    log.error(
                        "%s wrote a message over %d bytes; ending it", self, MAX_MESSAGE_BYTES
                    )
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    document = safe_json.loads(line)
                except ValueError:
                    log.warning("%s wrote a line that is not JSON-RPC: %.200r", self, line)
                    continue
                for message in document if isinstance(document, list) else [document]:
                    if isinstance(message, dict):
                        await self._route(message)
        finally:
            await self._ended()

    async def _read_stderr(self) -> None:
        stderr = self.process.stderr
        if stderr is None:
            return
        pending = b""
        while chunk := await stderr.read(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                log.info("%s stderr: %s", self, line.decode(errors="replace")[:2000])
            if len(pending) > 2000:
                log.info("%s stderr: %s", self, pending.decode(errors="replace")[:2000])
                pending = b""
        if pending:
            log.info("%s stderr: %s", self, pending.decode(errors="replace")[:2000])

    async def _ended(self) -> None:
        """stdout closed: the process is done (or is made so). Fail what is still open."""
        if self.ended.is_set():
            return
        self.ended.set()
        self._on_exit(self)
        async with self._route_lock:
            for key, stream in list(self._by_request.items()):
                await stream.put(
                    jsonrpc.error(
                        jsonrpc.UPSTREAM_ERROR,
                        f"upstream {self.upstream.name!r} ended before answering",
                        json.loads(key),
                    )
                )
            self._by_request.clear()
            for stream in [*self._posts, *([self._get] if self._get else [])]:
                await stream.close()
        self._start_termination(self._grace)  # reaps it, its group and the reader tasks

    # -- ending ---------------------------------------------------------------------------------

    def _start_termination(self, grace: float) -> asyncio.Future[None]:
        if self._termination is None:
            self._termination = asyncio.ensure_future(self._terminate(grace))
        return self._termination

    async def terminate(self, grace: float | None = None) -> None:
        """End the process (see :meth:`_terminate`); safe to call more than once."""
        await asyncio.shield(self._start_termination(self._grace if grace is None else grace))

    async def _terminate(self, grace: float) -> None:
        """Close stdin; then SIGTERM, then SIGKILL the process group, waiting ``grace`` between."""
        process = self.process
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.returncode is not None:
                break
            log.warning("%s did not exit; sending %s", self, sig.name)
            self._signal_group(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), grace)
        # Children the server started may outlive it in its process group.
        self._signal_group(signal.SIGTERM)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, grace)
        await self._ended()
        log.info("%s ended with exit code %s", self, process.returncode)
        self._on_done(self)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


class StdioBridge:
    """ASGI app serving one stdio upstream over streamable HTTP at its mount path."""

    def __init__(
        self,
        upstream: UpstreamSettings,
        *,
        max_body_bytes: int = 4 * 1024 * 1024,
        grace: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if upstream.command is None:
            raise ValueError(f"upstream {upstream.name!r} has no command; it is an HTTP upstream")
        self.upstream = upstream
        self.command: list[str] = upstream.command
        self.sessions: dict[str, StdioSession] = {}
        self._live: set[StdioSession] = set()  # until their process is reaped
        self._starting: list[str | None] = []  # the subjects of sessions whose process starts
        self._max_body_bytes = max_body_bytes
        self._grace = grace
        self._clock = clock
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"StdioBridge(upstream={self.upstream.name!r}, sessions={len(self.sessions)})"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reaping idle sessions (the gateway's lifespan calls this)."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap(), name=f"reap-{self.upstream.name}")

    async def aclose(self) -> None:
        """End every session's process (the gateway's shutdown)."""
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await asyncio.gather(*(s.terminate() for s in {*self.sessions.values(), *self._live}))
        self.sessions.clear()

    async def _reap(self) -> None:
        idle = self.upstream.session_idle_timeout
        while True:
            await asyncio.sleep(min(max(idle / 4, 0.05), 30.0))
            now = self._clock()
            stale = [
                s for s in self.sessions.values() if not s.busy and now - s.last_activity > idle
            ]
            for session in stale:
                log.info("%s idle for over %g s; ending it", session, idle)
                self.sessions.pop(session.id, None)
                await session.terminate()

    def _forget(self, session: StdioSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    async def _spawn(self, owner: Owner) -> StdioSession:
        process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.upstream.process_environment(),
            cwd=self.upstream.cwd,
            start_new_session=True,  # its own process group, so its children end with it
            limit=MAX_MESSAGE_BYTES,
        )
        session = StdioSession(
            secrets.token_urlsafe(32),
            process,
            upstream=self.upstream,
            owner=owner,
            clock=self._clock,
            on_exit=self._forget,
            on_done=self._live.discard,
            grace=self._grace,
        )
        self.sessions[session.id] = session
        self._live.add(session)
        log.info("%s started for a new session", session)
        return session

    # -- HTTP -----------------------------------------------------------------------------------

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

    def _owner(self, scope: Scope) -> Owner:
        principal = principal_of(scope)
        return None if principal is None else (principal.subject, principal.client_id)

    async def _session(self, scope: Scope, send: Send) -> StdioSession | None:
        """The session the request names; answers 400/404 itself and returns None."""
        session_id = header(scope, "mcp-session-id")
        if session_id is None:
            await send_json(
                send,
                400,
                jsonrpc.error(
                    jsonrpc.INVALID_REQUEST,
                    "Bad Request: Mcp-Session-Id header is required (send initialize first)",
                ),
            )
            return None
        session = self.sessions.get(session_id)
        # Another caller's session is reported exactly like a missing one (R10).
        if session is None or session.ended.is_set() or session.owner != self._owner(scope):
            await send_json(send, 404, jsonrpc.error(SESSION_NOT_FOUND, "Session not found"))
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
        media = (header(scope, "content-type") or "").split(";")[0].strip().lower()
        if media != "application/json":
            await send_json(
                send,
                415,
                jsonrpc.error(jsonrpc.INVALID_REQUEST, "Content-Type must be application/json"),
            )
            return
        body = await read_body(receive, self._max_body_bytes)
        if body is None:
            await send_json(
                send,
                413,
                jsonrpc.error(
                    jsonrpc.INVALID_REQUEST,
                    f"the request body is larger than {self._max_body_bytes} bytes",
                ),
            )
            return
        try:
            messages = jsonrpc.parse(body)
        except jsonrpc.MalformedMessage as exc:
            await send_json(send, 400, jsonrpc.error(exc.code, str(exc)))
            return
        initialize = [m for m in messages if m.get("method") == "initialize"]
        if initialize and (len(messages) > 1 or not jsonrpc.is_request(initialize[0])):
            await send_json(
                send,
                400,
                jsonrpc.error(jsonrpc.INVALID_REQUEST, "initialize must be sent alone"),
            )
            return
        if initialize and header(scope, "mcp-session-id") is None:
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

    def _subject_wait(self, subject: str | None) -> int:
        """Seconds until one of ``subject``'s sessions may be reaped for idleness (at the
        soonest, if it stays idle): what its 429 tells it to wait."""
        idle = self.upstream.session_idle_timeout
        now = self._clock()
        ends = [
            s.last_activity + idle - now
            for s in self.sessions.values()
            if _subject(s.owner) == subject and not s.busy
        ]
        return max(1, math.ceil(min(ends, default=idle)))

    async def _new_session(self, scope: Scope, send: Send) -> StdioSession | None:
        if self._closing:
            await send_json(send, 503, jsonrpc.error(jsonrpc.UPSTREAM_ERROR, "shutting down"))
            return None
        owner = self._owner(scope)
        subject = _subject(owner)
        held = sum(_subject(s.owner) == subject for s in self.sessions.values())
        held += self._starting.count(subject)
        limit = self.upstream.max_sessions_per_subject
        if held >= limit:
            log.info(
                "upstream %s: subject %r holds %d sessions (max_sessions_per_subject); "
                "refusing another",
                self.upstream.name,
                subject,
                held,
            )
            await send_json(
                send,
                429,
                jsonrpc.error(
                    jsonrpc.UPSTREAM_ERROR,
                    f"you hold {held} sessions of upstream {self.upstream.name!r}, the most one "
                    "user may; end one (DELETE) or retry later",
                ),
                [("Retry-After", str(self._subject_wait(subject)))],
            )
            return None
        if len(self.sessions) + len(self._starting) >= self.upstream.max_sessions:
            log.warning(
                "upstream %s has %d sessions (max_sessions); refusing a new one",
                self.upstream.name,
                len(self.sessions),
            )
            await send_json(
                send,
                503,
                jsonrpc.error(
                    jsonrpc.UPSTREAM_ERROR,
                    f"upstream {self.upstream.name!r} has too many sessions; retry later",
                ),
                [("Retry-After", "5")],
            )
            return None
        # Counted while the process starts, so that concurrent requests cannot all pass the
        # limits above before any of them is in self.sessions.
        self._starting.append(subject)
        try:
            return await self._spawn(owner)
        except OSError as exc:
            log.error(
                "cannot start upstream %s (%s): %s; check upstreams.command and cwd",
                self.upstream.name,
                self.command[0],
                exc,
            )
            await send_json(
                send,
                502,
                jsonrpc.error(
                    jsonrpc.UPSTREAM_ERROR, f"upstream {self.upstream.name!r} cannot be started"
                ),
            )
            return None
        finally:
            self._starting.remove(subject)

    async def _version_ok(self, scope: Scope, session: StdioSession, send: Send) -> bool:
        version = header(scope, "mcp-protocol-version")
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
        messages: list[dict[str, Any]],
        receive: Receive,
        send: Send,
        *,
        new: bool,
    ) -> None:
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
                    self.sessions.pop(session.id, None)
                    await session.terminate()
                return
            headers = [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ]
            if new:
                headers.append((b"mcp-session-id", session.id.encode()))
            await self._stream(stream, headers, receive, send)
        finally:
            await session.close_post(stream)

    async def _write(
        self, session: StdioSession, messages: list[dict[str, Any]], send: Send
    ) -> bool:
        try:
            async with asyncio.timeout(self.upstream.timeout):
                await session.write(messages)
        except TimeoutError:
            await send_json(
                send,
                504,
                jsonrpc.error(
                    jsonrpc.UPSTREAM_ERROR, f"upstream {self.upstream.name!r} is not reading"
                ),
            )
            return False
        except OSError:
            await send_json(
                send,
                502,
                jsonrpc.error(jsonrpc.UPSTREAM_ERROR, f"upstream {self.upstream.name!r} ended"),
            )
            return False
        return True

    async def _stream(
        self,
        stream: _Stream,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
    ) -> None:
        """Relay ``stream`` as SSE until it closes or the client leaves."""
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        disconnected = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            while (message := await race_disconnect(stream.get(), disconnected)) is not None:
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
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        try:
            await self._stream(stream, headers, receive, send)
        finally:
            await session.close_get(stream)

    async def _delete(self, scope: Scope, send: Send) -> None:
        session = await self._session(scope, send)
        if session is None:
            return
        self.sessions.pop(session.id, None)
        await session.terminate()
        await send_empty(send, 204)


__all__ = ["MAX_MESSAGE_BYTES", "StdioBridge", "StdioSession"]
