"""``bastion serve --workers 2`` with ``[metrics] listen``: the first process serves the sum of
what its two workers count (prometheus_client's multiprocess mode, in a private directory it
removes when it stops). PostgreSQL only, as the other scale-out tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bastion.config import Settings
from tests.scaleout import test_multiprocess
from tests.scaleout.processes import free_ports, serving
from tests.support.clients import machine_client
from tests.support.flow import add_user, authorize, exchange, register

POSTGRES_URL = test_multiprocess.POSTGRES_URL
TOKENS = 12

pytestmark = pytest.mark.postgres
schema = test_multiprocess.schema  # the fixture: a schema of its own, dropped afterwards


def _sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def _directories() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("bastion-metrics-*"))


async def test_the_first_process_serves_the_sum_of_its_workers(schema: str, tmp_path: Path) -> None:
    port, metrics_port = free_ports(2)
    issuer = f"http://127.0.0.1:{port}"
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    environment = {
        "issuer": issuer,
        "data_dir": str(tmp_path / "data"),
        "database_url": POSTGRES_URL,
        "database_schema": schema,
        "secret_key": "metrics-workers-secret-key-0123456789abcdef",
        "resources": [{"uri": f"{issuer}/mcp", "name": "demo", "scopes": ["mcp:tools"]}],
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
    }
    settings = Settings(**environment)
    earlier = _directories()
    with serving(environment, [port], workers=2):
        await add_user(settings)
        machine = await machine_client(settings, name="metrics agent")
        assert httpx.get(f"{issuer}/metrics").status_code == 404
        for _ in range(TOKENS):
            # A connection per request, so that both workers take some.
            answer = httpx.post(
                f"{issuer}/token",
                auth=(machine.client_id, machine.secret),
                data={"grant_type": "client_credentials", "resource": f"{issuer}/mcp"},
                headers={"Connection": "close"},
            )
            assert answer.status_code == 200, answer.text
        async with httpx.AsyncClient(base_url=issuer, timeout=10) as http:
            app = await register(http)
            done = await authorize(http, app["client_id"], resource=f"{issuer}/mcp")
            assert (await exchange(http, app["client_id"], done)).status_code == 200
            replayed = await exchange(http, app["client_id"], done)
            assert replayed.status_code == 400  # and the grant is revoked
        text = httpx.get(metrics).text
        for _ in range(50):  # each worker learns of the revocation by NOTIFY
            if _sample(text, "bastion_revocation_propagation_seconds_count") >= 2:
                break
            text = httpx.get(metrics).text
        issued = {
            "grant_type": "client_credentials",
            "client_type": "confidential",
            "client_origin": "preregistered",
        }
        assert _sample(text, "bastion_tokens_issued_total", **issued) == TOKENS
        token_ok = {"app": "authserver", "route": "/token", "method": "POST", "status": "200"}
        assert _sample(text, "bastion_http_requests_total", **token_ok) == TOKENS + 1
        assert _sample(text, "bastion_consents_total", decision="allowed") == 1
        # One revocation, applied once by each of the two workers.
        assert _sample(text, "bastion_revocation_propagation_seconds_count") == 2
        assert _sample(text, "bastion_signing_key_activated_timestamp_seconds") > 0
        assert httpx.get(metrics.replace("/metrics", "/elsewhere")).status_code == 404
        assert len(_directories() - earlier) == 1
    assert _directories() - earlier == set()
