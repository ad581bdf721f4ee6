"""A small HTTP/1.1 client for the gateway's upstream requests: asyncio streams, ``h11`` for the
protocol, and a last-in-first-out pool of idle keep-alive connections per origin.

The gateway relays every MCP request to its upstream, so the client's cost per request is the
gateway's cost. General clients pay for features the gateway never uses (redirects, cookies,
auth flows, proxies, HTTP/2) and httpcore's pool checks every pooled connection with a system
call whenever a request starts or ends, which made it most of the gateway's CPU
(docs/performance.md). Here taking a connection is a ``pop`` and returning one an ``append``.

A connection goes back to the pool only when the exchange ended cleanly (both sides done, no
``Connection: close``); anything else closes it. Idle connections are dropped after
``keepalive_expiry`` seconds, before servers typically close them (uvicorn and Node.js after
5 s), and one the upstream has closed already is never reused. An idempotent request (GET,
DELETE) that fails on a reused connection before any byte of the answer arrived is sent once
more on a new connection; a POST is not (RFC 9112 §9.3.1: it may have been applied).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

READ_SIZE = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})


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


def _split(url: str) -> tuple[_Origin, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamError(f"not an absolute http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return _Origin(parts.scheme, parts.hostname, port), target


@dataclass(eq=False)
class _Connection:
    origin: _Origin
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    reused: bool = False
    idle_since: float = 0.0

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()

    async def send(self, *events: h11.Request | h11.Data | h11.EndOfMessage) -> None:
        """Write the events in one system call and wait until the buffer drained."""
        self.writer.write(b"".join(self.protocol.send(event) or b"" for event in events))
        await self.writer.drain()

    async def next_event(self) -> object:
        while True:
            event = self.protocol.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.protocol.receive_data(await self.reader.read(READ_SIZE))


class UpstreamResponse:
    """An answer whose body is read as it arrives (:meth:`aiter_raw`); :meth:`aclose` returns
    the connection to the pool when the exchange ended cleanly, else closes it."""

    def __init__(self, pool: UpstreamPool, connection: _Connection, response: h11.Response) -> None:
        self.status_code: int = response.status_code
        self.raw_headers: list[tuple[bytes, bytes]] = list(response.headers.raw_items())
        self._pool = pool
        self._connection: _Connection | None = connection

    def __repr__(self) -> str:
        return f"<UpstreamResponse [{self.status_code}]>"

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

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
        try:
            while True:
                event = await connection.next_event()
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    return
                else:
                    raise UpstreamError(f"unexpected {type(event).__name__} in the body")
        except (OSError, h11.ProtocolError) as exc:
            self._discard()
            raise UpstreamError(f"the upstream broke off the answer: {exc!r}") from None

    async def aclose(self) -> None:
        """Give the connection back (clean end) or close it (anything else)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        ended = (
            connection.protocol.our_state is h11.DONE
            and connection.protocol.their_state is h11.DONE
        )
        if ended:
            try:
                connection.protocol.start_next_cycle()
            except h11.LocalProtocolError:
                ended = False
        if ended:
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

    def __repr__(self) -> str:
        idle = sum(len(v) for v in self._idle.values())
        return f"UpstreamPool(idle={idle})"

    async def request(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> UpstreamResponse:
        """Send a request and return once the answer's status and headers arrived.

        ``Host`` and, for a body, ``Content-Length`` are set here; ``headers`` must not carry
        hop-by-hop headers. Raises :class:`UpstreamError`.
        """
        origin, target = _split(url)
        head = [("host", origin.authority), *headers]
        if body is not None:
            head.append(("content-length", str(len(body))))
        # As bytes, byte for byte as received: values may carry obs-text (RFC 9110 §5.5), which
        # h11 would otherwise try to encode as ASCII.
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in head]
        try:
            request = h11.Request(method=method, target=target.encode("latin-1"), headers=raw)
        except h11.LocalProtocolError as exc:
            raise UpstreamError(f"the request cannot be relayed: {exc}") from None
        for _ in range(2):
            connection = await self._acquire(origin)
            try:
                return await self._exchange(connection, request, body)
            except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
                connection.close()
                if (
                    connection.reused
                    and method in IDEMPOTENT
                    and not isinstance(exc, h11.LocalProtocolError)
                ):
                    continue  # the upstream had closed the idle connection: once more
                raise UpstreamError(f"{type(exc).__name__}: {exc}") from None
            except BaseException:
                connection.close()
                raise
        raise UpstreamError("the upstream closed the connection before answering")

    async def _exchange(
        self, connection: _Connection, request: h11.Request, body: bytes | None
    ) -> UpstreamResponse:
        if body:
            await connection.send(request, h11.Data(data=body), h11.EndOfMessage())
        else:
            await connection.send(request, h11.EndOfMessage())
        while True:
            event = await connection.next_event()
            if isinstance(event, h11.Response):
                return UpstreamResponse(self, connection, event)
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the upstream closed the connection")
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")

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
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=context, limit=READ_SIZE
                )
        except TimeoutError:
            raise UpstreamError(
                f"no connection to {origin.authority} within {self._connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {origin.authority}: {exc}") from None
        return _Connection(origin, reader, writer)

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
