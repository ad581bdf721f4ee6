"""The request body, read once per request and kept in the ASGI scope.

Whoever reads the body first (the resource middleware, or the HTTP proxy or stdio bridge when
nothing stands in front of them) reads it with :func:`read_body`: bounded, parsed as JSON-RPC
once (:mod:`bastion.edge.jsonrpc`), and kept in the scope, where everything after it (the app,
the proxy, the bridge, and the audit once the answer is sent) finds the same
:class:`RequestBody` with :func:`body_of` or :func:`read_body`. The bytes are replayed to apps
that read ``receive`` themselves with :func:`replay`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope

from bastion.edge import jsonrpc
from bastion.edge.asgi import ClientGone

_SCOPE_KEY = "bastion.body"


class BodyTooLarge(Exception):
    """The body (as declared by ``Content-Length``, or as read) is over the limit; each caller
    answers 413 in its own error format with this message."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class RequestBody:
    """A request body and what JSON-RPC makes of it, decided once.

    ``calls`` are the calls a scope policy checks (None when the body is not JSON);
    ``messages`` the JSON-RPC 2.0 messages (empty when it is not JSON-RPC, and then
    ``problem`` says why).
    """

    raw: bytes
    calls: tuple[jsonrpc.RpcCall, ...] | None
    messages: tuple[jsonrpc.Message, ...]
    problem: jsonrpc.MalformedMessage | None

    @classmethod
    def of(cls, raw: bytes) -> RequestBody:
        """Read ``raw`` as JSON-RPC."""
        try:
            document = jsonrpc.read_json(raw)
        except jsonrpc.MalformedMessage as exc:
            return cls(raw, None, (), exc)
        calls = tuple(jsonrpc.calls_of(document))
        try:
            messages = tuple(jsonrpc.messages_of(document))
        except jsonrpc.MalformedMessage as exc:
            return cls(raw, calls, (), exc)
        return cls(raw, calls, messages, None)


def body_of(scope: Scope) -> RequestBody | None:
    """The body read for this request so far, if any."""
    found = scope.get(_SCOPE_KEY)
    return found if isinstance(found, RequestBody) else None


async def read_body(scope: Scope, receive: Receive, limit: int) -> RequestBody:
    """The request body: the one already read for this request, else read from ``receive`` now
    and kept in the scope. Raises :class:`BodyTooLarge` beyond ``limit`` bytes (a larger
    ``Content-Length`` is refused before reading) and :class:`ClientGone` when the client
    disconnects first."""
    found = body_of(scope)
    if found is not None:
        if len(found.raw) > limit:
            raise BodyTooLarge(limit)
        return found
    declared = Headers(scope=scope).get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    raw = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        raw += message.get("body", b"")
        if len(raw) > limit:
            raise BodyTooLarge(limit)
        if not message.get("more_body", False):
            break
    body = RequestBody.of(bytes(raw))
    scope[_SCOPE_KEY] = body
    return body


def replay(body: RequestBody, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the real one (so
    ``http.disconnect`` still reaches the app)."""
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body.raw, "more_body": False}
        return await receive()

    return replaying


__all__ = ["BodyTooLarge", "RequestBody", "body_of", "read_body", "replay"]
