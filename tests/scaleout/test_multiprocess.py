"""Several ``bastion serve`` processes on one PostgreSQL database behave as one server.

Two separate processes (two ports, as behind a load balancer) share a database schema and a
``secret_key``, and nothing else. Shown here:

- authorization codes and refresh tokens are single-use across processes: redeemed on A,
  replayed on B -> ``invalid_grant``, and the whole grant is revoked (OAuth 2.1 §4.1.3, §4.3;
  RFC 9700 §2.2.2, §4.14.2; checklist A06, A08);
- a key rotation made by the CLI (``bastion keys rotate --now``) reaches both within
  ``tokens.key_refresh`` seconds: both sign with the new key, both publish it, and every token
  verifies against either JWKS (RFC 7517 §5, RFC 9068 §4);
- a client registered dynamically on A works on B at once, and its deletion on A stops it on B
  (RFC 7591, RFC 7592; checklist A04).

PostgreSQL only (BASTION_TEST_POSTGRES_URL, default the local server on 127.0.0.1:5432): without
it these tests skip, and fail under BASTION_REQUIRE_POSTGRES=1. Every wait is a bounded poll.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.authserver.admin import add_registration_token
from bastion.config import Settings
from tests.scaleout.processes import Server, cli, free_ports, require_postgres, serving
from tests.support.clients import machine_client
from tests.support.flow import add_user, authorize, exchange, register

POSTGRES_URL = os.environ.get(
    "BASTION_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SECRET_KEY = "scale-out-test-secret-key-0123456789abcdef"
KEY_REFRESH = 1
RESOURCE_PATH = "/mcp"

pytestmark = pytest.mark.postgres


@dataclass
class Cluster:
    """Two processes, A and B, and the settings they share."""

    environment: dict[str, Any]
    settings: Settings
    a: Server
    b: Server

    @property
    def resource(self) -> str:
        return f"{self.settings.issuer}{RESOURCE_PATH}"


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A schema of its own, dropped afterwards."""
    require_postgres(POSTGRES_URL)
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    await engine.dispose()


@pytest.fixture
def cluster_settings(schema: str, tmp_path: Path) -> dict[str, Any]:
    port_a, port_b = free_ports(2)
    issuer = f"http://127.0.0.1:{port_a}"
    return {
        "issuer": issuer,
        "_ports": [port_a, port_b],
        "data_dir": str(tmp_path / "data"),
        "database_url": POSTGRES_URL,
        "database_schema": schema,
        "secret_key": SECRET_KEY,
        "resources": [{"uri": f"{issuer}{RESOURCE_PATH}", "name": "demo", "scopes": ["mcp:tools"]}],
        "tokens": {"key_refresh": KEY_REFRESH, "key_prepublish": 0},
    }


@pytest.fixture
async def cluster(cluster_settings: dict[str, Any]) -> AsyncIterator[Cluster]:
    """A and B started at the same moment on an empty schema (both migrate it at start)."""
    ports = cluster_settings.pop("_ports")
    environment = dict(cluster_settings)
    settings = Settings(**environment)
    # Both start together on a fresh schema: the migrations must not race.
    with serving(environment, ports) as (a, b):
        await add_user(settings)
        yield Cluster(environment, settings, a, b)


def _client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False)


def _assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    assert response.headers["cache-control"] == "no-store"


async def _refresh(http: httpx.AsyncClient, client_id: str, token: str) -> httpx.Response:
    return await http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id},
    )


async def test_a08_a_code_redeemed_on_one_process_is_refused_on_the_other_and_revokes_the_grant(
    cluster: Cluster,
) -> None:
    """OAuth 2.1 §4.1.3, RFC 9700 §2.2.2 (A08): a code works once, whichever process redeems
    it; the replay on B is invalid_grant and revokes what the redemption on A issued (its
    refresh token stops working on both processes)."""
    async with _client(cluster.a) as a, _client(cluster.b) as b:
        app = await register(a)
        done = await authorize(a, app["client_id"], resource=cluster.resource)
        first = await exchange(a, app["client_id"], done)
        assert first.status_code == 200, first.text
        tokens = first.json()
        _assert_invalid_grant(await exchange(b, app["client_id"], done))
        _assert_invalid_grant(await _refresh(b, app["client_id"], tokens["refresh_token"]))
        _assert_invalid_grant(await _refresh(a, app["client_id"], tokens["refresh_token"]))


async def test_a06_a_refresh_token_used_on_one_process_is_one_branch_on_the_other(
    cluster: Cluster,
) -> None:
    """OAuth 2.1 §4.3.1, RFC 9700 §4.14.2 (A06): rotation is global. The refresh token spent on
    A, presented again on B within tokens.refresh_reuse_window, gets the successor A issued
    (one branch, whichever process answers); once that successor has been used, the old token
    is reuse, and that revokes the family: the newest token is refused too."""
    async with _client(cluster.a) as a, _client(cluster.b) as b:
        app = await register(b)
        done = await authorize(b, app["client_id"], resource=cluster.resource)
        issued = await exchange(b, app["client_id"], done)
        assert issued.status_code == 200, issued.text
        original = issued.json()["refresh_token"]
        rotated = await _refresh(a, app["client_id"], original)
        assert rotated.status_code == 200, rotated.text
        successor = rotated.json()["refresh_token"]
        assert successor != original
        repeated = await _refresh(b, app["client_id"], original)
        assert repeated.status_code == 200, repeated.text
        assert repeated.json()["refresh_token"] == successor
        onward = await _refresh(a, app["client_id"], successor)
        assert onward.status_code == 200, onward.text
        _assert_invalid_grant(await _refresh(b, app["client_id"], original))
        _assert_invalid_grant(await _refresh(a, app["client_id"], onward.json()["refresh_token"]))


