"""Just enough JSON-RPC 2.0 to route and audit MCP messages without interpreting them.

MCP basic protocol: every message is a JSON-RPC 2.0 request (``method`` and ``id``), notification
(``method``, no ``id``) or response (``id`` and ``result`` or ``error``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bastion import safe_json
from bastion.safe_json import JsonTooDeep

RequestId = str | int
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
# Implementation-defined server errors (JSON-RPC 2.0 §5.1: -32000 to -32099).
UPSTREAM_ERROR = -32000


class MalformedMessage(ValueError):
    """The body is not a JSON-RPC 2.0 message (or a batch of them)."""

    def __init__(self, description: str, code: int = INVALID_REQUEST) -> None:
        super().__init__(description)
        self.code = code


@dataclass(frozen=True)
class Summary:
    """What an audit record or a router needs to know about a POST body."""

    method: str | None = None
    tool: str | None = None
    request_ids: tuple[RequestId, ...] = ()


@dataclass(frozen=True)
class MessageSummary:
    """One message of a body: its method (None for a response), the tool name of a
    ``tools/call``, and its id (None for a notification)."""

    method: str | None = None
    tool: str | None = None
    request_id: RequestId | None = None


def parse(body: bytes) -> list[dict[str, Any]]:
    """The messages of a POST body: one message, or a batch (MCP 2025-03-26 allowed batches)."""
    try:
        data = safe_json.loads(body)
    except JsonTooDeep as exc:
        raise MalformedMessage(f"the body is not valid JSON: {exc}", PARSE_ERROR) from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedMessage("the body is not valid JSON", PARSE_ERROR) from None
    messages = data if isinstance(data, list) else [data]
    if not messages:
        raise MalformedMessage("an empty batch is not a JSON-RPC message")
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
    return messages


def is_id(value: object) -> bool:
    """MCP request ids are strings or integers (never null, unlike plain JSON-RPC)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def is_request(message: dict[str, Any]) -> bool:
    return "method" in message and "id" in message


def is_response(message: dict[str, Any]) -> bool:
    return "method" not in message


def _describe(message: dict[str, Any]) -> MessageSummary:
    method = message.get("method") if isinstance(message.get("method"), str) else None
    tool = None
    params = message.get("params")
    if method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
        tool = params["name"]
    request_id = message.get("id") if is_id(message.get("id")) else None
    return MessageSummary(method=method, tool=tool, request_id=request_id)


def summarize_each(body: bytes) -> list[MessageSummary]:
    """One summary per message of a body (a batch has several); none when it is not JSON-RPC."""
    try:
        return [_describe(message) for message in parse(body)]
    except MalformedMessage:
        return []


def summarize(body: bytes) -> Summary:
    """Method and tool name of the first message and the request ids of all; an empty summary
    when the body is not JSON-RPC."""
    messages = summarize_each(body)
    if not messages:
        return Summary()
    ids = tuple(m.request_id for m in messages if m.method is not None and m.request_id is not None)
    return Summary(method=messages[0].method, tool=messages[0].tool, request_ids=ids)


def error(code: int, message: str, request_id: RequestId | None = None) -> dict[str, Any]:
    """A JSON-RPC error response; ``id`` null when it answers no identifiable request."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def dumps(message: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON on one line (stdio framing forbids embedded newlines)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = [
    "INTERNAL_ERROR",
    "INVALID_REQUEST",
    "PARSE_ERROR",
    "UPSTREAM_ERROR",
    "MalformedMessage",
    "MessageSummary",
    "RequestId",
    "Summary",
    "dumps",
    "error",
    "is_id",
    "is_request",
    "is_response",
    "parse",
    "summarize",
    "summarize_each",
]
