"""The registry bridge over https (``bastion proxy registry``, the default): what VS Code's
renderer and the GitHub Copilot CLI need, since neither will use ``http://`` (checklist: "VS Code
... probes GET {url}/v0.1/servers?limit=1 ..."; GitHub Copilot needs the same endpoints plus
CORS).

Clients here trust the local CA and nothing else (``ssl.create_default_context(cafile=...)``).
The bridge forwards to a live authorization server and registry as alice (team-a). The refusal
of non-loopback peers is tested on the ASGI app in test_bridge.py: over a real socket every peer
here is loopback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bastion.client import Authorizer, ClientSettings, FileStorage, RegistryClient
from bastion.client.local_ca import RENEW_BEFORE, SERVER_VALIDITY
from tests.client.browser_user import never_open
from tests.registry.client.https_bridge import RunningBridge, https_bridge
from tests.registry.live_registry import ALICE_SEES, ALPHA, BETA, COMMON, WEATHER, LiveRegistry
from tests.support.live import free_port

VSCODE = "vscode-file://vscode-app"


def latest(name: str) -> str:
    """The Copilot CLI's lookup of a server: the name URL-encoded as one path segment."""
    return f"/v0.1/servers/{quote(name, safe='')}/versions/latest"


@pytest.fixture
async def bridge(live: LiveRegistry, tmp_path: Path) -> AsyncIterator[RunningBridge]:
    async with (
        live.authorizer("alice", store="bridge") as auth,
        RegistryClient(live.url, auth) as registry,
        https_bridge(registry, tmp_path / "local-ca") as running,
    ):
        yield running


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[RegistryClient]:
    """A registry client for a registry that is not running, and no browser."""
    settings = ClientSettings(use_keyring=False, storage_path=tmp_path / "tokens.json")
    async with (
        Authorizer(settings, storage=FileStorage(settings.storage_path), open_url=never_open) as a,
        RegistryClient(f"http://127.0.0.1:{free_port()}/registry", a) as registry,
    ):
        yield registry


@pytest.fixture
async def offline_bridge(offline: RegistryClient, tmp_path: Path) -> AsyncIterator[RunningBridge]:
    """A bridge whose registry is not running: refusals come before anything is forwarded."""
    async with https_bridge(offline, tmp_path / "local-ca") as running:
        yield running


# -- who must not get in ---------------------------------------------------------------------------


async def test_it_serves_https_on_localhost(offline_bridge: RunningBridge) -> None:
    assert offline_bridge.url == f"https://localhost:{offline_bridge.port}"


async def test_plain_http_to_the_https_port_gets_no_answer(offline_bridge: RunningBridge) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"http://127.0.0.1:{offline_bridge.port}/v0.1/servers?limit=1")


async def test_its_certificate_is_refused_by_a_client_that_does_not_trust_the_local_ca(
    offline_bridge: RunningBridge,
) -> None:
    async with httpx.AsyncClient(verify=ssl.create_default_context()) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"{offline_bridge.url}/v0.1/servers?limit=1")


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "localhost:1", ""])
async def test_dns_rebinding_host_refused_over_https(
    offline_bridge: RunningBridge, host: str
) -> None:
    async with offline_bridge.client() as http:
        response = await http.get(
            "/v0.1/servers", headers={"Host": host.format(port=offline_bridge.port)}
        )
    assert response.status_code == 403
    assert "is not this bridge" in response.json()["detail"]
    assert f"https://localhost:{offline_bridge.port}" in response.json()["detail"]


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "vscode-file://other-app"])
async def test_origins_not_allowed_get_no_cors_and_no_answer_over_https(
    offline_bridge: RunningBridge, origin: str
) -> None:
    async with offline_bridge.client() as http:
        for method in ("GET", "OPTIONS"):
            response = await http.request(
                method,
                latest(ALPHA),
                headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            )
            assert response.status_code == 403, (method, response.text)
            assert "access-control-allow-origin" not in response.headers


