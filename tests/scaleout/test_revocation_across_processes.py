"""Revocation reaches a gateway and a registry running in processes of their own within two
seconds, on PostgreSQL (issue: "revocation that reaches every resource").

Processes: two ``bastion serve`` (A and B, as behind a load balancer), ``bastion gateway`` in
front of an upstream, and ``bastion registry serve`` on an origin of its own; the gateway and the
registry follow the database themselves (LISTEN on ``bastion_revocations``). Tokens come from A;
RFC 7009 requests go to B; the other revocations are made by the test process through the
functions the CLI calls. Every wait is a bounded poll (every 20 ms, at most 5 s).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.config import Settings
from tests.conftest import POSTGRES_URL
from tests.revocation import scenarios
from tests.revocation.scenarios import KINDS, Deployment, Kind, Target
from tests.scaleout.processes import free_ports, require_postgres, running, serving

BOUND = 2.0
SECRET_KEY = "revocation-test-secret-key-0123456789abcdef"

pytestmark = pytest.mark.postgres


async def _drop(schema: str) -> None:
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The five processes, started once for the module (every scenario makes its own users
    and clients); the schema is dropped afterwards."""
    require_postgres(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    port_a, port_b, gateway_port, registry_port, upstream_port = free_ports(5)
    issuer = f"http://127.0.0.1:{port_a}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    registry = f"http://127.0.0.1:{registry_port}"
    upstream = f"http://127.0.0.1:{upstream_port}"
    environment: dict[str, Any] = {
        "issuer": issuer,
        "data_dir": str(tmp_path_factory.mktemp("revocation") / "data"),
        "database_url": POSTGRES_URL,
        "database_schema": schema,
        "secret_key": SECRET_KEY,
        "gateway": {**scenarios.gateway_settings(gateway, f"{upstream}/mcp"), "port": gateway_port},
        "registry": {"enabled": True, "public_url": registry, "port": registry_port},
    }
    uvicorn = [sys.executable, "-m", "uvicorn"]
    upstream_args = ["--factory", "tests.revocation.scenarios:upstream_app"]
    upstream_args += ["--port", str(upstream_port), "--log-level", "warning"]
    try:
        with (
            running({}, upstream_args, url=upstream, ready_path="/mcp/ready", program=uvicorn),
            serving(environment, [port_a, port_b]) as (a, b),
            running(
                environment,
                ["gateway", "--log-level", "warning"],
                url=gateway,
                ready_path="/.well-known/oauth-protected-resource/mcp/notes",
            ),
            running(
                environment,
                ["registry", "serve"],
                url=registry,
                ready_path="/.well-known/oauth-protected-resource",
            ),
        ):
            yield {
                "deployment": Deployment(Settings(**environment), a.url, b.url),
                "targets": {
                    "gateway": scenarios.gateway_target(gateway),
                    "registry": scenarios.registry_target(registry),
                },
            }
    finally:
        asyncio.run(_drop(schema))


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
async def test_a_revocation_is_refused_within_two_seconds_by_a_gateway_and_a_registry_apart(
    processes: dict[str, Any], kind: Kind
) -> None:
    deployment: Deployment = processes["deployment"]
    targets: dict[str, Target] = processes["targets"]
    for where in ("gateway", "registry"):
        delay = await scenarios.delay_until_refused(deployment, targets[where], kind)
        assert delay < BOUND, f"{kind.name} took {delay:.3f} s to reach the {where}"
