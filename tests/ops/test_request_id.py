"""Request ids (bastion.ops.request_id): who must not get a raw X-Request-Id into the logs, the
scope or the answer; then the well-formed id kept, echoed and logged with the access record."""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from bastion.logs import REQUEST_ID
from bastion.ops.request_id import (
    ACCESS_LOGGER,
    SCOPE_KEY,
    RequestIdMiddleware,
    new_request_id,
    request_id_from,
    request_id_of,
)
from bastion.resource.principal import Principal, attach_principal

MALFORMED = [
    pytest.param([b"abc\r\nX-Injected: 1"], id="crlf"),
    pytest.param([b"abc\ndef"], id="lf"),
    pytest.param([b"abc\n"], id="trailing-lf"),
    pytest.param([b"abc\x00def"], id="nul"),
    pytest.param([b"abc\x1b[31mred"], id="escape"),
    pytest.param([b"two words"], id="space"),
    pytest.param([b'say "hi"'], id="quotes"),
    pytest.param([b"it's"], id="apostrophe"),
    pytest.param([b"<script>"], id="angle-brackets"),
    pytest.param([b"caf\xc3\xa9"], id="non-ascii"),
    pytest.param([b""], id="empty"),
    pytest.param([b"a" * 129], id="129-characters"),
    pytest.param([b"first", b"second"], id="two-headers"),
    pytest.param([b"same", b"same"], id="two-equal-headers"),
]


@pytest.mark.parametrize("values", MALFORMED)
def test_a_malformed_or_repeated_x_request_id_is_not_taken(values: list[bytes]) -> None:
    headers = [(b"host", b"x"), *((b"X-Request-Id", value) for value in values)]
    assert request_id_from(headers) is None


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "a" * 128,
        "3f2a9c1e-6b7d-4c1e-9a55-0d1f2e3c4b5a",
        "Root=1-67a2b3c4-abcdef012345678901234567",
        "req_01HZX9:shard-2/retry+1~b64==",
    ],
)
def test_a_well_formed_x_request_id_is_taken(value: str) -> None:
    assert request_id_from([(b"x-request-id", value.encode())]) == value


class Seen:
    """What the app behind the middleware saw."""

    scope_id: str | None = None
    context_id: str | None = None


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        yield caplog


def _access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


