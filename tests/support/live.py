"""Real HTTP servers on loopback for integration tests: uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import uvicorn
from starlette.types import ASGIApp

_handed_out: set[int] = set()
_random = random.SystemRandom()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _slice() -> tuple[int, int]:
    """The ports this process draws from: 10000 up to the ephemeral range, or under
    pytest-xdist the worker's own contiguous share of it, so that two workers never hand out
    the same port (each checks that a port is free, but another could take it before the
    server binds)."""
    low, _ = _ephemeral_range()
    low = max(low, 10001)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count <= 1:
        return 10000, low
    size = (low - 10000) // count
    start = 10000 + int(worker[2:]) * size
    return start, start + size


def free_port() -> int:
    """A port that is free on 127.0.0.1 now, for servers that must know their URL before they
    start (like an authorization server whose issuer names its port).

    It is drawn at random from below the kernel's ephemeral range (from this worker's share of
    it, see :func:`_slice`) and never twice in a process: a port from ``bind(0)`` comes from
    that range, where every outgoing connection of a busy test run also takes its local port,
    and one of those could take it before the server binds (uvicorn then exits the whole test
    process)."""
    start, stop = _slice()
    for _ in range(200):
        port = _random.randrange(start, stop)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {start}-{stop - 1} on 127.0.0.1 after 200 tries")


class _Server(uvicorn.Server):
    """uvicorn's server, stopping as soon as :meth:`stop` is called. uvicorn itself looks at
    ``should_exit`` every 0.1 s, then sleeps 0.1 s and polls every 0.1 s until the open
    connections and tasks are done: about 0.2 s per server and test, idle. Here the same steps
    run without the wait (connections polled every 5 ms)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        async with asyncio.timeout(self.config.timeout_graceful_shutdown):
            while self.server_state.connections or self.server_state.tasks:
                await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


@asynccontextmanager
async def serve(app: ASGIApp, port: int = 0, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 until the block ends; yield its base URL.
    ``options`` go to ``uvicorn.Config`` (e.g. ``proxy_headers=False``)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        **{"log_level": "warning", "lifespan": "on", "access_log": False, **options},
    )
    server = _Server(config)
    # Bound here, not by uvicorn: its bind error is a SystemExit that breaks the event loop of
    # every later test; this one is an OSError that names the port.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as exc:
        listener.close()
        raise OSError(exc.errno, f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc

    async def serving() -> None:
        try:
            await server.serve(sockets=[listener])
        except SystemExit as exc:  # uvicorn's answer to a failed lifespan startup
            raise RuntimeError(f"the app's startup failed (uvicorn exit {exc.code})") from None

    task = asyncio.create_task(serving())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("uvicorn did not start within 5 s")
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.stop()
        try:
            await asyncio.wait_for(task, timeout=10)
        finally:
            listener.close()


@dataclass(frozen=True)
class RawResponse:
    """What :func:`raw_request` got back."""

    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(
    base: str,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> RawResponse:
    """Send one HTTP/1.1 request with ``target`` exactly as given (httpx removes dot segments
    from URLs, so it cannot send ``/a/../b``); headers are lowercased in the answer."""
    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    connection = h11.Connection(h11.CLIENT)
    sent = [("Host", parts.netloc), *(headers or []), ("Content-Length", str(len(body)))]
    request = h11.Request(method=method, target=target.encode("latin-1"), headers=sent)
    writer.write((connection.send(request) or b"") + (connection.send(h11.Data(data=body)) or b""))
    writer.write(connection.send(h11.EndOfMessage()) or b"")
    await writer.drain()
    status, answer_headers, chunks = 0, {}, bytearray()
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await asyncio.wait_for(reader.read(65536), 10))
            elif isinstance(event, h11.Response):
                status = event.status_code
                answer_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    finally:
        writer.close()
    return RawResponse(status, answer_headers, bytes(chunks))
