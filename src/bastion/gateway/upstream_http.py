"""A small HTTP/1.1 client for the gateway's upstream requests: an asyncio protocol per
connection, ``httptools`` (llhttp, the parser uvicorn uses) for the answers, and a
last-in-first-out pool of idle keep-alive connections per origin.

The gateway relays every MCP request to its upstream, so the client's cost per request is the
gateway's cost. General clients pay for features the gateway never uses (redirects, cookies,
auth flows, proxies, HTTP/2); httpcore's pool checked every pooled connection with a system call
whenever a request started or ended, and h11's pure-Python state machine cost more than the
rest of the exchange. Here a request is written with one ``write`` (head and body), the answer
parsed in C as it arrives, taking a connection is a ``pop`` and returning one an ``append``.

A connection goes back to the pool only when the exchange ended cleanly (the whole answer read,
no ``Connection: close``); anything else closes it. Idle connections are dropped after
``keepalive_expiry`` seconds, before servers typically close them (uvicorn and Node.js after
5 s), and one the upstream has closed already is never reused. An idempotent request (GET,
DELETE) that fails on a reused connection before any byte of the answer arrived is sent once
more on a new connection; a POST is not (RFC 9112 §9.3.1: it may have been applied).

Request header names and values are checked before anything is written: a name must be an
RFC 9110 token, a value must not hold CR, LF or NUL (obs-text, bytes 0x80-0xFF, is relayed
as it is, RFC 9110 §5.5). The gateway never sends HEAD (its answer has no body whatever its
``Content-Length`` says, which this client does not track).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

READ_SIZE = 64 * 1024
# Body bytes buffered from the upstream before reading pauses (until the client takes them).
HIGH_WATER = 4 * READ_SIZE
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

Header = tuple[str | bytes, str | bytes]


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the HTTP exchange."""


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def _split(url: str) -> tuple[_Origin, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamError(f"not an absolute http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return _Origin(parts.scheme, parts.hostname, port), target.encode("latin-1")


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


_known_names: set[bytes] = set()


def _check_name(name: bytes) -> None:
    if name in _known_names:
        return
    if not _TOKEN.fullmatch(name):
        raise UpstreamError(f"the request cannot be relayed: header {name[:100]!r} is not valid")
    if len(_known_names) < 4096:  # names are few (the client's and the gateway's own)
        _known_names.add(name)


def _head(
    method: str, target: bytes, host: bytes, headers: Sequence[Header], length: int | None
) -> bytes:
    """The request line and headers, checked (see the module docstring)."""
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        raw_name = _bytes(name)
        _check_name(raw_name)
        lines += (raw_name, b": ", _bytes(value).strip(b" \t"), b"\r\n")
    if length is not None:
        lines += (b"content-length: ", str(length).encode("ascii"), b"\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    # Each line ends in the CRLF put there above and nothing else may hold CR, LF or NUL:
    # checked over the whole head at once (a CR or LF in a value or the target shows in the
    # counts), and no space in the target.
    ends = len(headers) + 3 + (length is not None)
    if (
        head.count(b"\r\n") != ends
        or head.count(b"\r") != ends
        or head.count(b"\n") != ends
        or b"\0" in head
        or b" " in target
    ):
        raise UpstreamError(
            "the request cannot be relayed: its target or a header value holds CR, LF, NUL "
            "or (the target) a space"
        )
    return head


class _Broken(Exception):
    """The exchange failed; ``answered`` when some of the answer had arrived."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the answer of its current exchange, parsed as it
    arrives: the head resolves :attr:`head`, body bytes wait in :attr:`chunks`."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.idle_since = 0.0
        self.closed = False
        # One parser per connection: llhttp starts on the next answer once one is complete.
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.head: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.keep_alive = True
        self.received = False
        self.error: _Broken | None = None
        self._informational = False

    # -- the exchange ---------------------------------------------------------------------------

    def start(self, data: bytes) -> asyncio.Future[None]:
        """Write one request; the future resolves once the answer's head has arrived."""
        self._reset()
        assert self.transport is not None
        head = self.head = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return head

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def take(self) -> bytes | None:
        """A buffered chunk of the body, or None when there is none now."""
        if not self.chunks:
            return None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.buffered < READ_SIZE and self.transport is not None and not self.closed:
            self.transport.resume_reading()
        return chunk

    async def wait(self) -> None:
        """Until more of the body, its end, or a failure arrives."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: _Broken) -> None:
        if self.error is None and not self.complete:
            self.error = error
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        self._wake()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but are one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(_Broken("the upstream switched protocols", answered=True))
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(_Broken(f"a malformed answer: {exc}", answered=True))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            reason = f": {exc!r}" if exc else ""
            self._fail(
                _Broken(f"the upstream closed the connection{reason}", answered=self.received)
            )

    # -- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational: the final answer follows
            self._informational = True
            self.headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.complete = True
        self._wake()


class UpstreamResponse:
    """An answer whose body is read as it arrives (:meth:`aiter_raw`, or :meth:`body` once
    :attr:`complete`); :meth:`aclose` returns the connection to the pool when the exchange
    ended cleanly, else closes it."""

    def __init__(self, pool: UpstreamPool, connection: _Connection) -> None:
        self.status_code: int = connection.status
        self.raw_headers: list[tuple[bytes, bytes]] = connection.headers
        self._pool = pool
        self._connection: _Connection | None = connection
        self._read = False  # the body was read to its end

    def __repr__(self) -> str:
        return f"<UpstreamResponse [{self.status_code}]>"

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived (then :meth:`body` gives it)."""
        connection = self._connection
        return connection is not None and connection.complete

    @property
    def drained(self) -> bool:
        """Whether the whole body has arrived and every chunk of it was taken."""
        connection = self._connection
        return connection is not None and connection.complete and not connection.chunks

    def body(self) -> bytes:
        """The whole body, once :attr:`complete`."""
        connection = self._connection
        if connection is None or not connection.complete:
            raise RuntimeError("the body has not all arrived")
        chunks = connection.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        connection.buffered = 0
        self._read = True
        return body

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower().encode()
        for key, value in self.raw_headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (without transfer coding); raises :class:`UpstreamError` when
        the upstream breaks off."""
        connection = self._connection
        if connection is None:
            return
        while True:
            chunk = connection.take()
            if chunk is not None:
                yield chunk
            elif connection.complete:
                self._read = True
                return
            elif connection.error is not None:
                self._discard()
                raise UpstreamError(f"the upstream broke off the answer: {connection.error}")
            else:
                await connection.wait()

    async def aclose(self) -> None:
        """Give the connection back (clean end) or close it (anything else); never waits."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._read and connection.keep_alive:
            self._pool.release(connection)
        else:
            connection.close()

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to upstream origins (see the module docstring).

    ``max_idle`` bounds the idle connections kept per origin; ``connect_timeout`` bounds
    opening one. Timeouts of the exchange itself are the caller's (``asyncio.timeout``).
    """

    def __init__(
        self,
        *,
        max_idle: int = 100,
        keepalive_expiry: float = 4.0,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._closed = False
        self._urls: dict[str, tuple[_Origin, bytes, bytes]] = {}

    def __repr__(self) -> str:
        idle = sum(len(v) for v in self._idle.values())
        return f"UpstreamPool(idle={idle})"

    async def request(
        self, method: str, url: str, headers: Sequence[Header], body: bytes | None = None
    ) -> UpstreamResponse:
        """Send a request and return once the answer's status and headers arrived.

        ``Host`` and, for a body, ``Content-Length`` are set here; ``headers`` (names and
        values as ``str``, latin-1, or ``bytes``) must not carry hop-by-hop headers. Raises
        :class:`UpstreamError`.
        """
        origin, target, host = self._where(url)
        data = _head(method, target, host, headers, None if body is None else len(body))
        if body:
            data += body
        for _ in range(2):
            connection = await self._acquire(origin)
            try:
                await connection.start(data)
            except _Broken as exc:
                connection.close()
                if connection.reused and method in IDEMPOTENT and not exc.answered:
                    continue  # the upstream had closed the idle connection: once more
                raise UpstreamError(str(exc)) from None
            except BaseException:
                connection.close()
                raise
            return UpstreamResponse(self, connection)
        raise UpstreamError("the upstream closed the connection before answering")

    def _where(self, url: str) -> tuple[_Origin, bytes, bytes]:
        found = self._urls.get(url)
        if found is None:
            origin, target = _split(url)
            found = (origin, target, origin.authority.encode("latin-1"))
            if len(self._urls) < 1024:  # the gateway's targets: a few paths per upstream
                self._urls[url] = found
        return found

    async def _acquire(self, origin: _Origin) -> _Connection:
        idle = self._idle.get(origin)
        fresh_since = time.monotonic() - self._expiry
        while idle:
            connection = idle.pop()
            if connection.usable() and connection.idle_since >= fresh_since:
                connection.reused = True
                return connection
            connection.close()
        context = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin), origin.host, origin.port, ssl=context
                )
        except TimeoutError:
            raise UpstreamError(
                f"no connection to {origin.authority} within {self._connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {origin.authority}: {exc}") from None
        return connection

    def release(self, connection: _Connection) -> None:
        """Keep a connection whose exchange ended cleanly (or close it when full or closed)."""
        idle = self._idle.setdefault(connection.origin, [])
        if self._closed or len(idle) >= self._max_idle or not connection.usable():
            connection.close()
            return
        now = time.monotonic()
        # The list is in idle order: expired connections gather at its start.
        while idle and idle[0].idle_since < now - self._expiry:
            idle.pop(0).close()
        connection.idle_since = now
        idle.append(connection)

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their answer does."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
            idle.clear()


__all__ = ["UpstreamError", "UpstreamPool", "UpstreamResponse"]
