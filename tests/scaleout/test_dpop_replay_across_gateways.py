"""A DPoP proof is accepted once by a deployment, not once per process (RFC 9449 §11.1), and the
gateway's nonces are the same on every replica (§9): two ``bastion gateway`` processes on one
PostgreSQL database, as behind a load balancer (one public URL), with ``bastion serve`` as the
authorization server.

Tokens are signed with the AS's key (read from the database) and bound with ``cnf.jkt`` as the
AS binds them (§6.1); proofs are made with joserfc.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.config import Settings
from bastion.tokens import access_token
from tests.conftest import POSTGRES_URL
from tests.resource.conftest import signing_key_of
from tests.revocation import scenarios
from tests.scaleout.processes import (
    free_ports,
    require_postgres,
    running,
    running_together,
    serving,
)
from tests.support.dpop import make_proof, new_key, thumbprint

SECRET_KEY = "dpop-replay-test-secret-key-0123456789abcdef"
READY = "/.well-known/oauth-protected-resource/mcp/notes"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}

pytestmark = pytest.mark.postgres


async def _drop(schema: str) -> None:
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The AS, two gateway processes with the same public URL (the first's address) and
    ``[gateway.dpop] nonce = true``, and the recording upstream."""
    require_postgres(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    as_port, first_port, second_port, upstream_port = free_ports(4)
    issuer = f"http://127.0.0.1:{as_port}"
    public = f"http://127.0.0.1:{first_port}"
    upstream = f"http://127.0.0.1:{upstream_port}"
    gateway = scenarios.gateway_settings(public, f"{upstream}/mcp")
    environment: dict[str, Any] = {
        "issuer": issuer,
        "data_dir": str(tmp_path_factory.mktemp("dpop") / "data"),
        "database_url": POSTGRES_URL,
        "database_schema": schema,
        "secret_key": SECRET_KEY,
        "gateway": {**gateway, "dpop": {"nonce": True}},
    }
    uvicorn = [sys.executable, "-m", "uvicorn"]
    upstream_args = ["--factory", "tests.revocation.scenarios:upstream_app"]
    upstream_args += ["--port", str(upstream_port), "--log-level", "warning"]
    replicas = [
        (environment, ["gateway", "--port", str(port), "--log-level", "warning"], url, READY)
        for port, url in ((first_port, public), (second_port, f"http://127.0.0.1:{second_port}"))
    ]
    try:
        with (
            running({}, upstream_args, url=upstream, ready_path="/mcp/ready", program=uvicorn),
            serving(environment, [as_port]),
            running_together(replicas) as (first, second),
        ):
            yield {
                "settings": Settings(**environment),
                "resource": f"{public}/mcp/notes",
                "first": f"{first.url}/mcp/notes",
                "second": f"{second.url}/mcp/notes",
            }
    finally:
        asyncio.run(_drop(schema))


async def test_rfc9449_11_1_a_proof_one_gateway_accepted_is_refused_by_the_other(
    deployment: dict[str, Any],
) -> None:
    settings: Settings = deployment["settings"]
    resource: str = deployment["resource"]
    key = new_key()
    token = access_token.issue(
        await signing_key_of(settings),
        issuer=settings.issuer,
        subject="svc",
        audience=resource,
        client_id="svc",
        scope="mcp:tools",
        now=int(time.time()),
        ttl=300,
        extra={"cnf": {"jkt": thumbprint(key)}},
    ).token

    async def post(url: str, proof: str) -> httpx.Response:
        headers = {
            "Authorization": f"DPoP {token}",
            "DPoP": proof,
            "Accept": "application/json, text/event-stream",
        }
        return await http.post(url, json=INIT, headers=headers)

    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        # §9: the first gateway demands its nonce; the nonce it gives is good at the second.
        asked = await post(deployment["first"], make_proof(key, "POST", resource, token=token))
        assert asked.status_code == 401
        assert 'error="use_dpop_nonce"' in asked.headers["www-authenticate"]
        nonce = asked.headers["dpop-nonce"]
        proof = make_proof(key, "POST", resource, token=token, nonce=nonce)
        accepted = await post(deployment["first"], proof)
        assert accepted.status_code == 200, accepted.text
        # §11.1: the same proof at the other process is a replay.
        replayed = await post(deployment["second"], proof)
        assert replayed.status_code == 401
        assert replayed.json()["error"] == "invalid_dpop_proof"
        assert replayed.headers["www-authenticate"].startswith("DPoP ")
        fresh = make_proof(key, "POST", resource, token=token, nonce=nonce)
        other = await post(deployment["second"], fresh)
    assert other.status_code == 200, other.text
