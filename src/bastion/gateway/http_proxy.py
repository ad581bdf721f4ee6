"""Reverse proxy to a streamable HTTP MCP server (MCP transports, "Streamable HTTP").

POST, GET and DELETE go to the upstream endpoint (paths below the mount path to the same paths
below the upstream URL, dot segments removed; one that would leave the mount path is refused with
400, see :mod:`bastion.gateway.upstream_path`). Answers come back as they arrive: a JSON body as
it is read, an SSE stream event by event, never buffered whole. When the client goes away the
upstream request is closed too (for 2026-07-28 servers that is how a request is cancelled).

Header rules:

- The client's ``Authorization`` never reaches the upstream: token passthrough is forbidden
  (MCP authorization, "Token Passthrough"; checklist R05). Neither do its ``DPoP`` proof
  (RFC 9449 §7: for the gateway's URL and the client's token), ``Cookie``, hop-by-hop
  headers (RFC 9110 §7.6.1), ``Origin`` and ``Referer`` (the gateway already checked Origin; the
  upstream sees the gateway as its client), nor any ``X-Bastion-*`` header a client made up.
- ``Forwarded``, ``X-Forwarded-*`` and ``X-Real-IP`` from the client are dropped: the gateway
  sets its own ``X-Forwarded-For`` (the client address it saw), ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host``, so an upstream that trusts them is not told a made-up address.
- ``X-Request-Id`` is the request's id (:mod:`bastion.ops.request_id`): the client's own only
  when it was well formed, so the upstream's log can be joined to the gateway's.
- Everything else passes through both ways, the MCP ones included: ``Mcp-Session-Id``,
  ``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``, ``Mcp-Param-*``, ``Last-Event-ID``,
  ``Accept``, ``Content-Type``.
- The upstream's configured ``headers`` are added (its own credential); with ``forward_identity``
  the signed identity headers of :mod:`bastion.gateway.identity`.
- From the upstream, ``Set-Cookie`` (the gateway's origin is shared by all upstreams) and
  ``WWW-Authenticate`` (a challenge for the gateway's credential, not the client's token) are
  dropped, and a 401 becomes 502: the client's token was fine, the gateway's credential was not.
- An upstream with its own OAuth (``auth = "oauth"``) gets the person's own upstream token as
  ``Authorization``, and its 401 sends the person to connect again
  (:mod:`bastion.gateway.upstream_oauth`). One with ``auth = "exchange"`` gets a token the
  gateway obtained for it by exchanging the caller's (RFC 8693,
  :mod:`bastion.gateway.upstream_exchange`); its 401 is a 502.

Session ids the upstream issues never reach the client as they are: the client gets them sealed
to the upstream and to the caller who started the session
(:class:`~bastion.gateway.replicas.SessionSeal`), which any gateway replica can check without
shared memory. A request naming a
session id that does not open for this caller and this upstream gets 404 -32001 and never reaches
the upstream (checklist R10); one that opens goes upstream with the upstream's own id.

Failures are JSON-RPC error responses naming the upstream (not its address): 502 when it cannot
be reached or breaks the exchange, 504 when it does not answer within ``timeout``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from bastion.config import UpstreamSettings
from bastion.edge import jsonrpc
from bastion.edge.asgi import (
    ClientGone,
    media_type,
    race_disconnect,
    send_json,
    wait_for_disconnect,
)
from bastion.edge.body import BodyTooLarge, read_body
from bastion.gateway.identity import HEADER_PREFIX, sign_identity_headers
from bastion.gateway.mcp_session import HEADER, owner_of, send_session_not_found, session_id_of
from bastion.gateway.replicas import SessionSeal
from bastion.gateway.upstream_exchange import UpstreamExchange
from bastion.gateway.upstream_http import UpstreamError, UpstreamPool, UpstreamResponse
from bastion.gateway.upstream_oauth import UpstreamOAuth
from bastion.gateway.upstream_path import UnsafePath, below_mount
from bastion.logs import get_logger
from bastion.ops import metrics
from bastion.ops.request_id import HEADER as REQUEST_ID_HEADER
from bastion.ops.request_id import request_id_of
from bastion.resource.principal import principal_of

log = get_logger(__name__)

METHODS = ("GET", "POST", "DELETE")
# RFC 9110 §7.6.1 and the headers RFC 9112 gives connection-specific meaning.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never sent upstream (besides hop-by-hop). Authorization: R05; DPoP: the client's proof is for
# the gateway's URL and its token (RFC 9449 §7), and nothing of either goes on. Host,
# Content-Length and Accept-Encoding are set by the proxy itself.
REQUEST_DROPPED = frozenset(
    {
        "authorization",
        "dpop",
        "cookie",
        "origin",
        "referer",
        "host",
        "content-length",
        "accept-encoding",
    }
)
# Proxy headers of the client's making; the gateway sets X-Forwarded-* itself.
FORWARDING = frozenset({"forwarded", "x-real-ip"})
FORWARDING_PREFIX = "x-forwarded-"
# The gateway's own server writes Date (RFC 9110 §6.6.1), and sets X-Accel-Buffering on
# event streams: the upstream's copies would make two of each. The gateway's DPoP nonces are its
# own (RFC 9449 §9): an upstream's DPoP-Nonce would mislead the client.
RESPONSE_DROPPED = frozenset(
    {"set-cookie", "www-authenticate", "dpop-nonce", "content-length", "date", "x-accel-buffering"}
)


class _UpstreamFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _UnknownSession(Exception):
    """The session id names no session of this caller at this upstream."""


class _TokenRefused(Exception):
    """The upstream answered 401 to the person's upstream token."""


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> set[str]:
    """Header names a Connection header declares hop-by-hop (RFC 9110 §7.6.1)."""
    listed: set[str] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            listed.update(p.strip().lower() for p in value.decode("latin-1").split(","))
    return listed


