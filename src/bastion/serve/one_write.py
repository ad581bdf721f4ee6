"""One write per answer: uvicorn's httptools protocol over a transport that gathers what one
step of the event loop writes and hands it to the socket at once.

uvicorn writes an answer's status line and headers when the app sends ``http.response.start``
and the body when it sends ``http.response.body``; uvloop sends each write at once, so every
small answer costs two ``send`` system calls (on loopback a sixth of a token request's CPU).
:class:`GatheringTransport` keeps the writes of one loop step and sends them together right
after it (``call_soon``): the bytes and their order are unchanged, at most one loop step later.
Past :data:`FLUSH_BYTES` it sends at once, so a large or streamed body never waits in memory
and the real transport's flow control (pausing the protocol) goes on working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_BYTES = 64 * 1024


class GatheringTransport:
    """``transport`` whose writes of one loop step go out as one (see the module docstring);
    everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Keep ``data`` for the write at the end of this loop step."""
        if not data:
            return
        self._pending.append(bytes(data))  # a bytearray may change after the call
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        """Keep each of ``lines``, in order."""
        for line in lines:
            self.write(line)

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Hand what was kept to the transport now."""
        if not self._pending:
            return
        pending = self._pending
        self._pending, self._size = [], 0
        if not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def write_eof(self) -> None:
        """Send what was kept, then the end of the stream."""
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        """Send what was kept, then close (as a transport's close sends its buffer first)."""
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping what was kept (as a transport's abort drops its buffer)."""
        self._pending, self._size = [], 0
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        """The transport's buffer and what is kept here."""
        return self.transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (``uvicorn.Config(http=OneWriteProtocol)``) writing through
    a :class:`GatheringTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        gathering: Any = GatheringTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(gathering)


__all__ = ["FLUSH_BYTES", "GatheringTransport", "OneWriteProtocol"]
