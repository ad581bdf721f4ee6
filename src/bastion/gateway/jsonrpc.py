"""Just enough JSON-RPC 2.0 to route and audit MCP messages without interpreting them.

MCP basic protocol: every message is a JSON-RPC 2.0 request (``method`` and ``id``), notification
(``method``, no ``id``) or response (``id`` and ``result`` or ``error``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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


def parse(body: bytes) -> list[dict[str, Any]]:
    """The messages of a POST body: one message, or a batch (MCP 2025-03-26 allowed batches)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting (L7)
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


def summarize(body: bytes) -> Summary:
    """Method, tool name and request ids of a body; an empty summary when it is not JSON-RPC."""
    try:
        messages = parse(body)
    except MalformedMessage:
        return Summary()
    first = messages[0]
    method = first.get("method") if isinstance(first.get("method"), str) else None
    tool = None
    params = first.get("params")
    if method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
        tool = params["name"]
    ids = tuple(m["id"] for m in messages if is_request(m))
    return Summary(method=method, tool=tool, request_ids=ids)


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
    "RequestId",
    "Summary",
    "dumps",
    "error",
    "is_id",
    "is_request",
    "is_response",
    "parse",
    "summarize",
]
