"""The request body is read once per request: the first reader stores it in the scope with its
JSON-RPC reading, and every later reader gets that same record without touching ``receive``."""

from __future__ import annotations

import json

import pytest
from starlette.types import Message, Scope

from bastion.edge import jsonrpc
from bastion.edge.asgi import ClientGone
from bastion.edge.body import BodyTooLarge, RequestBody, body_of, read_body, replay

CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "search"}}


class Receiver:
    """An ASGI ``receive`` that hands out ``messages`` in order and counts the calls."""

    def __init__(self, *messages: Message) -> None:
        self.messages = list(messages)
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        return self.messages.pop(0)


def request(headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {"type": "http", "method": "POST", "path": "/mcp", "headers": headers or []}


async def test_the_second_reader_gets_the_first_readers_body_without_reading_again() -> None:
    raw = json.dumps(CALL).encode()
    receive = Receiver(
        {"type": "http.request", "body": raw[:10], "more_body": True},
        {"type": "http.request", "body": raw[10:], "more_body": False},
    )
    scope = request()
    first = await read_body(scope, receive, 1024)
    again = await read_body(scope, receive, 1024)
    assert again is first is body_of(scope)
    assert receive.calls == 2
    assert first.raw == raw
    assert first.calls == (jsonrpc.RpcCall("tools/call", "search"),)
    assert first.messages == (CALL,)
    assert first.problem is None
    with pytest.raises(BodyTooLarge, match="larger than 16 bytes"):
        await read_body(scope, receive, 16)  # a reader with a smaller limit refuses it too


async def test_the_limit_holds_for_a_declared_and_for_a_streamed_length() -> None:
    declared = request([(b"content-length", b"2048")])
    receive = Receiver()
    with pytest.raises(BodyTooLarge):
        await read_body(declared, receive, 1024)
    assert receive.calls == 0  # refused before reading
    streamed = Receiver(*[{"type": "http.request", "body": b" " * 600, "more_body": True}] * 2)
    with pytest.raises(BodyTooLarge, match="larger than 1024 bytes"):
        await read_body(request(), streamed, 1024)
    assert body_of(declared) is None


async def test_a_client_that_leaves_mid_body_is_gone() -> None:
    receive = Receiver(
        {"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(ClientGone):
        await read_body(request(), receive, 1024)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"jsonrpc": "2.0", "method": "a", "method": "b"}', "repeated member 'method'"),
        (json.dumps(CALL).encode("utf-16"), "the body is not valid JSON"),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
    ],
)
def test_json_that_parsers_could_read_differently_is_not_json(raw: bytes, problem: str) -> None:
    """RFC 8259 §4 (repeated names), §8.1 (UTF-8): neither the policy nor the upstream gets a
    reading of its own; there are no calls and no messages."""
    body = RequestBody.of(raw)
    assert (body.calls, body.messages) == (None, ())
    assert body.problem is not None
    assert body.problem.code == jsonrpc.PARSE_ERROR
    assert problem in str(body.problem)


def test_json_that_is_not_json_rpc_still_has_the_calls_a_policy_checks() -> None:
    body = RequestBody.of(b'{"method": "tools/call", "params": {"name": "x"}}')
    assert body.calls == (jsonrpc.RpcCall("tools/call", "x"),)
    assert body.messages == ()
    assert body.problem is not None
    assert body.problem.code == jsonrpc.INVALID_REQUEST


async def test_replay_gives_the_body_once_then_the_real_receive() -> None:
    body = RequestBody.of(b"{}")
    receive = Receiver({"type": "http.disconnect"})
    replaying = replay(body, receive)
    assert await replaying() == {"type": "http.request", "body": b"{}", "more_body": False}
    assert await replaying() == {"type": "http.disconnect"}