# -- who may ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["https://127.0.0.1:{port}", "https://[::1]:{port}"])
async def test_localhost_is_served_on_ipv4_and_ipv6_with_a_certificate_for_each(
    offline_bridge: RunningBridge, base: str
) -> None:
    """``localhost`` may resolve to ::1 first: the bridge listens there too, on the same port,
    and its certificate names both addresses."""
    async with offline_bridge.client(base.format(port=offline_bridge.port)) as http:
        response = await http.get("/v0.1/servers", params={"limit": 1})
    assert response.status_code == 502  # past TLS and the Host check; the registry is down
    assert "no answer from the registry" in response.json()["detail"]


@pytest.mark.parametrize("base", ["https://localhost:{port}", "https://127.0.0.1:{port}"])
async def test_copilot_cli_lookups_over_https(bridge: RunningBridge, base: str) -> None:
    """The Copilot CLI looks each configured server up by name (URL-encoded) at
    /v0.1/servers/{name}/versions/latest: found (200) or not in the registry (404)."""
    async with bridge.client(base.format(port=bridge.port)) as http:
        for name in (ALPHA, COMMON, WEATHER):
            response = await http.get(latest(name))
            assert response.status_code == 200, response.text
            assert response.json()["server"]["name"] == name
            assert response.headers["content-type"] == "application/json"
        for hidden in (BETA, "com.acme.team-a/nothing"):
            response = await http.get(latest(hidden))
            assert response.status_code == 404, hidden
        listed = await http.get("/v0.1/servers", params={"version": "latest"})
    assert [s["server"]["name"] for s in listed.json()["servers"]] == ALICE_SEES


async def test_g02_vs_code_probe_preflight_and_cors_on_every_answer_over_https(
    bridge: RunningBridge,
) -> None:
    origin = {"Origin": VSCODE}
    async with bridge.client() as http:
        preflight = await http.options(
            "/v0.1/servers",
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        probe = await http.get("/v0.1/servers", params={"limit": 1}, headers=origin)
        found = await http.get(latest(ALPHA), headers=origin)
        missing = await http.get(latest(BETA), headers=origin)
        not_bridged = await http.get("/v0.1/publish", headers=origin)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == "GET, OPTIONS"
    assert preflight.headers["access-control-allow-headers"] == "Authorization, Content-Type"
    assert probe.status_code == 200 and probe.json()["metadata"]["count"] == 1
    assert found.status_code == 200 and missing.status_code == 404
    assert not_bridged.status_code == 404
    for response in (preflight, probe, found, missing, not_bridged):
        assert response.headers["access-control-allow-origin"] == VSCODE
        assert response.headers["vary"] == "Origin"


async def test_server_certificate_renewed_while_the_bridge_runs(
    offline: RegistryClient, tmp_path: Path
) -> None:
    """A certificate near expiry on disk is replaced and served to new connections without a
    restart (the bridge checks every 50 ms here, every 6 hours by default)."""
    async with https_bridge(offline, tmp_path / "local-ca", renew_every=0.05) as running:
        first = await served_certificate(running)
        # What a bridge started 61 days ago would have on disk: due for renewal now.
        started = dt.datetime.now(dt.UTC) - (SERVER_VALIDITY - RENEW_BEFORE) - dt.timedelta(days=1)
        running.ca.cert_path.unlink()
        old = running.ca.server_certificate(started)
        assert old.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE
        served = first
        for _ in range(200):
            served = await served_certificate(running)
            if served not in (first, old.public_bytes(Encoding.DER)):
                break
            await asyncio.sleep(0.05)
        assert served not in (first, old.public_bytes(Encoding.DER))
        assert served == running.ca.server_certificate().public_bytes(Encoding.DER)


async def served_certificate(running: RunningBridge) -> bytes:
    """The DER certificate the bridge presents to a new connection."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", running.port, ssl=running.only_local_ca(), server_hostname="localhost"
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        der = ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return der
    finally:
        writer.close()
        await writer.wait_closed()
