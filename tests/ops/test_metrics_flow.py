"""A real ``bastion quickstart`` with ``[metrics] listen`` set: a flow through every part (a
machine token, a person's sign-in with a wrong password first, consent, a code redeemed twice,
a call through the gateway, a registry read, a revocation), then a scrape of the metrics
listener: each counter moved by exactly what the flow did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bastion.config import load_settings
from bastion.registry.access import READ
from tests.cli.test_quickstart import wait_ready
from tests.support.clients import machine_client
from tests.support.flow import REDIRECT_URI, authorize, csrf_of, exchange
from tests.support.live import free_port

BASTION = str(Path(sys.executable).with_name("bastion"))
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "metrics", "version": "1"},
    },
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample the metrics listener serves, parsed by prometheus_client's own parser."""
    answer = httpx.get(url, timeout=5)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much the sample ``name`` with exactly ``labels`` grew between two scrapes."""
    key = (name, frozenset(labels.items()))
    assert key in after, f"no sample {name}{labels}"
    return after[key] - before.get(key, 0.0)


async def test_a_flow_moves_each_counter_by_what_it_did(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, metrics_port = free_port(), free_port()
    issuer, gateway = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    data, log = tmp_path / "data", tmp_path / "quickstart.log"
    env: Mapping[str, str] = {**os.environ, "BASTION_METRICS__LISTEN": f"127.0.0.1:{metrics_port}"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [BASTION, "quickstart", "--data-dir", str(data), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    processes.append(proc)
    wait_ready(f"{issuer}/.well-known/oauth-authorization-server", proc, log)
    found = re.search(r"Admin user\s+admin / (\S{16,})\s", log.read_text())
    assert found, log.read_text()
    password = found.group(1)
    settings = load_settings(data / "bastion.toml")
    demo, stdio, registry = f"{gateway}/mcp/demo", f"{gateway}/mcp/demo-stdio", f"{issuer}/registry"
    machine = await machine_client(
        settings, name="metrics agent", scope=None, resources=(demo, stdio, registry)
    )

    # Nothing about the metrics on the public listeners: /metrics there is an unknown path.
    assert httpx.get(f"{issuer}/metrics").status_code == 404
    assert httpx.get(f"{gateway}/metrics").status_code == 404

    before = scrape(metrics)
    async with httpx.AsyncClient(base_url=issuer, follow_redirects=False) as http:
        # Two machine tokens, and one refused: a wrong secret is invalid_client.
        tokens = {}
        for resource, scope in ((demo, "mcp:tools"), (stdio, "mcp:tools"), (registry, READ)):
            answer = await http.post(
                "/token",
                auth=(machine.client_id, machine.secret),
                data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
            )
            assert answer.status_code == 200, answer.text
            tokens[resource] = answer.json()["access_token"]
        wrong = await http.post(
            "/token",
            auth=(machine.client_id, "not-the-secret"),
            data={"grant_type": "client_credentials", "resource": demo},
        )
        assert wrong.status_code == 401

        # A person: a wrong password first (a failed sign-in), then the right one and consent.
        registered = await http.post(
            "/register",
            json={
                "redirect_uris": [REDIRECT_URI],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            },
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        start = await http.get(
            "/authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGKSJA3kpM",
                "code_challenge_method": "S256",
                "resource": demo,
                "scope": "mcp:tools",
            },
        )
        page = await http.get(start.headers["location"])
        failed = await http.post(
            f"{urlsplit(start.headers['location']).path}/login",
            data={"csrf": csrf_of(page.text), "username": "admin", "password": "wrong"},
        )
        assert failed.status_code == 401
        authorized = await authorize(
            http, client_id, username="admin", password=password, resource=demo
        )
        redeemed = await exchange(http, client_id, authorized)
        assert redeemed.status_code == 200, redeemed.text
        again = await exchange(http, client_id, authorized)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

        # The grant revoked again by its client. Each revocation (the replayed code revoked
        # the family already, OAuth 2.1 section 4.1.3) reaches this process's list.
        revoked = await http.post(
            "/revoke", data={"token": redeemed.json()["refresh_token"], "client_id": client_id}
        )
        assert revoked.status_code == 200

    # A call through the gateway without a token, refused; then with one, and a registry read.
    anonymous = httpx.post(demo, json=INITIALIZE, headers={"Accept": "application/json"})
    assert anonymous.status_code == 401
    for upstream in (demo, stdio):
        called = httpx.post(
            upstream,
            json=INITIALIZE,
            headers={
                "Accept": "application/json, text/event-stream",
                "Authorization": f"Bearer {tokens[upstream]}",
            },
            timeout=20,
        )
        assert called.status_code == 200, called.text
        assert "bastion-demo" in called.text
    listed = httpx.get(
        f"{registry}/v0.1/servers", headers={"Authorization": f"Bearer {tokens[registry]}"}
    )
    assert listed.status_code == 200, listed.text

    after = scrape(metrics)
    for _ in range(100):  # the feed applies the revocations within its poll interval
        if moved(before, after, "bastion_revocation_propagation_seconds_count") >= 2:
            break
        time.sleep(0.1)
        after = scrape(metrics)

    issued = "bastion_tokens_issued_total"
    cc = {"grant_type": "client_credentials", "client_type": "confidential"}
    assert moved(before, after, issued, **cc, client_origin="preregistered") == 3
    code = {"grant_type": "authorization_code", "client_type": "public"}
    assert moved(before, after, issued, **code, client_origin="dynamic") == 1
    refused = "bastion_oauth_errors_total"
    assert moved(before, after, refused, endpoint="/token", error="invalid_client") == 1
    assert moved(before, after, refused, endpoint="/token", error="invalid_grant") == 1
    assert moved(before, after, refused, endpoint=demo, error="unauthorized") == 1
    sign_ins = "bastion_sign_ins_total"
    assert moved(before, after, sign_ins, method="password", provider="local", result="ok") == 1
    failed_sign_in = {"method": "password", "provider": "local", "result": "failed"}
    assert moved(before, after, sign_ins, **failed_sign_in) == 1
    assert moved(before, after, "bastion_consents_total", decision="allowed") == 1
    requests = "bastion_http_requests_total"
    token_ok = {"app": "authserver", "route": "/token", "method": "POST", "status": "200"}
    assert moved(before, after, requests, **token_ok) == 4
    token_401 = {**token_ok, "status": "401"}
    assert moved(before, after, requests, **token_401) == 1
    gateway_ok = {"app": "gateway", "route": "/mcp/demo", "method": "POST", "status": "200"}
    assert moved(before, after, requests, **gateway_ok) == 1
    upstream = "bastion_gateway_upstream_request_duration_seconds_count"
    assert moved(before, after, upstream, upstream="demo", transport="http") == 1
    assert moved(before, after, upstream, upstream="demo-stdio", transport="stdio") == 1
    # The stdio session the initialize began is open, with its process.
    sessions = ("bastion_gateway_sessions", frozenset({("upstream", "demo-stdio")}))
    processes = ("bastion_gateway_stdio_processes", frozenset({("upstream", "demo-stdio")}))
    assert after[sessions] == after[processes] == 1
    read = {"app": "registry", "route": "list", "method": "GET", "status": "200"}
    assert moved(before, after, requests, **read) == 1
    assert (
        moved(before, after, "bastion_registry_operations_total", action="list", result="ok") == 1
    )
    assert moved(before, after, "bastion_revocation_propagation_seconds_count") == 2
    assert after[("bastion_db_connections_open", frozenset())] >= 1
    activated = after[("bastion_signing_key_activated_timestamp_seconds", frozenset())]
    assert time.time() - 3600 < activated <= time.time()
    # No label carries a client id, a token or a user name.
    text = httpx.get(metrics).text
    for secret in (machine.client_id, client_id, tokens[demo], "admin", password):
        assert secret not in text
