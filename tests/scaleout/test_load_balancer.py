"""Replicas behind a real load balancer (HAProxy with ``deploy/haproxy/bastion.cfg``), on
PostgreSQL, while replicas are killed (SIGKILL, as a crash would end them).

Processes: two ``bastion serve`` (as1 with ``--workers 2``, as2; the registry on the issuer's
origin), two ``bastion gateway`` (replica ids gw1 and gw2) in front of an MCP SDK server over
streamable HTTP ("sdk") and the same server over stdio ("files"), and HAProxy in front of both
pairs. The issuer and the gateway's public URL are HAProxy's. Clients are the official ``mcp``
SDK client with a client_credentials token obtained through HAProxy.

- A gateway replica dies: the HTTP upstream's session goes on at the other replica with the
  same session id; the stdio session, a process of the dead replica, is 404 -32001 (never a hang
  or a 5xx) and a new session works.
- An AS replica dies: tokens are still issued through HAProxy; a revocation made at the other
  replica is refused by both gateways within the revocation bound; the registration quota per
  address is one count across the replicas.
- Log-in throttling: failed log-ins for one user from one address count once, whichever
  replica they reach.

PostgreSQL and haproxy (scripts/test-setup.sh installs both) or the test skips; under
BASTION_REQUIRE_POSTGRES=1 it fails instead. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import httpx2
import pytest
import sqlalchemy as sa
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.config import Settings
from bastion.oauth import pkce
from tests.authserver.browser_steps import authorization_params
from tests.conftest import POSTGRES_URL
from tests.gateway.conftest import STDIO_SERVER
from tests.scaleout.load_balancer import balancing, haproxy_program
from tests.scaleout.processes import (
    Server,
    free_ports,
    require_postgres,
    running,
    running_together,
)
from tests.support.clients import MachineClient, machine_client
from tests.support.flow import PASSWORD, add_user, csrf_of

SECRET_KEY = "load-balancer-test-secret-key-0123456789abcdef"
SESSION_SECRET = "load-balancer-test-session-secret-0123456789"
REVOCATION_BOUND = 2.0
REGISTRATIONS = 4
FAILURES = 3
ACCEPT = "application/json, text/event-stream"
NOT_FOUND = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": -32001, "message": "Session not found"},
}
READY = "/readyz"  # what HAProxy checks too (deploy/haproxy/bastion.cfg)
REDIRECT = "http://127.0.0.1:53682/callback"

pytestmark = pytest.mark.postgres


@dataclass
class Cluster:
    """The replicas, HAProxy's two addresses, and a machine client of the deployment."""

    issuer: str
    gateway: str
    serve: dict[str, Server]
    gateways: dict[str, Server]
    client: MachineClient

    def url(self, upstream: str) -> str:
        return f"{self.gateway}/mcp/{upstream}"

    async def token(self, upstream: str, http: httpx.AsyncClient) -> str:
        data = {
            "grant_type": "client_credentials",
            "resource": self.url(upstream),
            "scope": "mcp:tools",
        }
        try:
            response = await http.post(f"{self.issuer}/token", data=data, auth=self.client.auth)
            cut_off = _haproxy_502(response)
        except httpx.RemoteProtocolError:
            cut_off = True
        if cut_off:
            # The request was in flight to the replica just killed (it may have acted on it):
            # HAProxy answers 502 if it was the first request on this client connection and
            # closes the connection without an answer otherwise, and does not send it again,
            # as a proxy must not repeat a POST (RFC 9110 §9.2.2; deploy/haproxy/bastion.cfg).
            # The client asks again, as bastion's client does for this grant (it redeems
            # nothing: bastion.client.flow.token_request); the retry goes to the live replica.
            response = await http.post(f"{self.issuer}/token", data=data, auth=self.client.auth)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


def _haproxy_502(response: httpx.Response) -> bool:
    """HAProxy's own 502 page ("invalid or incomplete response"), not an answer of bastion's."""
    return response.status_code == 502 and "<h1>502 Bad Gateway</h1>" in response.text


async def _drop(schema: str) -> None:
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