class HttpProxy:
    """ASGI app relaying MCP streamable HTTP to one upstream (see the module docstring)."""

    def __init__(
        self,
        upstream: UpstreamSettings,
        *,
        http: UpstreamPool,
        identity_secret: bytes | None = None,
        session_key: bytes | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
        oauth: UpstreamOAuth | None = None,
        exchange: UpstreamExchange | None = None,
    ) -> None:
        if upstream.url is None:
            raise ValueError(f"upstream {upstream.name!r} has no url; it is a stdio upstream")
        if upstream.forward_identity and (identity_secret is None or upstream.resource is None):
            raise ValueError(
                f"upstream {upstream.name!r} forwards identity but has no secret or resource"
            )
        self.upstream = upstream
        self.url: str = upstream.url
        self._http = http
        self._identity_secret = identity_secret if upstream.forward_identity else None
        self._audience = upstream.resource or ""
        self._max_body_bytes = max_body_bytes
        if (upstream.auth == "oauth") != (oauth is not None):
            raise ValueError(f"upstream {upstream.name!r}: give oauth exactly when auth = oauth")
        self._oauth = oauth
        if (upstream.auth == "exchange") != (exchange is not None):
            raise ValueError(
                f"upstream {upstream.name!r}: give exchange exactly when auth = exchange"
            )
        self._exchange_tokens = exchange
        self._extra = [(k, v.get_secret_value()) for k, v in upstream.headers.items()]
        self._extra_names = {k.lower() for k, _ in self._extra}
        # Without a key (an HttpProxy on its own), the sessions hold in this process only.
        self.sessions = SessionSeal(session_key or secrets.token_bytes(32), upstream.name)

    def __repr__(self) -> str:
        return f"HttpProxy(upstream={self.upstream.name!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        method: str = scope["method"]
        if method not in METHODS:
            await send_json(
                send,
                405,
                jsonrpc.error(jsonrpc.INVALID_REQUEST, f"method {method} is not allowed here"),
                [("Allow", ", ".join(METHODS))],
            )
            return
        try:
            target = self._target(scope)
        except UnsafePath as exc:
            await send_json(send, 400, jsonrpc.error(jsonrpc.INVALID_REQUEST, str(exc)))
            return
        try:
            body = await read_body(scope, receive, self._max_body_bytes)
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await send_json(send, 413, jsonrpc.error(jsonrpc.INVALID_REQUEST, str(exc)))
            return
        ids = jsonrpc.request_ids(body.messages) if method == "POST" else []
        request_id = ids[0] if len(ids) == 1 else None
        try:
            upstream_session = self._upstream_session(scope)
        except _UnknownSession:
            await send_session_not_found(send)
            return
        token: str | None = None
        if self._oauth is not None:
            token = await self._oauth.token_for(scope, method, body, send)
            if token is None:
                return
        elif self._exchange_tokens is not None:
            token = await self._exchange_tokens.token_for(scope, send, request_id)
            if token is None:
                return
        disconnected = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await self._exchange(
                scope, method, target, body.raw, upstream_session, send, disconnected, token
            )
        except _TokenRefused:
            if self._oauth is not None and token is not None:  # only then raised
                await self._oauth.refused(scope, method, body, token, send)
            elif self._exchange_tokens is not None and token is not None:
                metrics.upstream_failed(self.upstream.name, "http", "token_refused")
                self._exchange_tokens.refused(token)
                message = (
                    f"upstream {self.upstream.name!r} refused the token the gateway obtained for it"
                )
                await send_json(
                    send, 502, jsonrpc.error(jsonrpc.UPSTREAM_ERROR, message, request_id)
                )
        except _UpstreamFailure as failure:
            await send_json(
                send,
                failure.status,
                jsonrpc.error(jsonrpc.UPSTREAM_ERROR, failure.message, request_id),
            )
        except ClientGone:
            log.debug("client left; closed the request to upstream %s", self.upstream.name)
        finally:
            disconnected.cancel()

    def _upstream_session(self, scope: Scope) -> str | None:
        """The upstream's id of the session the request names (None: it names none); raises
        :class:`_UnknownSession` when the id does not open for this caller and upstream (R10)."""
        sealed = session_id_of(scope)
        if sealed is None:
            return None
        opened = self.sessions.open(sealed, owner_of(scope))
        if opened is None:
            raise _UnknownSession
        return opened

    # -- the exchange ---------------------------------------------------------------------------

    async def _exchange(
        self,
        scope: Scope,
        method: str,
        target: str,
        body: bytes,
        upstream_session: str | None,
        send: Send,
        disconnected: asyncio.Task[None],
        token: str | None = None,
    ) -> None:
        # The whole wait for the answer is bounded in _send; reads of an SSE stream are not (a
        # GET stream may rightly stay quiet for a long time).
        sending = self._send(
            method,
            target,
            self._request_headers(scope, upstream_session, token),
            body if method == "POST" else None,
        )
        response = await race_disconnect(sending, disconnected)
        try:
            if response.status_code == 401 and token is not None:
                log.info("upstream %s refused a person's upstream token", self.upstream.name)
                raise _TokenRefused
            if response.status_code == 401:
                metrics.upstream_failed(self.upstream.name, "http", "credentials_refused")
                log.warning(
                    "upstream %s answered 401 to the gateway: its configured credential "
                    "(upstreams.headers) is missing or wrong",
                    self.upstream.name,
                )
                raise _UpstreamFailure(
                    502, f"upstream {self.upstream.name!r} refused the gateway's credentials"
                )
            streaming = self._is_event_stream(response)
            headers = self._response_headers(response, streaming, scope)
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": headers}
            )
            chunks = self._chunks(response, streaming)
            try:
                await race_disconnect(self._relay(chunks, send), disconnected)
            except _UpstreamFailure as failure:
                # The status is sent already: end the body; the client sees no response.
                log.warning("upstream %s broke off: %s", self.upstream.name, failure.message)
                metrics.upstream_failed(self.upstream.name, "http", "broken_off")
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> UpstreamResponse:
        name = self.upstream.name
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.upstream.timeout):
                response = await self._http.request(method, url, headers, body)
        except TimeoutError:
            metrics.upstream_failed(name, "http", "timeout")
            log.warning(
                "upstream %s (%s) did not answer within %s s", name, self.url, self.upstream.timeout
            )
            raise _UpstreamFailure(
                504, f"upstream {name!r} did not answer within {self.upstream.timeout:g} s"
            ) from None
        except UpstreamError as exc:
            metrics.upstream_failed(name, "http", "unreachable")
            log.warning("upstream %s (%s) is unreachable: %s", name, self.url, exc)
            raise _UpstreamFailure(502, f"upstream {name!r} is unreachable") from None
        metrics.upstream_answered(name, "http", time.perf_counter() - started)
        return response

    async def _chunks(self, response: UpstreamResponse, streaming: bool) -> AsyncIterator[bytes]:
        """The raw body as it arrives; outside SSE each read is bounded by ``timeout``."""
        iterator = response.aiter_raw()
        while True:
            try:
                if streaming:
                    chunk = await anext(iterator)
                else:
                    async with asyncio.timeout(self.upstream.timeout):
                        chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except (TimeoutError, UpstreamError) as exc:
                raise _UpstreamFailure(502, f"{type(exc).__name__}: {exc}") from None
            yield chunk

    @staticmethod
    async def _relay(chunks: AsyncIterator[bytes], send: Send) -> None:
        async for chunk in chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- URLs and headers -----------------------------------------------------------------------

    def _target(self, scope: Scope) -> str:
        """The upstream URL for this request: the path below the mount path (as the client
        encoded it, dot segments removed), then the query; raises :class:`UnsafePath`."""
        mount = self.upstream.path
        raw_path: bytes | None = scope.get("raw_path")
        raw = raw_path.decode("latin-1") if raw_path else None
        if raw is not None and (raw == mount or raw.startswith(mount + "/")):
            below = raw[len(mount) :]
        else:
            below = quote(scope["path"][len(mount) :])
        below = below_mount(mount, below)
        url = self.url if not below else self.url.rstrip("/") + below
        query: bytes = scope.get("query_string", b"")
        return f"{url}?{query.decode('latin-1')}" if query else url

    def _request_headers(
        self, scope: Scope, upstream_session: str | None, token: str | None = None
    ) -> list[tuple[str, str]]:
        raw: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        dropped = (
            HOP_BY_HOP
            | REQUEST_DROPPED
            | FORWARDING
            | _connection_listed(raw)
            | self._extra_names
            | {REQUEST_ID_HEADER}
        )
        out: list[tuple[str, str]] = []
        for name_b, value_b in raw:
            name = name_b.decode("latin-1").lower()
            if name in dropped or name.startswith((HEADER_PREFIX, FORWARDING_PREFIX)):
                continue
            if name == HEADER:
                if upstream_session is not None:
                    out.append((name, upstream_session))
                continue
            out.append((name, value_b.decode("latin-1")))
        out.append(("accept-encoding", "identity"))
        request_id = request_id_of(scope)
        if request_id is not None and REQUEST_ID_HEADER not in self._extra_names:
            out.append((REQUEST_ID_HEADER, request_id))
        out.extend(self._forwarded(scope))
        out.extend(self._extra)
        if token is not None:
            out.append(("authorization", f"Bearer {token}"))
        principal = principal_of(scope)
        if self._identity_secret is not None and principal is not None:
            signed = sign_identity_headers(
                self._identity_secret,
                subject=principal.subject,
                client_id=principal.client_id or "",
                scopes=principal.scopes,
                audience=self._audience,
                groups=principal.groups,
            )
            out.extend(signed.items())
        return out

    def _forwarded(self, scope: Scope) -> list[tuple[str, str]]:
        """The gateway's own X-Forwarded-For, -Proto and -Host (unless configured in
        ``headers``): the client address uvicorn gave (behind ``trusted_proxies``, the one they
        reported), the scheme and the Host the client asked for."""
        client = scope.get("client")
        values = {
            "x-forwarded-for": client[0] if client else None,
            "x-forwarded-proto": scope.get("scheme"),
            "x-forwarded-host": Headers(scope=scope).get("host"),
        }
        return [(k, v) for k, v in values.items() if v and k not in self._extra_names]

    @staticmethod
    def _is_event_stream(response: UpstreamResponse) -> bool:
        return media_type(response.header("content-type")) == "text/event-stream"

    def _response_headers(
        self, response: UpstreamResponse, streaming: bool, scope: Scope
    ) -> list[tuple[bytes, bytes]]:
        raw = response.raw_headers
        dropped = HOP_BY_HOP | _connection_listed(raw)
        if not streaming:
            dropped = dropped | (RESPONSE_DROPPED - {"content-length"})
        else:
            dropped = dropped | RESPONSE_DROPPED
        out = [(k.lower(), v) for k, v in raw if k.decode("latin-1").lower() not in dropped]
        # The client gets the upstream's session id sealed to it, never as it is.
        owner = owner_of(scope)
        out = [
            (k, self.sessions.seal(v.decode("latin-1"), owner).encode())
            if k == b"mcp-session-id"
            else (k, v)
            for k, v in out
        ]
        if streaming:
            # MCP streamable HTTP: ask reverse proxies in front of the gateway not to buffer.
            out.append((b"x-accel-buffering", b"no"))
        return out


__all__ = ["HOP_BY_HOP", "METHODS", "HttpProxy"]
