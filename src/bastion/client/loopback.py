"""The loopback redirect listener of a native client (RFC 8252 §7.3, §8.3).

A tiny asyncio HTTP server on 127.0.0.1 (or [::1]) and an ephemeral port that accepts exactly
one ``GET <path>?…`` (the authorization response, RFC 6749 §4.1.2), answers it with a small HTML
page, and hands its query string to the flow. Other paths get 404; anything after the first
callback gets 410. The page never echoes the query back (no reflection of attacker input).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from urllib.parse import parse_qs, urlsplit

from bastion.client.errors import AuthorizationError, CallbackTimeout

MAX_HEAD_BYTES = 16 * 1024
READ_TIMEOUT = 10.0

# Styled like the authorization server's pages; a fixed text per outcome (RFC 6749 §4.1.2.1
# error codes), never anything from the query but the choice of text.
_STYLE = (
    "*{box-sizing:border-box}body{margin:0;min-height:100vh;display:grid;place-items:center;background:#f4f6f8;"
    "color:#1b1f24;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}"
    ".card{width:min(28rem,94vw);background:#fff;border:1px solid #d1d9e0;border-radius:10px;"
    "padding:1.75rem 2rem}.brand{font-weight:700;letter-spacing:.04em;color:#0b5cad}"
    "h1{font-size:1.35rem;margin:1rem 0 .75rem}p{color:#59636e}code{overflow-wrap:anywhere;"
    "font-size:.9em;background:#f1f3f5;padding:.05rem .3rem;border-radius:4px}"
)
_PAGE = (
    "<!doctype html><html lang=en><head><meta charset=utf-8>"
    "<meta name=viewport content='width=device-width, initial-scale=1'>"
    "<title>{title} · bastion</title><style>{style}</style></head><body>"
    "<main class=card><span class=brand>bastion</span><h1>{title}</h1>{server}<p>{text}</p>"
    "</main></body></html>"
)
_REFUSALS = {
    "access_denied": (
        "Authorization declined",
        "Nothing was authorized. You can close this window; the terminal says what to do next.",
    ),
    "invalid_scope": (
        "Authorization refused",
        "The server refused the permissions asked for. The terminal says which.",
    ),
    "temporarily_unavailable": (
        "Try again later",
        "The authorization server is busy or down for a moment. Try again in a minute.",
    ),
}
_REFUSED = (
    "Authorization refused",
    "The authorization server refused the request. The terminal says why.",
)
_RECEIVED = (
    "Authorization received",
    "You can close this window and return to your application.",
)


def page(query: str, server: str | None = None) -> str:
    """The page the browser shows after the authorization response ``query``: declined,
    refused or received, for ``server`` (named when known)."""
    params = parse_qs(query)
    if "error" in params:
        title, text = _REFUSALS.get(params["error"][0], _REFUSED)
    else:
        title, text = _RECEIVED
    named = f"<p>for <code>{html.escape(server)}</code></p>" if server else ""
    return _PAGE.format(title=title, server=named, text=text, style=_STYLE)


def _response(status: str, body: str) -> bytes:
    data = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\n"
        "Cache-Control: no-store\r\n"
        "Referrer-Policy: no-referrer\r\n"
        "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


class LoopbackListener:
    """A one-shot redirect URI listener. Use :meth:`start`, then :meth:`wait`, then
    :meth:`close` (or ``async with``)."""

    def __init__(self, host: str, path: str, server: str | None = None) -> None:
        self.host = host
        self.path = path
        self.server = server
        self.port = 0
        self._server: asyncio.Server | None = None
        self._result: asyncio.Future[str] | None = None

    @classmethod
    async def start(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/callback",
        *,
        server: str | None = None,
    ) -> LoopbackListener:
        """Listen on ``host:port``; if ``port`` is taken, on an ephemeral port instead (the
        authorization server must then match loopback redirect URIs on any port, RFC 8252
        §7.3). ``server``: what the authorization is for, named on the page."""
        listener = cls(host, path, server)
        bind = "127.0.0.1" if host == "localhost" else host.strip("[]")
        listener._result = asyncio.get_running_loop().create_future()
        try:
            listener._server = await asyncio.start_server(listener._handle, bind, port)
        except OSError:
            if port == 0:
                raise
            listener._server = await asyncio.start_server(listener._handle, bind, 0)
        listener.port = listener._server.sockets[0].getsockname()[1]
        return listener

    @property
    def redirect_uri(self) -> str:
        """``http://<host>:<port><path>``: the redirect URI of this authorization request."""
        return f"http://{self.host}:{self.port}{self.path}"

    async def wait(self, seconds: float) -> str:
        """The query string of the callback; :class:`CallbackTimeout` after ``seconds``."""
        if self._result is None:
            raise AuthorizationError("the loopback listener was not started")
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), seconds)
        except TimeoutError:
            raise CallbackTimeout(
                f"no authorization response reached {self.redirect_uri} within {seconds:g} s; "
                "finish the log-in in the browser sooner, or raise callback_timeout"
            ) from None

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self._result is not None and not self._result.done():
            self._result.cancel()

    async def __aenter__(self) -> LoopbackListener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if len(head) > MAX_HEAD_BYTES:
                writer.write(_response("431 Request Header Fields Too Large", ""))
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            if len(parts) != 3 or parts[0] != "GET":
                writer.write(_response("405 Method Not Allowed", ""))
                return
            target = urlsplit(parts[1])
            if target.path != self.path:
                writer.write(_response("404 Not Found", ""))
                return
            if self._result is None or self._result.done():
                writer.write(_response("410 Gone", "This authorization was already handled."))
                return
            self._result.set_result(target.query)
            writer.write(_response("200 OK", page(target.query, self.server)))
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()
                await writer.wait_closed()


__all__ = ["LoopbackListener", "page"]
