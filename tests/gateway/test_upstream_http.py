"""The gateway's upstream HTTP/1.1 client: keep-alive reuse, when a connection must not be
reused, streaming, and failures (RFC 9112 §9 connection management)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from bastion.gateway.upstream_http import UpstreamError, UpstreamPool
from tests.support.live import free_port

Reply = Callable[[bytes], Awaitable[bytes | None]]


@dataclass
class RawServer:
    """A loopback HTTP/1.1 server answering each request with ``reply(request_head)``
    (None: close without answering); it counts connections and keeps the request heads."""

    reply: Reply
    close_after_reply: bool = False
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.bodies.append(await reader.readexactly(length) if length else b"")
                self.heads.append(head)
                answer = await self.reply(head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_reply or b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[tuple[RawServer, str]]:
    server = RawServer(reply)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def ok(body: bytes = b"{}", *extra: str) -> Reply:
    async def reply(head: bytes) -> bytes:
        lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    return reply


async def read_all(pool: UpstreamPool, method: str, url: str, body: bytes | None = None) -> bytes:
    response = await pool.request(method, url, [("accept", "application/json")], body)
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()


async def test_a_connection_is_reused_after_a_clean_exchange() -> None:
    async with raw_server(ok(b'{"a":1}')) as (server, url):
        pool = UpstreamPool()
        try:
            for _ in range(5):
                assert await read_all(pool, "POST", f"{url}/mcp", b"{}") == b'{"a":1}'
        finally:
            await pool.aclose()
    assert server.connections == 1


async def test_the_request_carries_host_length_target_and_body() -> None:
    async with raw_server(ok()) as (server, url):
        pool = UpstreamPool()
        try:
            await read_all(pool, "POST", f"{url}/mcp/x?a=1&b=2", b'{"jsonrpc":"2.0"}')
        finally:
            await pool.aclose()
    head = server.heads[0].decode()
    assert head.startswith("POST /mcp/x?a=1&b=2 HTTP/1.1\r\n")
    port = url.rsplit(":", 1)[1]
    assert f"host: 127.0.0.1:{port}\r\n" in head.lower()
    assert "content-length: 17\r\n" in head.lower()
    assert server.bodies == [b'{"jsonrpc":"2.0"}']


async def test_header_values_with_obs_text_are_relayed_byte_for_byte() -> None:
    """Found by the fuzzer (tests/fuzz): HTTP allows obs-text (bytes 0x80-0xFF) in a header
    value (RFC 9110 §5.5); the proxy hands them on as latin-1 text, and they reached the
    upstream as h11 tried to encode them as ASCII: a 500. They go upstream unchanged."""
    async with raw_server(ok()) as (server, url):
        pool = UpstreamPool()
        try:
            response = await pool.request(
                "POST", f"{url}/mcp", [("content-type", "\x80\xe9t\xe9")], b"{}"
            )
            await response.aclose()
        finally:
            await pool.aclose()
    assert b"content-type: \x80\xe9t\xe9\r\n" in server.heads[0].lower()


async def test_connection_close_from_the_upstream_is_honoured() -> None:
    """RFC 9112 §9.6: after ``Connection: close`` the connection is not used again."""
    async with raw_server(ok(b"{}", "Connection: close")) as (server, url):
        pool = UpstreamPool()
        try:
            for _ in range(3):
                await read_all(pool, "GET", url)
        finally:
            await pool.aclose()
    assert server.connections == 3


async def test_a_chunked_stream_is_not_read_to_its_end_first() -> None:
    async def reply(head: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )

    async with raw_server(reply) as (_, url):
        pool = UpstreamPool()
        try:
            response = await pool.request("GET", url, [])
            assert response.status_code == 200
            assert response.header("content-type") == "text/event-stream"
            assert response.header("Content-Type") == "text/event-stream"
            chunks = response.aiter_raw()
            # Nothing sent yet: the read waits (bounded here), it is not buffered to the end.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await anext(chunks)
            await response.aclose()  # mid-stream: closed, not pooled
        finally:
            await pool.aclose()
    assert "idle=0" in repr(pool)


async def test_an_answer_abandoned_midway_closes_its_connection() -> None:
    async with raw_server(ok(b"x" * 100_000)) as (server, url):
        pool = UpstreamPool()
        try:
            response = await pool.request("GET", url, [])
            chunks = response.aiter_raw()
            await anext(chunks)
            await response.aclose()
            await read_all(pool, "GET", url)
        finally:
            await pool.aclose()
    assert server.connections == 2


async def test_idle_connections_expire_before_servers_close_them() -> None:
    async with raw_server(ok()) as (server, url):
        pool = UpstreamPool(keepalive_expiry=0.05)
        try:
            await read_all(pool, "GET", url)
            await asyncio.sleep(0.1)
            await read_all(pool, "GET", url)
        finally:
            await pool.aclose()
    assert server.connections == 2


async def test_a_connection_the_upstream_closed_while_idle_is_not_reused() -> None:
    """A POST is never retried (RFC 9112 §9.3.1), so it must not go out on a connection the
    upstream has closed: the pool notices the close and opens a new one."""
    async with raw_server(ok()) as (server, url):
        # Answer, then close without saying so (as servers do when keep-alive times out).
        server.close_after_reply = True
        pool = UpstreamPool()
        try:
            await read_all(pool, "POST", url, b"{}")
            await asyncio.sleep(0.05)
            assert await read_all(pool, "POST", url, b"{}") == b"{}"
        finally:
            await pool.aclose()
    assert server.connections == 2


async def test_at_most_max_idle_connections_are_kept() -> None:
    gate = asyncio.Event()

    async def slow(head: bytes) -> bytes:
        await gate.wait()
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    async with raw_server(slow) as (server, url):
        pool = UpstreamPool(max_idle=2)
        try:
            calls = [asyncio.create_task(read_all(pool, "GET", url)) for _ in range(5)]
            await asyncio.sleep(0.1)
            gate.set()
            await asyncio.gather(*calls)
            assert server.connections == 5
            assert "idle=2" in repr(pool)
        finally:
            await pool.aclose()


async def test_an_unreachable_upstream_is_an_upstream_error() -> None:
    pool = UpstreamPool(connect_timeout=2)
    with pytest.raises(UpstreamError, match=r"cannot connect to 127\.0\.0\.1"):
        await pool.request("GET", f"http://127.0.0.1:{free_port()}/mcp", [])
    await pool.aclose()


async def test_an_upstream_that_closes_without_answering_is_an_upstream_error() -> None:
    async def hang_up(head: bytes) -> None:
        return None

    async with raw_server(hang_up) as (_, url):
        pool = UpstreamPool()
        try:
            with pytest.raises(UpstreamError):
                await pool.request("POST", url, [], b"{}")
        finally:
            await pool.aclose()


async def test_a_malformed_answer_is_an_upstream_error() -> None:
    async def garbage(head: bytes) -> bytes:
        return b"NOT HTTP AT ALL\r\n\r\n"

    async with raw_server(garbage) as (_, url):
        pool = UpstreamPool()
        try:
            with pytest.raises(UpstreamError):
                await pool.request("GET", url, [])
        finally:
            await pool.aclose()


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/mcp", [("x-note", "a\r\nx-injected: 1")]),
        ("/mcp", [("x-note", "a\nb")]),
        ("/mcp", [("x-note", "a\rb")]),
        ("/mcp", [("x-note", "a\x00b")]),
        ("/mcp", [("x-bad name", "a")]),
        ("/mcp", [("x-bad:name", "a")]),
        ("/mcp", [("", "a")]),
        ("/mcp%20x HTTP/1.1\r\nx-injected: 1\r\n", []),
    ],
)
async def test_a_request_that_would_break_http_framing_is_refused_before_any_byte(
    target: str, headers: list[tuple[str, str]]
) -> None:
    """CR, LF or NUL in a header value or the target, a header name that is not a token: an
    UpstreamError, and the upstream gets nothing (not even a connection)."""
    async with raw_server(ok()) as (server, url):
        pool = UpstreamPool()
        try:
            with pytest.raises(UpstreamError, match="cannot be relayed"):
                await pool.request("POST", f"{url}{target}", headers, b"{}")
        finally:
            await pool.aclose()
    assert (server.connections, server.heads) == (0, [])
