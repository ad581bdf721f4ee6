"""The gateway's floor: a bare ASGI app that relays each POST to the one-line upstream through
the gateway's own upstream client (:class:`bastion.gateway.upstream_http.UpstreamPool`), served
by uvicorn with the protocol every bastion listener uses (one write per answer), and nothing
else: no token check, policy, audit record, request id, routing or metrics.

Through it, a call costs what any Python gateway on uvicorn pays before doing its own work, so
its ratio to the upstream straight is the ceiling of ``gateway / direct`` on this machine.

    python -m benchmarks.relay PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.types import Receive, Scope, Send

from bastion.gateway.upstream_http import UpstreamPool
from bastion.serve.one_write import OneWriteProtocol

_HEADERS = [
    (b"content-type", b"application/json"),
    (b"accept", b"application/json, text/event-stream"),
]


class Relay:
    """POST anything: the body sent on to ``upstream`` and its answer (status, content type,
    body) sent back; GET /ready: 200."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.pool = UpstreamPool()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self.pool.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] != "POST":
            await _answer(send, 200, b"text/plain", b"ok")
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer = await self.pool.request("POST", self.upstream, _HEADERS, body)
        chunks = [chunk async for chunk in answer.aiter_raw()]
        kind = (answer.header("content-type") or "application/json").encode("latin-1")
        status = answer.status_code
        await answer.aclose()
        await _answer(send, status, kind, b"".join(chunks))


async def _answer(send: Send, status: int, kind: bytes, body: bytes) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str]) -> None:
    port, upstream = int(argv[0]), argv[1]
    uvicorn.run(
        Relay(upstream),
        host="127.0.0.1",
        port=port,
        http=OneWriteProtocol,
        loop="uvloop",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
