"""Request ids and the access log: :class:`RequestIdMiddleware`, the outermost layer of every
listener's app (the authorization server, the registry, the gateway).

A request keeps the ``X-Request-Id`` it came with when that is one well-formed header: 1 to 128
characters from ``A-Z a-z 0-9 - _ . : + / = ~``. Anything else (a second header, control
characters, spaces, quotes, anything longer) is never used, logged or echoed: the request gets
a new id, 128 random bits in URL-safe base64. The id is put in the scope
(:data:`SCOPE_KEY`, read by the audit records), in :data:`bastion.logs.REQUEST_ID` for every
log record made while the request is served, on the response as ``X-Request-Id``, and on the
gateway's request upstream.

When the answer ends, one record goes to the ``bastion.access`` logger (INFO): method, route
(the path template Starlette matched, like ``/interaction/{id}``, else the path; never the
query string, which can hold codes and state), status, latency_ms, request_id, and the
client_id and subject of the verified token on a protected resource.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.logs import REQUEST_ID, get_logger
from bastion.resource.principal import principal_of

SCOPE_KEY = "bastion.request_id"
# The root path the request came in with, to tell the mount paths Starlette adds below it.
ROOT_KEY = "bastion.request_id.root_path"
HEADER = "x-request-id"
_HEADER = HEADER.encode()
MAX_LENGTH = 128
_WELL_FORMED = re.compile(rb"[A-Za-z0-9\-_.:+/=~]{1,%d}" % MAX_LENGTH)
ACCESS_LOGGER = "bastion.access"

_access_log = get_logger(ACCESS_LOGGER)


class _RandomIds:
    """Request ids from the operating system's CSPRNG, read for many ids at a time (one
    ``getrandom`` call per :data:`_IDS_PER_READ` ids instead of one per request). Bytes read
    before a fork are dropped in the child, so worker processes never share ids."""

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def next(self) -> str:
        if self._at >= len(self._buffer):
            self._buffer = secrets.token_bytes(_ID_BYTES * _IDS_PER_READ)
            self._at = 0
        chunk = self._buffer[self._at : self._at + _ID_BYTES]
        self._at += _ID_BYTES
        return base64.urlsafe_b64encode(chunk).rstrip(b"=").decode("ascii")

    def forget(self) -> None:
        self._buffer = b""
        self._at = 0


_ID_BYTES = 16
_IDS_PER_READ = 256
_ids = _RandomIds()
os.register_at_fork(after_in_child=_ids.forget)


def new_request_id() -> str:
    """A fresh id: 128 random bits, URL-safe base64 (22 characters)."""
    return _ids.next()


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's ``X-Request-Id`` if there is exactly one and it is well formed, else None."""
    found = [value for name, value in headers if name.lower() == _HEADER]
    if len(found) != 1 or not _WELL_FORMED.fullmatch(found[0]):
        return None
    return found[0].decode("ascii")


def access_logged() -> bool:
    """Whether the access log takes its records (INFO on ``bastion.access``)."""
    return _access_log.isEnabledFor(logging.INFO)


def request_id_of(scope: Mapping[str, object]) -> str | None:
    """The id :class:`RequestIdMiddleware` gave the request of ``scope`` (None outside it)."""
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, str) else None


def route_of(scope: Scope) -> str:
    """The path template of the route that answered (with the mount paths above it), else the
    path; never the query string."""
    route = scope.get("route")
    if isinstance(route, Route):
        mounted: str = scope.get("root_path", "")
        outer: str = scope.get(ROOT_KEY, "")
        return mounted[len(outer) :] + route.path
    path: str = scope.get("path", "")
    return path


class RequestIdMiddleware:
    """Give every HTTP request an id and log it once answered (see the module docstring).
    Under another instance (two apps joined on one listener) it passes requests through."""

    def __init__(self, app: ASGIApp, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or SCOPE_KEY in scope:
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", [])) or new_request_id()
        scope[SCOPE_KEY] = request_id
        scope[ROOT_KEY] = scope.get("root_path", "")
        started = self.clock()
        status: int | None = None

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != _HEADER
                ]
                headers.append((_HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        token = REQUEST_ID.set(request_id)
        failed = False
        try:
            await self.app(scope, receive, with_id)
        except BaseException:
            failed = True
            raise
        finally:
            if _access_log.isEnabledFor(logging.INFO):
                log_access(scope, request_id, status, failed, self.clock() - started)
            REQUEST_ID.reset(token)


def log_access(
    scope: Scope, request_id: str, status: int | None, failed: bool, seconds: float
) -> None:
    """The access log's record of one answered (or failed) request, when ``bastion.access``
    takes INFO (check with ``access_logged()`` first, to spare building it)."""
    latency = round(seconds * 1000, 2)
    principal = principal_of(scope)
    route = route_of(scope)
    _access_log.info(
        "%s %s %s %s ms",
        scope.get("method"),
        route,
        status if status is not None else ("failed" if failed else "no answer"),
        latency,
        extra={
            "request_id": request_id,
            "method": scope.get("method"),
            "route": route,
            "status": status,
            "latency_ms": latency,
            "client_id": principal.client_id if principal else None,
            "subject": principal.subject if principal else None,
        },
    )


__all__ = [
    "ACCESS_LOGGER",
    "HEADER",
    "MAX_LENGTH",
    "ROOT_KEY",
    "SCOPE_KEY",
    "RequestIdMiddleware",
    "access_logged",
    "log_access",
    "new_request_id",
    "request_id_from",
    "request_id_of",
    "route_of",
]