class _Protected:
    """An endpoint behind a (pretend) token check: the principal is in the scope."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = Principal(
            subject="alice",
            client_id="vscode",
            scopes=frozenset(),
            claims={},
            token_id=None,
            expires_at=0,
        )
        attach_principal(scope, principal)
        await PlainTextResponse("ok")(scope, receive, send)


def _app(seen: Seen) -> Starlette:
    async def item(request: Request) -> Response:
        seen.scope_id = request_id_of(request.scope)
        seen.context_id = REQUEST_ID.get()
        logging.getLogger("bastion.test_request_id").info("inside")
        return JSONResponse({"name": request.path_params["name"]})

    async def fails(request: Request) -> Response:
        raise RuntimeError("boom")

    return Starlette(
        routes=[
            Mount("/api", routes=[Route("/items/{name}", item)]),
            Route("/protected", _Protected()),
            Route("/fails", fails),
        ],
        middleware=[Middleware(RequestIdMiddleware)],
    )


def _client(seen: Seen, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=_app(seen), raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _call(headers: list[tuple[bytes, bytes]], seen: Seen) -> list[Message]:
    """One raw ASGI request (any header bytes, as a server could pass them)."""
    sent: list[Message] = []
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/items/x",
        "raw_path": b"/api/items/x",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await _app(seen)(scope, receive, send)
    return sent


@pytest.mark.parametrize("values", MALFORMED)
async def test_a_malformed_id_is_replaced_never_echoed_or_logged(
    values: list[bytes], seen: Seen, access: pytest.LogCaptureFixture
) -> None:
    sent = await _call([(b"x-request-id", value) for value in values], seen)
    answered = [v for k, v in sent[0]["headers"] if k == b"x-request-id"]
    assert len(answered) == 1
    fresh = answered[0].decode()
    assert fresh not in {v.decode("latin-1") for v in values}
    assert len(fresh) == 22 and request_id_from([(b"x-request-id", answered[0])]) == fresh
    assert seen.scope_id == seen.context_id == fresh
    assert _access_records(access)
    for record in access.records:
        assert record.request_id == fresh  # type: ignore[attr-defined]
        text = record.getMessage() + repr(record.__dict__)
        for value in values:
            if value:
                assert value.decode("latin-1") not in text


async def test_fresh_ids_differ_per_request(seen: Seen) -> None:
    async with _client(seen) as client:
        first = (await client.get("/api/items/a")).headers["x-request-id"]
        second = (await client.get("/api/items/a")).headers["x-request-id"]
    assert first != second


async def test_a_well_formed_id_is_kept_echoed_and_logged_with_the_route_not_the_query(
    seen: Seen, access: pytest.LogCaptureFixture
) -> None:
    async with _client(seen) as client:
        answer = await client.get(
            "/api/items/mine?code=SECRET-CODE&state=SECRET-STATE",
            headers={"X-Request-Id": "trace-42"},
        )
    assert answer.headers.get_list("x-request-id") == ["trace-42"]
    assert seen.scope_id == seen.context_id == "trace-42"
    assert REQUEST_ID.get() is None
    [record] = _access_records(access)
    fields = ("request_id", "method", "route", "status", "client_id", "subject")
    assert {name: getattr(record, name) for name in fields} == {
        "request_id": "trace-42",
        "method": "GET",
        "route": "/api/items/{name}",
        "status": 200,
        "client_id": None,
        "subject": None,
    }
    assert isinstance(record.latency_ms, float)  # type: ignore[attr-defined]
    assert record.getMessage().startswith("GET /api/items/{name} 200 ")
    assert "SECRET" not in record.getMessage() + repr(record.__dict__)


async def test_the_access_record_names_the_verified_client_and_subject(
    seen: Seen, access: pytest.LogCaptureFixture
) -> None:
    async with _client(seen) as client:
        await client.get("/protected")
    [record] = _access_records(access)
    assert (record.client_id, record.subject) == ("vscode", "alice")  # type: ignore[attr-defined]


async def test_a_request_that_fails_is_logged_and_answered_with_its_id(
    seen: Seen, access: pytest.LogCaptureFixture
) -> None:
    async with _client(seen, raise_app_exceptions=False) as client:
        answer = await client.get("/fails", headers={"X-Request-Id": "trace-500"})
    assert answer.status_code == 500
    [record] = _access_records(access)
    assert (record.request_id, record.route) == ("trace-500", "/fails")  # type: ignore[attr-defined]


async def test_an_inner_instance_passes_the_request_through() -> None:
    """Two apps joined on one listener: the outer instance decides the id, the inner one
    neither replaces it nor adds a second header or access record."""
    inner_seen: list[str | None] = []

    async def inner_app(scope: Scope, receive: Receive, send: Send) -> None:
        inner_seen.append(request_id_of(scope))
        await PlainTextResponse("ok")(scope, receive, send)

    outer = RequestIdMiddleware(RequestIdMiddleware(inner_app))
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/", headers={"X-Request-Id": "one"})
    assert answer.headers.get_list("x-request-id") == ["one"]
    assert inner_seen == ["one"]


async def test_websocket_and_lifespan_scopes_pass_untouched() -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)

    async def nothing() -> Message:
        return {}

    async def ignore(message: Message) -> None:
        return None

    middleware = RequestIdMiddleware(app)
    await middleware({"type": "lifespan"}, nothing, ignore)
    await middleware({"type": "websocket", "headers": []}, nothing, ignore)
    assert all(SCOPE_KEY not in scope for scope in scopes)


def test_new_ids_are_128_random_bits_never_repeated_across_reads() -> None:
    """22 URL-safe characters (16 bytes), all distinct over several reads of the CSPRNG."""
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", value)
        assert len(base64.urlsafe_b64decode(value + "==")) == 16


def test_a_forked_worker_never_hands_out_the_ids_its_parent_will() -> None:
    """``bastion serve --workers`` forks: bytes read before the fork are not used in the child."""
    new_request_id()  # random bytes are now kept in this process
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    try:
        from_child = os.read(read, 100).decode()
    finally:
        os.close(read)
        os.waitpid(child, 0)
    assert len(from_child) == 22
    assert from_child != new_request_id()
