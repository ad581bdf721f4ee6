"""One write per answer (bastion.serve.one_write): what one loop step writes leaves in one
piece, nothing is lost, reordered or held past a loop step, and answers of every shape arrive
intact through uvicorn with the protocol every bastion listener uses."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from typing import cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bastion.serve.one_write import FLUSH_BYTES, GatheringTransport, OneWriteProtocol
from bastion.serve.running import uvicorn_options
from tests.support.live import free_port, serve


async def _pair() -> tuple[GatheringTransport, socket.socket]:
    """A gathering transport over a real socket, and the peer's end (non-blocking)."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    # uvloop's transports are not asyncio.Transport subclasses, only alike.
    return GatheringTransport(cast(asyncio.Transport, transport), loop), peer


def _received(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 20)
    except BlockingIOError:
        return b""


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_writes_of_one_loop_step_leave_together_after_it() -> None:
    gathering, peer = await _pair()
    gathering.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    gathering.write(bytearray(b"ok"))
    assert _received(peer) == b""  # nothing sent before the step ends
    await _settle()
    assert _received(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    gathering.writelines([b"a", b"b"])
    gathering.write(b"")
    await _settle()
    assert _received(peer) == b"ab"
    gathering.close()
    peer.close()


async def test_a_large_write_is_not_held() -> None:
    gathering, peer = await _pair()
    gathering.write(b"x" * FLUSH_BYTES)
    assert gathering.get_write_buffer_size() < FLUSH_BYTES
    got = b""
    while len(got) < FLUSH_BYTES:
        got += _blocking(peer).recv(1 << 20)
    assert got == b"x" * FLUSH_BYTES
    gathering.close()
    peer.close()


def _blocking(peer: socket.socket) -> socket.socket:
    peer.setblocking(True)
    peer.settimeout(5)
    return peer


async def test_close_sends_what_was_kept() -> None:
    gathering, peer = await _pair()
    gathering.write(b"last words")
    gathering.close()
    await _settle()
    assert _blocking(peer).recv(100) == b"last words"
    assert peer.recv(100) == b""  # then the end of the stream
    peer.close()


async def test_abort_drops_what_was_kept() -> None:
    gathering, peer = await _pair()
    gathering.write(b"never sent")
    gathering.abort()
    await _settle()
    assert _blocking(peer).recv(100) == b""
    peer.close()


async def _token(request: Request) -> Response:
    form = await request.form()
    return JSONResponse({"echo": form.get("n")}, headers={"Cache-Control": "no-store"})


async def _stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(200):
            yield f"{i:04d}".encode() * 256
        yield b"z" * (3 * FLUSH_BYTES)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


def _app() -> Starlette:
    return Starlette(
        routes=[
            Route("/token", _token, methods=["POST"]),
            Route("/stream", _stream, methods=["GET"]),
        ]
    )


def _streamed() -> bytes:
    return b"".join(f"{i:04d}".encode() * 256 for i in range(200)) + b"z" * (3 * FLUSH_BYTES)


@pytest.fixture
async def served() -> AsyncIterator[str]:
    options = uvicorn_options([])
    assert options["http"] is OneWriteProtocol
    kept = {k: v for k, v in options.items() if k in ("http", "server_header", "proxy_headers")}
    async with serve(_app(), **kept) as url:
        yield url


async def test_answers_of_every_shape_arrive_whole_and_in_order(served: str) -> None:
    async with httpx.AsyncClient(base_url=served, trust_env=False, timeout=10) as http:
        for n in range(50):  # one keep-alive connection
            answer = await http.post("/token", data={"n": str(n)})
            assert answer.status_code == 200
            assert answer.json() == {"echo": str(n)}
            assert answer.headers["cache-control"] == "no-store"
        concurrent = await asyncio.gather(
            *(http.post("/token", data={"n": str(n)}) for n in range(20))
        )
        assert [a.json()["echo"] for a in concurrent] == [str(n) for n in range(20)]
        streamed = await http.get("/stream")
        assert streamed.status_code == 200
        assert streamed.content == _streamed()
        head = await http.head("/stream")
        assert head.status_code in (200, 405)
        closing = await http.post("/token", data={"n": "x"}, headers={"Connection": "close"})
        assert closing.json() == {"echo": "x"}
        missing = await http.get("/nowhere")
        assert missing.status_code == 404


async def test_pipelined_requests_are_answered_in_order(served: str) -> None:
    host, port = served.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b"n=1"
    request = (
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 3\r\n\r\n" + body
    )
    writer.write(request * 3 + request.replace(b"Host: x", b"Host: x\r\nConnection: close"))
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    writer.close()
    assert received.count(b"HTTP/1.1 200 OK") == 4
    assert received.count(b'{"echo":"1"}') == 4


def _uvloop_pair_checks() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def checks() -> None:
        await test_the_writes_of_one_loop_step_leave_together_after_it()
        await test_a_large_write_is_not_held()
        await test_close_sends_what_was_kept()
        await test_abort_drops_what_was_kept()

    # Bounded: a check that waited forever would hang the thread, and with it the run.
    uvloop.run(asyncio.wait_for(checks(), 60))


async def test_the_same_on_uvloop_transports() -> None:
    """uvicorn runs on uvloop where installed (as bastion serve does): its transports too."""
    await asyncio.to_thread(_uvloop_pair_checks)


SERVER = """
import sys, uvicorn
from bastion.serve.one_write import OneWriteProtocol
uvicorn.run("tests.serve.test_one_write:_app", factory=True, host="127.0.0.1",
            port=int(sys.argv[1]), http=OneWriteProtocol, loop="uvloop", log_level="warning")
"""


async def test_answers_arrive_whole_from_uvicorn_on_uvloop() -> None:
    pytest.importorskip("uvloop")
    port = free_port()
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVER, str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as http:
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.post("/token", data={"n": "0"})).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            answers = await asyncio.gather(
                *(http.post("/token", data={"n": str(n)}) for n in range(20))
            )
            assert [a.json()["echo"] for a in answers] == [str(n) for n in range(20)]
            streamed = await http.get("/stream")
            assert streamed.content == _streamed()
    finally:
        process.terminate()
        await process.wait()