def _gateway_section(public_url: str, upstream: str) -> dict[str, Any]:
    return {
        "enabled": True,
        "public_url": public_url,
        "session_secret": SESSION_SECRET,
        "upstreams": [
            {"name": "sdk", "path": "/mcp/sdk", "url": upstream, "scopes": ["mcp:tools"]},
            {
                "name": "files",
                "path": "/mcp/files",
                "command": [sys.executable, STDIO_SERVER],
                "scopes": ["mcp:tools"],
            },
        ],
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Everything started once for the module; each test leaves it as it found it."""
    require_postgres(POSTGRES_URL)
    haproxy_program()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    lb_as, lb_gateway, as1, as2, gw1, gw2, upstream_port = free_ports(7)
    issuer = f"http://127.0.0.1:{lb_as}"
    gateway = f"http://127.0.0.1:{lb_gateway}"
    upstream = f"http://127.0.0.1:{upstream_port}"
    environment: dict[str, Any] = {
        "issuer": issuer,
        "data_dir": str(tmp_path_factory.mktemp("replicas") / "data"),
        "database_url": POSTGRES_URL,
        "database_schema": schema,
        "secret_key": SECRET_KEY,
        "trusted_proxies": ["127.0.0.1"],
        "quotas": {"registrations_per_address": REGISTRATIONS},
        "login": {"max_failures": FAILURES},
        "registry": {"enabled": True},
        "gateway": _gateway_section(gateway, f"{upstream}/mcp"),
    }
    haproxy = {
        "LB_AS_BIND": f"127.0.0.1:{lb_as}",
        "LB_GATEWAY_BIND": f"127.0.0.1:{lb_gateway}",
        "LB_AS1": f"127.0.0.1:{as1}",
        "LB_AS2": f"127.0.0.1:{as2}",
        "LB_GW1": f"127.0.0.1:{gw1}",
        "LB_GW2": f"127.0.0.1:{gw2}",
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "tests.gateway.stdio_server:http_app"]
    quiet = ["--log-level", "warning"]
    serve_launches = [
        (
            environment,
            ["serve", "--port", str(port), "--workers", workers, *quiet],
            f"http://127.0.0.1:{port}",
            READY,
        )
        for port, workers in ((as1, "2"), (as2, "1"))
    ]
    gateway_launches = [
        (
            {
                **environment,
                "gateway": {**environment["gateway"], "port": port, "replica_id": name},
            },
            ["gateway", *quiet],
            f"http://127.0.0.1:{port}",
            # Alive is enough here: the gateways fetch the AS's JWKS through HAProxy, which
            # starts next and sends traffic to them once they are ready.
            "/healthz",
        )
        for name, port in (("gw1", gw1), ("gw2", gw2))
    ]
    try:
        with ExitStack() as stack:
            stack.enter_context(
                running(
                    {},
                    ["--port", str(upstream_port), "--log-level", "warning"],
                    url=upstream,
                    ready_path="/ready",
                    program=uvicorn,
                )
            )
            first, second = stack.enter_context(running_together(serve_launches))
            # After the AS replicas made the tables: a gateway started before waits for them.
            started = stack.enter_context(running_together(gateway_launches))
            gateways = dict(zip(("gw1", "gw2"), started, strict=True))
            ready = [f"{issuer}{READY}", f"{gateway}{READY}"]
            stack.enter_context(balancing(haproxy, ready))
            settings = Settings(**environment)
            client = asyncio.run(machine_client(settings, name="load balancer test"))
            asyncio.run(add_user(settings))
            yield Cluster(issuer, gateway, {"as1": first, "as2": second}, gateways, client)
    finally:
        asyncio.run(_drop(schema))


@asynccontextmanager
async def mcp_session(url: str, token: str) -> AsyncIterator[tuple[ClientSession, list[str]]]:
    """The SDK client's session at ``url`` through HAProxy, initialized; with the session ids
    the server sent, as they come."""
    seen: list[str] = []

    async def note(response: httpx2.Response) -> None:
        if "mcp-session-id" in response.headers:
            seen.append(response.headers["mcp-session-id"])

    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
            event_hooks={"response": [note]},
        ) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session, seen


async def _echo(session: ClientSession, text: str) -> Any:
    return (await session.call_tool("echo", {"text": text})).structured_content


async def _raw_session(http: httpx.AsyncClient, url: str, token: str) -> str:
    """Initialize a session with raw HTTP at ``url`` (one replica, not HAProxy); its id."""
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    started = await http.post(url, json=init, headers=headers)
    assert started.status_code == 200, started.text
    session_id = started.headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    done = await http.post(url, json=initialized, headers={**headers, "Mcp-Session-Id": session_id})
    assert done.status_code == 202, done.text
    return session_id


async def _tools_list(
    http: httpx.AsyncClient, url: str, token: str, session_id: str
) -> httpx.Response:
    """tools/list with raw HTTP in the session ``session_id``."""
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Mcp-Session-Id": session_id}
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    return await http.post(url, json=body, headers=headers)


async def test_sessions_when_a_gateway_replica_dies(cluster: Cluster) -> None:
    """One gateway replica is killed mid-session. The HTTP upstream's session (begun at that
    replica, through HAProxy and directly) goes on at the other one with the same session id;
    the stdio session was a process of the dead replica: 404 -32001 through HAProxy, the SDK
    client gets the error (no hang), and a new session, at the other replica, works."""
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http, asyncio.timeout(90):
        sdk_token = await cluster.token("sdk", http)
        files_token = await cluster.token("files", http)
        async with (
            mcp_session(cluster.url("sdk"), sdk_token) as (sdk, _),
            mcp_session(cluster.url("files"), files_token) as (files, files_ids),
        ):
            assert await _echo(sdk, "before") == {"result": "before"}
            assert await _echo(files, "before") == {"result": "before"}
            holder_name = files_ids[0].split(".")[0]
            [survivor_name] = set(cluster.gateways) - {holder_name}
            holder = cluster.gateways[holder_name]
            begun_there = await _raw_session(http, f"{holder.url}/mcp/sdk", sdk_token)
            holder.kill()
            try:
                for n in range(4):
                    assert await _echo(sdk, f"after {n}") == {"result": f"after {n}"}
                moved = await _tools_list(http, cluster.url("sdk"), sdk_token, begun_there)
                gone = await _tools_list(http, cluster.url("files"), files_token, files_ids[0])
                with pytest.raises(MCPError) as ended:
                    await _echo(files, "after")
                async with mcp_session(cluster.url("files"), files_token) as (again, again_ids):
                    assert await _echo(again, "again") == {"result": "again"}
            finally:
                holder.restart()
    assert holder_name in ("gw1", "gw2")
    assert moved.status_code == 200, moved.text
    assert '"echo"' in moved.text
    assert gone.status_code == 404
    assert gone.json() == NOT_FOUND
    assert ended.value.error.code == -32001
    assert again_ids[0].startswith(f"{survivor_name}.")


async def _until_refused(url: str, token: str, http: httpx.AsyncClient) -> httpx.Response:
    """POST tools/list at ``url`` until it is refused 401, at most REVOCATION_BOUND seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REVOCATION_BOUND
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    while True:
        answer = await http.post(url, json=body, headers=headers)
        if answer.status_code == 401 or loop.time() > deadline:
            return answer
        await asyncio.sleep(0.02)


