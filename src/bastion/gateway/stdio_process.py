"""The stdio side of the bridge to a stdio MCP server: one process per session.

MCP transports (2025-11-25), "stdio":

- Each session runs the upstream's command in a process group of its own, with only the
  environment the upstream's settings give it. Messages go to its stdin as newline-delimited
  JSON-RPC; a reader task per process routes what it writes to stdout to the HTTP stream that
  awaits it (:class:`MessageStream`): responses to the POST that sent the request, progress
  notifications whose ``progressToken`` one of its requests set, log messages and requests the
  server makes while a POST is open to that POST, everything else to the session's GET stream
  or, while none is open, a bounded backlog. Stdout lines that are not JSON are logged and
  skipped; stderr is logged (logger ``bastion.gateway.stdio``).
- Ending a session closes stdin, then sends SIGTERM, then SIGKILL (to the process group), each
  after a grace period. A process that exits ends its session (its open requests get a JSON-RPC
  error). Sessions without traffic for ``session_idle_timeout`` (and no open stream) are reaped;
  :meth:`StdioSessions.aclose` (the gateway's shutdown) ends every process.
- Processes are bounded per upstream (``max_sessions``, :class:`TooManySessions`) and per
  subject (``max_sessions_per_subject``, :class:`SubjectLimitReached`), so that one token holder
  cannot take every process (L9); sessions whose process is still starting count too.

The HTTP face, which turns streamable HTTP requests into these messages, is
:mod:`bastion.gateway.stdio_bridge`.
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

from bastion import safe_json
from bastion.config import UpstreamSettings
from bastion.edge import jsonrpc
from bastion.gateway.mcp_session import Owner
from bastion.logs import get_logger

log = get_logger("bastion.gateway.stdio")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
STREAM_QUEUE = 256  # messages waiting for one slow SSE reader
BACKLOG = 256  # server messages waiting for a GET stream
DELIVERY_TIMEOUT = 10.0  # seconds a stalled SSE reader may hold up its session


def _subject(owner: Owner) -> str | None:
    """Whose session it is, for max_sessions_per_subject (the token's ``sub``)."""
    return None if owner is None else owner[0]


def _key(request_id: object) -> str:
    """Request ids "1" and 1 differ; JSON text keeps them apart."""
    return json.dumps(request_id)


class SessionRefused(Exception):
    """No new session: :meth:`StdioSessions.open` refused to start a process."""


class ShuttingDown(SessionRefused):
    """The gateway is shutting down."""


class SubjectLimitReached(SessionRefused):
    """The subject holds ``max_sessions_per_subject`` sessions; ``retry_after`` is the number of
    seconds until one of them may be reaped for idleness."""

    def __init__(self, held: int, retry_after: int) -> None:
        super().__init__(f"the subject holds {held} sessions")
        self.held = held
        self.retry_after = retry_after


class TooManySessions(SessionRefused):
    """The upstream has ``max_sessions`` sessions."""


class CannotStart(SessionRefused):
    """The command could not be started (logged with the reason)."""


class MessageStream:
    """The messages for one open SSE answer, bounded; ``close`` ends it after what is queued."""

    def __init__(self, limit: int = STREAM_QUEUE) -> None:
        self.pending: set[str] = set()
        self.progress_tokens: set[str] = set()
        self.closed = False
        self._items: deque[jsonrpc.Message] = deque()
        self._limit = limit
        self._changed = asyncio.Condition()

    async def put(self, message: jsonrpc.Message) -> bool:
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

    async def get(self) -> jsonrpc.Message | None:
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
        self._posts: list[MessageStream] = []
        self._by_request: dict[str, MessageStream] = {}
        self._get: MessageStream | None = None
        self._backlog: deque[jsonrpc.Message] = deque(maxlen=BACKLOG)
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

    async def write(self, messages: list[jsonrpc.Message]) -> None:
        """Write messages to stdin, one line each; OSError when the process is gone."""
        stdin = self.process.stdin
        if stdin is None or self.ended.is_set():
            raise BrokenPipeError("the process has ended")
        data = b"".join(jsonrpc.dumps(m) + b"\n" for m in messages)
        async with self._write_lock:
            stdin.write(data)
            await stdin.drain()

    async def open_post(self, messages: list[jsonrpc.Message]) -> MessageStream:
        """Register the requests of a POST before they are written, so no answer is missed.

        Raises MalformedMessage when a request id is already awaited in this session.
        """
        stream = MessageStream()
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

    async def close_post(self, stream: MessageStream) -> None:
        """The POST's answer ended (or its client left): later answers to it are dropped."""
        async with self._route_lock:
            for key in stream.pending:
                self._by_request.pop(key, None)
            with contextlib.suppress(ValueError):
                self._posts.remove(stream)
        await stream.close()
        self.touch()

    async def open_get(self) -> MessageStream | None:
        """The GET stream, with the backlog queued on it; None if one is open already."""
        async with self._route_lock:
            if self._get is not None:
                return None
            stream = self._get = MessageStream(limit=STREAM_QUEUE + BACKLOG)
            while self._backlog:
                await stream.put(self._backlog.popleft())
        return stream

    async def close_get(self, stream: MessageStream) -> None:
        async with self._route_lock:
            if self._get is stream:
                self._get = None
        await stream.close()
        self.touch()

    # -- process to client ----------------------------------------------------------------------

    async def _route(self, message: jsonrpc.Message) -> None:
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

    def _target(self, message: jsonrpc.Message) -> MessageStream | None:
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

    def _note_version(self, message: jsonrpc.Message) -> None:
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


class StdioSessions:
    """The processes of one stdio upstream, one per session: started within the limits, reaped
    when idle, ended at shutdown. Session ids start with ``<replica_id>.`` when one is given."""

    def __init__(
        self,
        upstream: UpstreamSettings,
        *,
        grace: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        replica_id: str | None = None,
    ) -> None:
        if upstream.command is None:
            raise ValueError(f"upstream {upstream.name!r} has no command; it is an HTTP upstream")
        self.upstream = upstream
        self.command: list[str] = upstream.command
        self.sessions: dict[str, StdioSession] = {}
        self._live: set[StdioSession] = set()  # until their process is reaped
        self._starting: list[str | None] = []  # the subjects of sessions whose process starts
        self._grace = grace
        self._clock = clock
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False
        self._id_prefix = f"{replica_id}." if replica_id else ""

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

    def live_count(self) -> int:
        """How many of the upstream's processes run (until each is reaped)."""
        return len(self._live)

    def _forget(self, session: StdioSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    async def _spawn(self, owner: Owner) -> StdioSession:
        """Start the command for a new session of ``owner``."""
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
            self._id_prefix + secrets.token_urlsafe(32),
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

    async def end(self, session: StdioSession) -> None:
        """End ``session`` and its process."""
        self.sessions.pop(session.id, None)
        await session.terminate()

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

    async def open(self, owner: Owner) -> StdioSession:
        """A new session for ``owner``, its process started; :class:`SessionRefused` when the
        limits or a shutdown forbid it or the command cannot be started."""
        if self._closing:
            raise ShuttingDown("shutting down")
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
            raise SubjectLimitReached(held, self._subject_wait(subject))
        if len(self.sessions) + len(self._starting) >= self.upstream.max_sessions:
            log.warning(
                "upstream %s has %d sessions (max_sessions); refusing a new one",
                self.upstream.name,
                len(self.sessions),
            )
            raise TooManySessions(f"upstream {self.upstream.name!r} has too many sessions")
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
            raise CannotStart(str(exc)) from exc
        finally:
            self._starting.remove(subject)


__all__ = [
    "MAX_MESSAGE_BYTES",
    "CannotStart",
    "MessageStream",
    "SessionRefused",
    "ShuttingDown",
    "StdioSession",
    "StdioSessions",
    "SubjectLimitReached",
    "TooManySessions",
]
