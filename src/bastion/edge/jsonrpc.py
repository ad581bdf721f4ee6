"""Just enough JSON-RPC 2.0 to authorize, route and audit MCP messages without interpreting them.

MCP basic protocol: every message is a JSON-RPC 2.0 request (``method`` and ``id``), notification
(``method``, no ``id``) or response (``id`` and ``result`` or ``error``).

A body is read one way only, by :func:`read_json`: UTF-8 (RFC 8259 §8.1), nested at most
:data:`bastion.safe_json.MAX_DEPTH` levels, and without an object that repeats a member. RFC 8259
§4 leaves a repeated name's meaning to the parser (the first copy, the last, an error): a policy
that read one copy while the server behind it ran the other would authorize a call it never saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple, TypeGuard

from bastion import safe_json
from bastion.safe_json import JsonTooDeep

RequestId = str | int
# A JSON object as json.loads gives it: each reader narrows the member values it uses.
Message = dict[str, object]
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
# Implementation-defined server errors (JSON-RPC 2.0 §5.1: -32000 to -32099).
UPSTREAM_ERROR = -32000
TOOLS_CALL = "tools/call"


class MalformedMessage(ValueError):
    """The body is not a JSON-RPC 2.0 message (or a batch of them)."""

    def __init__(self, description: str, code: int = INVALID_REQUEST) -> None:
        super().__init__(description)
        self.code = code


class RepeatedMember(ValueError):
    """A JSON object names a member twice (RFC 8259 §4)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"repeated member {name[:100]!r}")


class RpcCall(NamedTuple):
    """One JSON-RPC request or notification of a request body: its method and, for
    ``tools/call``, the tool name."""

    method: str
    tool: str | None


class MessageSummary(NamedTuple):
    """One message of a body: its method (None for a response), the tool name of a
    ``tools/call``, and its id (None for a notification)."""

    method: str | None = None
    tool: str | None = None
    request_id: RequestId | None = None


def _unique_members(pairs: list[tuple[str, object]]) -> Message:
    out: Message = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedMember(key)
        out[key] = value
    return out


# Made once: json.loads with an object_pairs_hook builds a decoder (and its scanner) per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_members)


def read_json(body: bytes) -> object:
    """The JSON document of a body (see the module docstring for the rules); raises
    :class:`MalformedMessage` with code :data:`PARSE_ERROR` saying which rule it broke."""
    try:
        return safe_json.loads(body.decode("utf-8"), decoder=_DECODER)
    except (JsonTooDeep, RepeatedMember) as exc:
        raise MalformedMessage(f"the body is not valid JSON: {exc}", PARSE_ERROR) from None
    except ValueError:  # UnicodeDecodeError included
        raise MalformedMessage("the body is not valid JSON", PARSE_ERROR) from None


def messages_of(document: object) -> list[Message]:
    """The messages of a JSON document: one message, or a batch (MCP 2025-03-26 allowed
    batches); raises :class:`MalformedMessage` when it is not JSON-RPC 2.0."""
    messages = document if isinstance(document, list) else [document]
    if not messages:
        raise MalformedMessage("an empty batch is not a JSON-RPC message")
    checked: list[Message] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise MalformedMessage('each message must be a JSON object with "jsonrpc": "2.0"')
        if "method" in message:
            if not isinstance(message["method"], str):
                raise MalformedMessage("method must be a string")
            if "id" in message and not is_id(message["id"]):
                raise MalformedMessage("id must be a string or an integer")
        elif not ("id" in message and ("result" in message or "error" in message)):
            raise MalformedMessage("a message needs a method, or an id with a result or error")
        checked.append(message)
    return checked


def calls_of(document: object) -> list[RpcCall]:
    """The calls a JSON document asks for, as a scope policy reads them: every object of the
    message or batch with a string ``method``, whether or not the rest is valid JSON-RPC."""
    calls: list[RpcCall] = []
    for message in document if isinstance(document, list) else [document]:
        if not isinstance(message, dict):
            continue
        method = message.get("method")
        if not isinstance(method, str):
            continue
        calls.append(RpcCall(method, _tool(message) if method == TOOLS_CALL else None))
    return calls


def rpc_calls(body: bytes) -> list[RpcCall] | None:
    """The JSON-RPC calls in a request body (a message or a batch), or None when the body is
    not JSON as :func:`read_json` reads it."""
    try:
        return calls_of(read_json(body))
    except MalformedMessage:
        return None


def is_id(value: object) -> TypeGuard[RequestId]:
    """MCP request ids are strings or integers (never null, unlike plain JSON-RPC)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def is_request(message: Message) -> bool:
    """Whether ``message`` is a request (a method and an id)."""
    return "method" in message and "id" in message


def _tool(message: Message) -> str | None:
    params = message.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    return name if isinstance(name, str) else None


def summary(message: Message) -> MessageSummary:
    """What an audit record says about one message."""
    found_method, found_id = message.get("method"), message.get("id")
    method = found_method if isinstance(found_method, str) else None
    tool = _tool(message) if method == TOOLS_CALL else None
    request_id = found_id if is_id(found_id) else None
    return MessageSummary(method=method, tool=tool, request_id=request_id)


def request_ids(messages: Iterable[Message]) -> list[RequestId]:
    """The ids of the requests among ``messages`` (responses and notifications have none)."""
    return [found for m in messages if "method" in m and is_id(found := m.get("id"))]


def error(code: int, message: str, request_id: RequestId | None = None) -> Message:
    """A JSON-RPC error response; ``id`` null when it answers no identifiable request."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def dumps(message: Message) -> bytes:
    """Compact UTF-8 JSON on one line (stdio framing forbids embedded newlines)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = [
    "INTERNAL_ERROR",
    "INVALID_REQUEST",
    "PARSE_ERROR",
    "TOOLS_CALL",
    "UPSTREAM_ERROR",
    "MalformedMessage",
    "Message",
    "MessageSummary",
    "RepeatedMember",
    "RequestId",
    "RpcCall",
    "calls_of",
    "dumps",
    "error",
    "is_id",
    "is_request",
    "messages_of",
    "read_json",
    "request_ids",
    "rpc_calls",
    "summary",
]
