"""Sessions when the gateway runs as several replicas with nothing shared in memory.

HTTP upstreams: the client gets the upstream's session id sealed to the upstream and the caller
(MCP security best practices, "Session Hijacking"; checklist R10), so any replica can check it.
stdio upstreams: session ids start with the replica's id, for the load balancer to route on.
Each "replica" here is an HttpProxy or StdioBridge of its own under uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from bastion.config import Settings, UpstreamSettings
from bastion.gateway.http_proxy import HttpProxy
from bastion.gateway.replicas import SessionSeal, replica_id, session_key
from bastion.gateway.stdio_bridge import StdioBridge
from bastion.gateway.upstream_http import UpstreamPool
from bastion.resource.principal import attach_principal
from tests.gateway.conftest import ALICE, SESSION_KEY, STDIO_COMMAND, sealed, with_principal
from tests.gateway.test_stdio_bridge import BOB, open_session
from tests.gateway.upstream import RecordingUpstream
from tests.support.live import serve

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
ACCEPT = "application/json, text/event-stream"
NOT_FOUND = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": -32001, "message": "Session not found"},
}
# Alice's client and Bob's: who is asking is chosen per request with X-Test-As.
CALLERS = {b"alice": ALICE, b"bob": BOB}


def _as_caller(app: Any) -> Any:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            who = dict(scope["headers"]).get(b"x-test-as", b"alice")
            attach_principal(scope, CALLERS[who])
        await app(scope, receive, send)

    return wrapped


@asynccontextmanager
async def replicas(url: str, *names: str, key: bytes = SESSION_KEY) -> AsyncIterator[list[str]]:
    """One HttpProxy per upstream name in ``names`` (all to ``url``, sealing with ``key``),
    each under uvicorn at /mcp; yields their base URLs."""
    pool = UpstreamPool()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(pool.aclose)
        bases = []
        for name in names:
            proxy = HttpProxy(
                UpstreamSettings(name=name, path="/mcp", url=url, resource="http://gw/mcp"),
                http=pool,
                session_key=key,
            )
            bases.append(await stack.enter_async_context(serve(_as_caller(proxy))))
        yield bases


def _upstream_ids(recorder: RecordingUpstream, since: int) -> list[str | None]:
    return [dict(r["headers"]).get("mcp-session-id") for r in recorder.requests[since:]]


async def _start(http: httpx.AsyncClient, base: str) -> str:
    started = await http.post(f"{base}/mcp", json=INIT, headers={"Accept": ACCEPT})
    assert started.status_code == 200, started.text
    return started.headers["mcp-session-id"]


# -- who must not get in ----------------------------------------------------------------------


async def test_r10_another_callers_session_id_is_not_found_on_any_replica(
    upstream: tuple[RecordingUpstream, str], http: httpx.AsyncClient
) -> None:
    """A session Alice started on replica 1, presented by Bob (a valid token of his own) to
    replica 1 or replica 2: 404 -32001 exactly like an unknown session; the upstream sees
    nothing of it."""
    recorder, url = upstream
    async with replicas(url, "notes", "notes") as (one, two):
        session_id = await _start(http, one)
        seen = len(recorder.requests)
        as_bob = {"Accept": ACCEPT, "Mcp-Session-Id": session_id, "X-Test-As": "bob"}
        answers = [await http.post(f"{base}/mcp", json=INIT, headers=as_bob) for base in (one, two)]
        answers.append(await http.delete(f"{two}/mcp", headers=as_bob))
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert all(a.json() == NOT_FOUND for a in answers)
    assert len(recorder.requests) == seen


async def test_r10_a_session_its_owner_is_using_is_still_not_found_for_another_caller(
    upstream: tuple[RecordingUpstream, str], http: httpx.AsyncClient
) -> None:
    """Alice's session id, opened for her on this replica a moment ago, presented by Bob to the
    same replica: 404 -32001 and nothing upstream (what a replica keeps of opened ids is kept
    per caller)."""
    recorder, url = upstream
    async with replicas(url, "notes") as (one,):
        session_id = await _start(http, one)
        as_alice = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
        for _ in range(2):
            continued = await http.post(f"{one}/mcp", json=INIT, headers=as_alice)
            assert continued.status_code == 200, continued.text
        seen = len(recorder.requests)
        as_bob = {**as_alice, "X-Test-As": "bob"}
        answers = [await http.post(f"{one}/mcp", json=INIT, headers=as_bob) for _ in range(2)]
    assert [a.status_code for a in answers] == [404, 404]
    assert all(a.json() == NOT_FOUND for a in answers)
    assert len(recorder.requests) == seen


def _damaged(good: str) -> dict[str, str]:
    version, encoded, mac = good.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    other_session = SessionSeal(SESSION_KEY, "notes").seal("another-session", ("alice", "client-1"))
    return {
        "the upstream's own id": "upstream-session-1",
        "sealed with another key": SessionSeal(b"x" * 32, "notes").seal(
            "upstream-session-1", ("alice", "client-1")
        ),
        "one character of the MAC changed": f"{version}.{encoded}.{flipped}",
        "the MAC cut short": f"{version}.{encoded}.{mac[:20]}",
        "no MAC": f"{version}.{encoded}.",
        "the id of another session with this MAC": f"{version}.{other_session.split('.')[1]}.{mac}",
        "another version": f"b2.{encoded}.{mac}",
        "not base64url": f"{version}.{encoded}!.{mac}",
        "the version only": "b1",
        "a dot": ".",
    }


async def test_r10_forged_altered_or_cut_session_ids_are_not_found(
    upstream: tuple[RecordingUpstream, str], http: httpx.AsyncClient
) -> None:
    """Anything but an id this gateway sealed for this caller is 404 -32001 and stays at the
    gateway: the upstream's bare id, one sealed with another key, a changed or cut MAC, a MAC
    moved onto another session id, another version, bad encoding."""
    recorder, url = upstream
    async with replicas(url, "notes") as (one,):
        good = await _start(http, one)
        seen = len(recorder.requests)
        answers = {}
        for what, session_id in _damaged(good).items():
            headers = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
            answer = await http.post(f"{one}/mcp", json=INIT, headers=headers)
            answers[what] = (answer.status_code, answer.json())
    assert answers == {what: (404, NOT_FOUND) for what in answers}
    assert len(recorder.requests) == seen


async def test_r10_a_session_id_sealed_for_one_upstream_is_not_found_at_another(
    upstream: tuple[RecordingUpstream, str], http: httpx.AsyncClient
) -> None:
    """The upstream's name is sealed in: an id that upstream "notes" issued, used by the same
    caller at upstream "files" (same key, even the same server behind), is 404."""
    recorder, url = upstream
    async with replicas(url, "notes", "files") as (notes, files):
        session_id = await _start(http, notes)
        seen = len(recorder.requests)
        headers = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
        elsewhere = await http.post(f"{files}/mcp", json=INIT, headers=headers)
    assert elsewhere.status_code == 404
    assert elsewhere.json() == NOT_FOUND
    assert len(recorder.requests) == seen


async def test_replica_id_without_a_shared_key_is_a_configuration_error() -> None:
    """Replicas (gateway.replica_id set) with an HTTP upstream need one key they all have:
    without gateway.session_secret or secret_key the configuration is refused, saying so."""
    upstreams = [{"name": "notes", "path": "/mcp/notes", "url": "http://127.0.0.1:1/mcp"}]
    with pytest.raises(ValidationError) as refused:
        Settings(gateway={"enabled": True, "replica_id": "gw1", "upstreams": upstreams})
    assert "set gateway.session_secret (or secret_key)" in str(refused.value)
    with pytest.raises(ValidationError, match="session_secret must have at least 32"):
        Settings(gateway={"session_secret": "short"})
    for bad in ("gw.1", "-gw", "", "gw 1", "x" * 64):
        with pytest.raises(ValidationError):
            Settings(gateway={"replica_id": bad, "session_secret": "s" * 32})


# -- who may ------------------------------------------------------------------------------------


async def test_any_replica_continues_a_session_and_the_upstream_sees_only_its_own_id(
    upstream: tuple[RecordingUpstream, str], http: httpx.AsyncClient
) -> None:
    """A session started on replica 1 goes on at replica 2 (another process would do the same:
    nothing is kept in memory), with the same sealed id; every request reaches the upstream
    with the id the upstream issued, never the sealed one."""
    recorder, url = upstream
    async with replicas(url, "notes", "notes") as (one, two):
        session_id = await _start(http, one)
        seen = len(recorder.requests)
        headers = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
        again = await http.post(f"{two}/mcp", json=INIT, headers=headers)
        ended = await http.delete(f"{one}/mcp", headers=headers)
    assert session_id == sealed("upstream-session-1")
    assert again.status_code == 200
    assert again.headers["mcp-session-id"] == session_id
    assert ended.status_code == 204
    assert _upstream_ids(recorder, seen) == ["upstream-session-1", "upstream-session-1"]


def test_the_session_key_is_shared_configuration(tmp_path: Any) -> None:
    """Replicas agree on the key when they share gateway.session_secret, else secret_key, else
    the data directory's secret.key; a different secret is a different key. With none of them a
    process makes a key of its own."""
    a = Settings(data_dir=tmp_path, gateway={"session_secret": "s" * 32})
    b = Settings(data_dir=tmp_path / "elsewhere", gateway={"session_secret": "s" * 32})
    c = Settings(data_dir=tmp_path, secret_key="k" * 32)
    assert session_key(a) == session_key(b) != session_key(c)
    (tmp_path / "secret.key").write_text("k" * 32 + "\n")
    assert session_key(Settings(data_dir=tmp_path)) == session_key(c)
    assert session_key(a) != b"s" * 32  # derived, not the secret itself
    alone = Settings(data_dir=tmp_path / "no-secret-here")
    assert session_key(alone) != session_key(alone)  # a key of each process: sessions stay put


async def test_stdio_session_ids_start_with_the_replica_id_and_another_replica_says_not_found(
    http: httpx.AsyncClient,
) -> None:
    """A stdio session is a process of one replica: its id starts with ``<replica_id>.`` for the
    load balancer to route on; at another replica it is an unknown session (404 -32001: the
    client initializes again), never an error of another kind."""
    upstream = UpstreamSettings(name="stdio", path="/mcp", command=STDIO_COMMAND)
    one = StdioBridge(upstream, grace=1.0, replica_id="gw1")
    two = StdioBridge(upstream, grace=1.0, replica_id="gw2")
    async with AsyncExitStack() as stack:
        for bridge in (one, two):
            await bridge.start()
            stack.push_async_callback(bridge.aclose)
        url_one = f"{await stack.enter_async_context(serve(with_principal(one, ALICE)))}/mcp"
        url_two = f"{await stack.enter_async_context(serve(with_principal(two, ALICE)))}/mcp"
        session_id = await open_session(http, url_one)
        headers = {"Accept": ACCEPT, "Mcp-Session-Id": session_id}
        elsewhere = await http.post(url_two, json=INIT | {"method": "ping"}, headers=headers)
        fresh = await open_session(http, url_two)
    assert session_id.startswith("gw1.")
    assert fresh.startswith("gw2.")
    assert elsewhere.status_code == 404
    assert elsewhere.json() == NOT_FOUND


def test_the_default_replica_id_is_the_host_name_and_port() -> None:
    """Without gateway.replica_id: the host name (in the allowed characters) and the port."""
    made = replica_id(Settings(gateway={"port": 8123}))
    assert made.endswith("-8123")
    assert "." not in made
    assert replica_id(Settings(gateway={"replica_id": "gw1"})) == "gw1"
