"""A DPoP proof is single-use across ``bastion serve`` processes on one PostgreSQL database
(RFC 9449 §11.1; checklist X01), and their nonces agree (§8; X04).

Two processes, A and B (as behind a load balancer: one issuer, two ports), share a schema and
a ``secret_key``. A proof used at A's token endpoint and replayed at B's is refused
(``invalid_dpop_proof``): the ``jti`` is spent in the database, not in a process. A nonce one
process hands out is accepted by the other: nonces are derived from the shared secret key.

PostgreSQL only (BASTION_TEST_POSTGRES_URL, default the local server): without it these tests
skip, and fail under BASTION_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.config import Settings
from tests.conftest import POSTGRES_URL
from tests.scaleout.processes import Server, free_ports, require_postgres, serving
from tests.support.clients import MachineClient, machine_client
from tests.support.dpop import make_proof, new_key, thumbprint
from tests.support.jwt import claims_of

SECRET_KEY = "dpop-replay-test-secret-key-0123456789abcdef"

pytestmark = pytest.mark.postgres


@dataclass
class Pair:
    """Processes A and B, the issuer they share and a machine client."""

    a: Server
    b: Server
    issuer: str
    robot: MachineClient

    @property
    def token_url(self) -> str:
        """The token endpoint as clients address it: through the issuer, whichever process
        answers."""
        return f"{self.issuer}/token"

    async def token(self, server: Server, *proofs: str) -> httpx.Response:
        headers = [("DPoP", proof) for proof in proofs]
        async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as http:
            return await http.post(
                "/token",
                data={"grant_type": "client_credentials", "resource": f"{self.issuer}/mcp"},
                headers=headers,
                auth=self.robot.auth,
            )


def _environment(schema: str, data_dir: Path, issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "data_dir": str(data_dir),
        "database_url": POSTGRES_URL,
        "database_schema": schema,
        "secret_key": SECRET_KEY,
        "resources": [{"uri": f"{issuer}/mcp", "name": "demo", "scopes": ["mcp:tools"]}],
        **extra,
    }


@pytest.fixture
def schema() -> str:
    require_postgres(POSTGRES_URL)
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def pair(schema: str, tmp_path: Path) -> AsyncIterator[Pair]:
    """A and B with nonces demanded (``[dpop] require_nonce``), on a fresh schema."""
    port_a, port_b = free_ports(2)
    issuer = f"http://127.0.0.1:{port_a}"
    environment = _environment(
        schema, tmp_path / "data", issuer, dpop={"require_nonce": True, "nonce_lifetime": 300}
    )
    try:
        with serving(environment, [port_a, port_b]) as (a, b):
            robot = await machine_client(Settings(**environment), name="robot", client_id="robot")
            yield Pair(a, b, issuer, robot)
    finally:
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


async def test_x01_rfc9449_11_1_a_proof_used_on_one_process_is_refused_on_the_other(
    pair: Pair,
) -> None:
    """§11.1: the jti is recorded in the database: the proof A accepted, replayed at B (and at
    A), is invalid_dpop_proof; a new proof of the same key works at B."""
    key = new_key()
    nonce = (await pair.token(pair.a, make_proof(key, "POST", pair.token_url))).headers[
        "dpop-nonce"
    ]
    proof = make_proof(key, "POST", pair.token_url, nonce=nonce)
    first = await pair.token(pair.a, proof)
    assert first.status_code == 200, first.text
    assert first.json()["token_type"] == "DPoP"
    assert claims_of(first.json()["access_token"])["cnf"] == {"jkt": thumbprint(key)}
    for server in (pair.b, pair.a):
        replayed = await pair.token(server, proof)
        assert replayed.status_code == 400, replayed.text
        assert replayed.json()["error"] == "invalid_dpop_proof"
    fresh = await pair.token(pair.b, make_proof(key, "POST", pair.token_url, nonce=nonce))
    assert fresh.status_code == 200, fresh.text


async def test_x04_rfc9449_8_a_nonce_from_one_process_is_accepted_by_the_other(
    pair: Pair,
) -> None:
    """§8: B demands a nonce (400 use_dpop_nonce with DPoP-Nonce); the nonce B gave works at
    A, and A's at B."""
    key = new_key()
    asked = await pair.token(pair.b, make_proof(key, "POST", pair.token_url))
    assert asked.status_code == 400, asked.text
    assert asked.json()["error"] == "use_dpop_nonce"
    nonce = asked.headers["dpop-nonce"]
    at_a = await pair.token(pair.a, make_proof(key, "POST", pair.token_url, nonce=nonce))
    assert at_a.status_code == 200, at_a.text
    again = at_a.headers["dpop-nonce"]
    at_b = await pair.token(pair.b, make_proof(key, "POST", pair.token_url, nonce=again))
    assert at_b.status_code == 200, at_b.text