def _kid(token: str) -> str:
    segment = token.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    kid: str = header["kid"]
    return kid


async def _token(http: httpx.AsyncClient, client_id: str, secret: str, resource: str) -> str:
    response = await http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": resource},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def _jwks(http: httpx.AsyncClient) -> KeySet:
    response = await http.get("/jwks")
    assert response.status_code == 200
    return KeySet.import_key_set(response.json())


async def test_a_key_rotation_by_the_cli_reaches_every_process_within_the_key_refresh_interval(
    cluster: Cluster,
) -> None:
    """RFC 7517 §5, RFC 9068 §4: after ``bastion keys rotate --now`` both processes sign with the
    new key within tokens.key_refresh seconds and both publish it; tokens signed by either
    process before and after the rotation verify against either process's JWKS."""
    made = await machine_client(cluster.settings, client_id="robot", name="robot")
    async with _client(cluster.a) as a, _client(cluster.b) as b:
        before = [await _token(http, "robot", made.secret, cluster.resource) for http in (a, b)]
        assert _kid(before[0]) == _kid(before[1])
        output = cli(cluster.environment, "keys", "rotate", "--now")
        new_kid = output.split("new key", 1)[1].split()[0]
        assert new_kid != _kid(before[0])
        after: list[str] = []
        for _ in range(20 * (KEY_REFRESH + 2)):  # bounded: well past key_refresh
            after = [await _token(http, "robot", made.secret, cluster.resource) for http in (a, b)]
            published = [{k.kid for k in (await _jwks(http)).keys} for http in (a, b)]
            if all(_kid(t) == new_kid for t in after) and all(new_kid in p for p in published):
                break
            await asyncio.sleep(0.1)
        assert [_kid(t) for t in after] == [new_kid, new_kid]
        for http in (a, b):
            keys = await _jwks(http)
            assert {k.kid for k in keys.keys} >= {new_kid, _kid(before[0])}
            for token in [*before, *after]:
                claims = jwt.decode(token, keys, algorithms=["ES256"]).claims
                assert claims["iss"] == cluster.settings.issuer
                assert claims["aud"] == cluster.resource


async def test_a04_a_client_registered_on_one_process_works_on_the_other_at_once(
    cluster: Cluster,
) -> None:
    """RFC 7591 §3 (A04): a registration made through A (with an operator's initial access token
    for machine clients) is usable through B straight away (B
    never caches unknown client_ids); RFC 7592 §2.3: deleting it through A stops it on B as soon
    as the deletion is announced (bounded poll; the cache TTL is far longer)."""
    initial = await add_registration_token(
        cluster.settings, label="robots", machine=[("*", ["mcp:tools"])]
    )
    async with _client(cluster.a) as a, _client(cluster.b) as b:
        registered = await a.post(
            "/register",
            headers={"Authorization": f"Bearer {initial}"},
            json={
                "grant_types": ["client_credentials"],
                "response_types": [],
                "scope": "mcp:tools",
                "client_name": "robot",
            },
        )
        assert registered.status_code == 201, registered.text
        robot = registered.json()
        token = await _token(b, robot["client_id"], robot["client_secret"], cluster.resource)
        assert token.count(".") == 2
        public = await register(a)
        done = await authorize(b, public["client_id"], resource=cluster.resource)
        assert (await exchange(b, public["client_id"], done)).status_code == 200
        deleted = await a.delete(
            robot["registration_client_uri"].replace(cluster.settings.issuer, cluster.a.url),
            headers={"Authorization": f"Bearer {robot['registration_access_token']}"},
        )
        assert deleted.status_code == 204
        answer = httpx.Response(200)
        for _ in range(100):
            answer = await b.post(
                "/token",
                data={"grant_type": "client_credentials", "resource": cluster.resource},
                auth=(robot["client_id"], robot["client_secret"]),
            )
            if answer.status_code != 200:
                break
            await asyncio.sleep(0.05)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_client"


async def test_a01_bastion_serve_with_two_workers_on_a_fresh_schema_serves_tokens(
    cluster_settings: dict[str, Any],
) -> None:
    """``bastion serve --workers 2``: uvicorn's workers build the app from the environment
    (bastion.serve.apps:worker_app), migrate the empty schema together without racing, and issue
    tokens (OAuth 2.1 §4.2) that verify against the JWKS whichever worker answers."""
    port = cluster_settings.pop("_ports")[0]
    environment = dict(cluster_settings)
    settings = Settings(**environment)
    with serving(environment, [port], workers=2) as (server,):
        made = await machine_client(settings, client_id="robot", name="robot")
        resource = f"{settings.issuer}{RESOURCE_PATH}"
        async with _client(server) as http:
            tokens = [await _token(http, "robot", made.secret, resource) for _ in range(10)]
            keys = await _jwks(http)
        for token in tokens:
            assert jwt.decode(token, keys, algorithms=["ES256"]).claims["sub"] == "robot"
