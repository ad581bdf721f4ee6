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

from starlette.types import Receive, Scope, Send

from bastion.config import UpstreamSettings
from bastion.edge import jsonrpc
from bastion.edge.asgi import ClientGone, DisconnectWatch, media_type, send_json
from bastion.edge.body import BodyTooLarge, read_body
from bastion.gateway.identity import HEADER_PREFIX, sign_identity_headers
from bastion.gateway.mcp_session import HEADER, owner_of, send_session_not_found
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


class _TokenRefused(Exception):
    """The upstream answered 401 to the person's upstream token."""


def _connection_listed(value: bytes) -> frozenset[bytes]:
    """Header names a Connection header value declares hop-by-hop (RFC 9110 §7.6.1)."""
    return frozenset(p.strip().lower() for p in value.split(b","))


def _encoded(names: Iterable[str]) -> frozenset[bytes]:
    return frozenset(name.encode("latin-1") for name in names)


_SESSION = HEADER.encode()
_REQUEST_ID = REQUEST_ID_HEADER.encode()
_DROPPED_PREFIXES = (HEADER_PREFIX.encode(), FORWARDING_PREFIX.encode())
_RESPONSE_DROPPED_STREAM = _encoded(HOP_BY_HOP | RESPONSE_DROPPED)
_RESPONSE_DROPPED_PLAIN = _encoded(HOP_BY_HOP | (RESPONSE_DROPPED - {"content-length"}))
_TARGETS_KEPT = 1024


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
        self._extra = [
            (k.lower().encode("latin-1"), v.get_secret_value().encode("latin-1"))
            for k, v in upstream.headers.items()
        ]
        extra_names = {k.lower() for k in upstream.headers}
        self._dropped = _encoded(
            HOP_BY_HOP | REQUEST_DROPPED | FORWARDING | extra_names | {REQUEST_ID_HEADER}
        )
        self._own_request_id = REQUEST_ID_HEADER not in extra_names
        self._forward_for = "x-forwarded-for" not in extra_names
        self._forward_proto = "x-forwarded-proto" not in extra_names
        self._forward_host = "x-forwarded-host" not in extra_names
        self._targets: dict[tuple[bytes | None, str], str] = {}
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
        headers, sealed, host = self._relayed_headers(scope)
        upstream_session: str | None = None
        if sealed is not None:
            upstream_session = self.sessions.open(sealed, owner_of(scope))
            if upstream_session is None:
                await send_session_not_found(send)
                return
            headers.append((_SESSION, upstream_session.encode("latin-1")))
        token: str | None = None
        if self._oauth is not None:
            token = await self._oauth.token_for(scope, method, body, send)
            if token is None:
                return
        elif self._exchange_tokens is not None:
            token = await self._exchange_tokens.token_for(scope, send, request_id)
            if token is None:
                return
        self._add_headers(headers, scope, host, token)
        watch = DisconnectWatch(receive)
        try:
            await self._exchange(
                scope,
                method,
                target,
                body.raw if method == "POST" else None,
                headers,
                send,
                watch,
                token,
            )
        except asyncio.CancelledError:
            if not watch.left():
                raise
            log.debug("client left; closed the request to upstream %s", self.upstream.name)
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
        finally:
            watch.close()

    # -- the exchange ---------------------------------------------------------------------------

    async def _exchange(
        self,
        scope: Scope,
        method: str,
        target: str,
        body: bytes | None,
        headers: list[tuple[bytes, bytes]],
        send: Send,
        watch: DisconnectWatch,
        token: str | None = None,
    ) -> None:
        # The whole wait for the answer is bounded in _send; reads of an SSE stream are not (a
        # GET stream may rightly stay quiet for a long time).
        response = await self._send(method, target, headers, body, watch)
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
            answer, streaming = self._response_headers(response, scope)
            start = {"type": "http.response.start", "status": response.status_code}
            start["headers"] = answer
            if response.complete and not streaming:
                # The whole answer is here (the usual JSON one): one message for its body.
                whole = response.body()
                await send(start)
                await send({"type": "http.response.body", "body": whole, "more_body": False})
                return
            await send(start)
            ended = False
            try:
                async for chunk in self._chunks(response, streaming):
                    if chunk:
                        # When the answer's end arrived with this chunk (an SSE answer to a
                        # POST usually ends with its one event), the chunk ends the body too.
                        ended = response.drained
                        await send(
                            {"type": "http.response.body", "body": chunk, "more_body": not ended}
                        )
            except _UpstreamFailure as failure:
                # The status is sent already: end the body; the client sees no response.
                log.warning("upstream %s broke off: %s", self.upstream.name, failure.message)
                metrics.upstream_failed(self.upstream.name, "http", "broken_off")
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _send(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        watch: DisconnectWatch,
    ) -> UpstreamResponse:
        name = self.upstream.name
        started = time.perf_counter()
        # The client's watch also bounds the wait: one timer instead of a timeout of its own.
        watch.limit(self.upstream.timeout)
        try:
            response = await self._http.request(method, url, headers, body)
        except asyncio.CancelledError:
            if not watch.expired():
                raise
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
        finally:
            watch.limit(None)
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

    # -- URLs and headers -----------------------------------------------------------------------

    def _target(self, scope: Scope) -> str:
        """The upstream URL for this request: the path below the mount path (as the client
        encoded it, dot segments removed), then the query; raises :class:`UnsafePath`."""
        raw_path: bytes | None = scope.get("raw_path")
        key = (raw_path, scope["path"])
        url = self._targets.get(key)
        if url is None:
            url = self._target_url(raw_path, scope["path"])
            if len(self._targets) >= _TARGETS_KEPT:
                self._targets.clear()
            self._targets[key] = url
        query: bytes = scope.get("query_string", b"")
        return f"{url}?{query.decode('latin-1')}" if query else url

    def _target_url(self, raw_path: bytes | None, path: str) -> str:
        mount = self.upstream.path
        raw = raw_path.decode("latin-1") if raw_path else None
        if raw is not None and (raw == mount or raw.startswith(mount + "/")):
            below = raw[len(mount) :]
        else:
            below = quote(path[len(mount) :])
        below = below_mount(mount, below)
        return self.url if not below else self.url.rstrip("/") + below

    def _relayed_headers(
        self, scope: Scope
    ) -> tuple[list[tuple[bytes, bytes]], str | None, bytes | None]:
        """The client's headers that go upstream, the session id it named and its Host."""
        dropped = self._dropped
        out: list[tuple[bytes, bytes]] = []
        listed: frozenset[bytes] = frozenset()
        sealed: str | None = None
        host: bytes | None = None
        for name, value in scope["headers"]:
            name = name.lower()
            if name in dropped or name.startswith(_DROPPED_PREFIXES):
                if name == b"host" and host is None:
                    host = value
                elif name == b"connection":
                    listed |= _connection_listed(value)
            elif name == _SESSION:
                if sealed is None:
                    sealed = value.decode("latin-1")
            else:
                out.append((name, value))
        if listed:
            out = [(name, value) for name, value in out if name not in listed]
        return out, sealed, host

    def _add_headers(
        self,
        out: list[tuple[bytes, bytes]],
        scope: Scope,
        host: bytes | None,
        token: str | None,
    ) -> None:
        """The gateway's own headers: the request id, X-Forwarded-For, -Proto and -Host (unless
        configured in ``headers``: the client address uvicorn gave, behind ``trusted_proxies``
        the one they reported, the scheme and the Host the client asked for), the configured
        ones, the upstream token and the signed identity."""
        out.append((b"accept-encoding", b"identity"))
        request_id = request_id_of(scope)
        if request_id is not None and self._own_request_id:
            out.append((_REQUEST_ID, request_id.encode("latin-1")))
        client = scope.get("client")
        if client and client[0] and self._forward_for:
            out.append((b"x-forwarded-for", str(client[0]).encode("latin-1")))
        scheme = scope.get("scheme")
        if scheme and self._forward_proto:
            out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
        if host and self._forward_host:
            out.append((b"x-forwarded-host", host))
        out.extend(self._extra)
        if token is not None:
            out.append((b"authorization", f"Bearer {token}".encode("latin-1")))
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
            out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in signed.items())

    def _response_headers(
        self, response: UpstreamResponse, scope: Scope
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """The upstream's headers the client gets, and whether the answer is an event stream."""
        raw = [(name.lower(), value) for name, value in response.raw_headers]
        streaming = False
        listed: frozenset[bytes] = frozenset()
        for name, value in raw:
            if name == b"content-type" and not streaming:
                streaming = media_type(value.decode("latin-1")) == "text/event-stream"
            elif name == b"connection":
                listed |= _connection_listed(value)
        dropped = _RESPONSE_DROPPED_STREAM if streaming else _RESPONSE_DROPPED_PLAIN
        out: list[tuple[bytes, bytes]] = []
        for name, value in raw:
            if name in dropped or name in listed:
                continue
            if name == _SESSION:
                # The client gets the upstream's session id sealed to it, never as it is.
                value = self.sessions.seal(value.decode("latin-1"), owner_of(scope)).encode()
            out.append((name, value))
        if streaming:
            # MCP streamable HTTP: ask reverse proxies in front of the gateway not to buffer.
            out.append((b"x-accel-buffering", b"no"))
        return out, streaming


__all__ = ["HOP_BY_HOP", "METHODS", "HttpProxy"]