async def test_tokens_revocation_quotas_and_the_registry_when_an_as_replica_dies(
    cluster: Cluster,
) -> None:
    """as1 is killed: tokens keep coming through HAProxy, at once. A token revoked at as2 (RFC
    7009) is refused by both gateway replicas within the bound, each asked directly. The
    registration quota per address counts across replicas: REGISTRATIONS in all, whichever
    replica gets them, then 429 at every replica. Both replicas serve the registry."""
    registry = "/registry/v0.1/servers"
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http, asyncio.timeout(90):
        registries = [await http.get(f"{s.url}{registry}") for s in cluster.serve.values()]
        cluster.serve["as1"].kill()
        try:
            tokens = [await cluster.token("sdk", http) for _ in range(6)]
            as2 = cluster.serve["as2"].url
            revoked = await http.post(
                f"{as2}/revoke", data={"token": tokens[0]}, auth=cluster.client.auth
            )
            refusals = [
                await _until_refused(f"{g.url}/mcp/sdk", tokens[0], http)
                for g in cluster.gateways.values()
            ]
            still = await http.post(
                cluster.url("sdk"),
                json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
                headers={"Authorization": f"Bearer {tokens[1]}", "Accept": ACCEPT},
            )
        finally:
            cluster.serve["as1"].restart()
        body = {
            "client_name": "quota",
            "redirect_uris": ["http://127.0.0.1:9/cb"],
            "token_endpoint_auth_method": "none",
        }
        replicas = [cluster.serve["as1"].url, cluster.serve["as2"].url, cluster.issuer]
        registered = [
            (await http.post(f"{replicas[n % 3]}/register", json=body)).status_code
            for n in range(REGISTRATIONS + 3)
        ]
    assert [r.status_code for r in registries] == [401, 401]
    assert all("resource_metadata=" in r.headers["www-authenticate"] for r in registries)
    assert revoked.status_code == 200
    assert [r.status_code for r in refusals] == [401, 401]
    assert all('error="invalid_token"' in r.headers["www-authenticate"] for r in refusals)
    assert still.status_code == 200, still.text
    assert registered == [201] * REGISTRATIONS + [429] * 3


async def test_failed_log_ins_count_across_replicas(cluster: Cluster) -> None:
    """A sign-in begun at as1 goes on at either replica (the pending request is in the
    database), and failed log-ins for alice from one address count once for both: after
    FAILURES wrong passwords sent alternately to as1 and as2, the right one is paused (429 with
    Retry-After) at both."""
    as1, as2 = cluster.serve["as1"].url, cluster.serve["as2"].url
    address = {"X-Forwarded-For": "198.51.100.7"}  # from 127.0.0.1, a trusted proxy
    async with httpx.AsyncClient(timeout=10, trust_env=False, headers=address) as http:
        body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        registered = await http.post(f"{as1}/register", json=body)
        assert registered.status_code == 201, registered.text
        params = authorization_params(
            registered.json()["client_id"],
            pkce.new_verifier(),
            redirect_uri=REDIRECT,
            resource=cluster.url("sdk"),
        )
        started = await http.get(f"{as1}/authorize", params=params)
        assert started.status_code in (302, 303), started.text
        interaction = urlsplit(started.headers["location"]).path
        page = await http.get(f"{as2}{interaction}")
        assert page.status_code == 200, page.text
        form = {"csrf": csrf_of(page.text), "username": "alice"}
        failed = [
            await http.post(f"{replica}{interaction}/login", data=form | {"password": "wrong"})
            for replica in (as1, as2, as1)[:FAILURES]
        ]
        paused = [
            await http.post(f"{replica}{interaction}/login", data=form | {"password": PASSWORD})
            for replica in (as1, as2)
        ]
    assert [f.status_code for f in failed] == [401] * FAILURES
    assert [p.status_code for p in paused] == [429, 429]
    assert all(int(p.headers["retry-after"]) > 0 for p in paused)
