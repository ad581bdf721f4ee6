"""The local registry bridge (``bastion proxy registry``): every call VS Code and the Copilot
CLI make, answered with the user's token and no token from the caller; loopback only.

The refusals (peer address, Host, Origin, paths, methods) run against a bridge whose registry is
not even listening: they are answered before anything is forwarded. The forwarding tests use a
live authorization server and registry, where alice (team-a) signs in at a scripted browser the
first time the bridge needs a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bastion.client import Authorizer, ClientError, ClientSettings, FileStorage, RegistryClient
from bastion.client.registry_bridge import (
    RegistryBridge,
    bind_loopback,
    is_loopback_address,
    run_bridge,
    upstream_path,
)
from tests.client.browser_user import BrowserUser, never_open
from tests.registry.live_registry import (
    ALICE_SEES,
    ALPHA,
    BETA,
    WEATHER,
    LiveRegistry,
    names_through,
)
from tests.registry.test_end_to_end import sign_in
from tests.support.flow import register
from tests.support.live import free_port, serve

PORT = 8377
VSCODE = "vscode-file://vscode-app"
ALPHA_PATH = "/v0.1/servers/com.acme.team-a%2Falpha/versions"


def problem_of(response: httpx.Response, status: int) -> str:
    """Assert an RFC 9457 problem of ``status``; return its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"] == "about:blank"
    detail: str = body["detail"]
    return detail


# -- answered before anything is forwarded -------------------------------------------------------


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[RegistryClient]:
    """A registry client for a registry that is not running, and no browser."""
    settings = ClientSettings(use_keyring=False, storage_path=tmp_path / "tokens.json")
    async with (
        Authorizer(
            settings, storage=FileStorage(tmp_path / "tokens.json"), open_url=never_open
        ) as a,
        RegistryClient(f"http://127.0.0.1:{free_port()}/registry", a) as client,
    ):
        yield client


def bridge_client(
    client: RegistryClient, *, peer: str = "127.0.0.1", **options: object
) -> httpx.AsyncClient:
    bridge = RegistryBridge(client, port=PORT, **options)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=bridge, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{PORT}")


@pytest.mark.parametrize("peer", ["192.0.2.10", "10.0.0.1", "::ffff:192.0.2.10", "2001:db8::1"])
async def test_non_loopback_peer_refused(offline: RegistryClient, peer: str) -> None:
    async with bridge_client(offline, peer=peer) as http:
        response = await http.get("/v0.1/servers", params={"limit": 1})
    assert peer in problem_of(response, 403)


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
async def test_loopback_peer_passes_to_the_registry(offline: RegistryClient, peer: str) -> None:
    """Past the address check the request is forwarded: here to a registry that is down."""
    async with bridge_client(offline, peer=peer) as http:
        response = await http.get("/v0.1/servers", params={"limit": 1})
    assert f"no answer from the registry {offline.url}" in problem_of(response, 502)


@pytest.mark.parametrize(
    "host",
    ["evil.example:8377", "evil.example", "127.0.0.1", "127.0.0.1:8378", "192.168.1.2:8377", ""],
)
async def test_dns_rebinding_host_refused(offline: RegistryClient, host: str) -> None:
    async with bridge_client(offline) as http:
        response = await http.get("/v0.1/servers", headers={"Host": host})
    assert "is not this bridge" in problem_of(response, 403)


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8377", "localhost:8377", "LOCALHOST:8377", "[::1]:8377"]
)
async def test_loopback_names_with_the_bridge_port_pass(offline: RegistryClient, host: str) -> None:
    async with bridge_client(offline) as http:
        response = await http.get("/v0.1/servers", headers={"Host": host})
    problem_of(response, 502)


async def test_other_origins_refused(offline: RegistryClient) -> None:
    """A web page must not read the user's registry through the bridge (no CORS for it, and
    no answer at all)."""
    async with bridge_client(offline) as http:
        plain = await http.get("/v0.1/servers", headers={"Origin": "https://evil.example"})
        preflight = await http.options(
            "/v0.1/servers",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    for response in (plain, preflight):
        assert "--allow-origin" in problem_of(response, 403)
        assert "access-control-allow-origin" not in response.headers


async def test_cors_preflight_for_vs_code_and_copilot_headers(offline: RegistryClient) -> None:
    async with bridge_client(offline) as http:
        response = await http.options(
            "/v0.1/servers",
            headers={
                "Origin": VSCODE,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, content-type",
                "Access-Control-Request-Private-Network": "true",
            },
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == VSCODE
    assert response.headers["access-control-allow-headers"] == "Authorization, Content-Type"
    assert response.headers["access-control-allow-methods"] == "GET, OPTIONS"
    assert response.headers["access-control-allow-private-network"] == "true"
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize("origin", ["*", "null", "NULL", " * "])
async def test_no_allow_list_may_hold_any_origin_or_null(
    offline: RegistryClient, origin: str
) -> None:
    """``*`` would let every web page read the user's registry; ``null`` is the origin of
    sandboxed frames and data: pages, which any web page can make."""
    with pytest.raises(ClientError, match="never allows the origin"):
        RegistryBridge(offline, port=PORT, allowed_origins=(VSCODE, origin))


@pytest.mark.parametrize(
    "value", ["vscode-app", "https://vscode.dev/path", "https://u@vscode.dev", "https://h:x", ""]
)
async def test_allow_list_entries_must_be_origins(offline: RegistryClient, value: str) -> None:
    with pytest.raises(ClientError, match="not an origin"):
        RegistryBridge(offline, port=PORT, allowed_origins=(value,))


async def test_null_origin_is_refused_without_cors(offline: RegistryClient) -> None:
    async with bridge_client(offline) as http:
        for method in ("GET", "OPTIONS"):
            response = await http.request(
                method,
                "/v0.1/servers",
                headers={"Origin": "null", "Access-Control-Request-Method": "GET"},
            )
            assert "--allow-origin" in problem_of(response, 403)
            assert "access-control-allow-origin" not in response.headers


async def test_an_added_origin_is_answered_exactly(offline: RegistryClient) -> None:
    extension = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
    async with bridge_client(offline, allowed_origins=(VSCODE, extension)) as http:
        response = await http.options(
            f"{ALPHA_PATH}/latest",
            headers={"Origin": extension, "Access-Control-Request-Method": "GET"},
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == extension
    assert response.headers["access-control-allow-headers"] == "Authorization, Content-Type"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/v0.1/servers/",
        "/v0.1/publish",
        "/v0.2/servers",
        "/registry/v0.1/servers",
        "/openapi.json",
        "/v0.1/servers/com.acme.team-a%2Falpha",
        "/v0.1/servers/com.acme.team-a%2Falpha/status",
        "/v0.1/servers/com.acme.team-a%2Falpha/versions/1.0.0/status",
        "/v0.1/servers/noslash/versions",
        "/v0.1/servers/a%2Fb%2Fc/versions",
    ],
)
async def test_other_paths_are_404_problems(offline: RegistryClient, path: str) -> None:
    async with bridge_client(offline) as http:
        response = await http.get(path)
    assert "the bridge answers GET /v0.1/servers" in problem_of(response, 404)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "HEAD"])
async def test_other_methods_are_405_problems(offline: RegistryClient, method: str) -> None:
    async with bridge_client(offline) as http:
        for path in ("/v0.1/servers", f"{ALPHA_PATH}/1.0.0"):
            response = await http.request(method, path)
            assert response.status_code == 405
            assert response.headers["allow"] == "GET, OPTIONS"


def test_upstream_paths_re_encode_names_and_versions() -> None:
    encoded = "/v0.1/servers/io.x%2Fy/versions"
    assert upstream_path(b"/v0.1/servers") == "/v0.1/servers"
    assert upstream_path(b"/v0/servers") == "/v0/servers"
    assert upstream_path(b"/v0.1/servers/io.x%2Fy/versions") == encoded
    assert upstream_path(b"/v0.1/servers/io.x%2fy/versions") == encoded
    assert upstream_path(b"/v0.1/servers/io.x/y/versions") == encoded
    assert upstream_path(b"/v0.1/servers/io.x/y/versions/latest") == f"{encoded}/latest"
    assert upstream_path(b"/v0.1/servers/io.x/y/versions/1.0%2Bb") == f"{encoded}/1.0%2Bb"
    assert upstream_path(b"/v0.1/servers/io.x/y/versions/1.0+b") == f"{encoded}/1.0%2Bb"
    assert upstream_path(b"/v0.1/servers/io.x%2Fy/versions/a%2F..") == f"{encoded}/a%2F.."
    assert upstream_path(b"/v0.1/servers/io.x%FFy/versions") is None


def test_loopback_addresses() -> None:
    for address in ("127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"):
        assert is_loopback_address(address), address
    for address in ("0.0.0.0", "192.0.2.1", "::ffff:192.0.2.1", "localhost", "", None):
        assert not is_loopback_address(address), address


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_bridge_listens_on_loopback_only(host: str) -> None:
    with pytest.raises(ClientError, match="loopback only"):
        bind_loopback(host, 0)


async def test_run_bridge_serves_until_stopped(offline: RegistryClient) -> None:
    urls: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_bridge(offline, host="localhost", port=0, ready=urls.append, stop=stop)
    )
    for _ in range(500):
        if urls or task.done():
            break
        await asyncio.sleep(0.01)
    assert urls and urls[0].startswith("http://127.0.0.1:"), urls
    async with httpx.AsyncClient(base_url=urls[0]) as http:
        response = await http.get("/v0.1/servers", params={"limit": 1})
    problem_of(response, 502)
    stop.set()
    await asyncio.wait_for(task, timeout=10)


# -- forwarded to a live registry ------------------------------------------------------------------


@dataclass
class Bridged:
    """A bridge for alice on a loopback port and a client that sends no token to it."""

    http: httpx.AsyncClient
    live: LiveRegistry
    registry: RegistryClient

    async def names(self, path: str = "/v0.1/servers", **params: str) -> list[str]:
        return await names_through(self.http, path, **params)


@pytest.fixture
async def bridged(live: LiveRegistry) -> AsyncIterator[Bridged]:
    port = free_port()
    async with (
        live.authorizer("alice", store="bridge") as auth,
        RegistryClient(live.url, auth) as registry,
        serve(RegistryBridge(registry, port=port), port=port) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        yield Bridged(http, live, registry)


async def test_probe_limit_1_then_v0_signs_in_once(bridged: Bridged) -> None:
    """VS Code's probe (GET /v0.1/servers?limit=1, then /v0): the first needs a token, which
    the bridge gets through the browser once."""
    for path in ("/v0.1/servers", "/v0/servers"):
        response = await bridged.http.get(path, params={"limit": 1})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["metadata"]["count"] == 1 and body["metadata"]["nextCursor"]
        assert "authorization" not in response.request.headers
    assert len(bridged.live.opened("bridge")) == 1


async def test_list_with_limit_cursor_and_version_latest(bridged: Bridged) -> None:
    assert await bridged.names(limit="1", version="latest") == ALICE_SEES
    assert await bridged.names("/v0/servers", limit="2", version="latest") == ALICE_SEES
    assert await bridged.names(limit="1") == [*ALICE_SEES[:2], ALPHA, ALPHA]  # all versions


async def test_search(bridged: Bridged) -> None:
    assert await bridged.names(search="weather", version="latest") == [WEATHER, ALPHA]
    assert await bridged.names(search="nothing-like-this", version="latest") == []


@pytest.mark.parametrize(
    "path",
    [ALPHA_PATH, "/v0.1/servers/com.acme.team-a/alpha/versions", ALPHA_PATH.replace("v0.1", "v0")],
)
async def test_latest_exact_version_and_versions(bridged: Bridged, path: str) -> None:
    latest = await bridged.http.get(f"{path}/latest")
    assert latest.status_code == 200, latest.text
    assert latest.headers["content-type"] == "application/json"
    assert latest.json()["server"]["version"] == "1.1.0"
    exact = await bridged.http.get(f"{path}/1.0.0")
    assert exact.status_code == 200 and exact.json()["server"]["version"] == "1.0.0"
    every = await bridged.http.get(path)
    assert sorted(s["server"]["version"] for s in every.json()["servers"]) == ["1.0.0", "1.1.0"]


async def test_404_passes_through(bridged: Bridged) -> None:
    """Copilot and VS Code read 404 as "not in the registry": an unknown name, an unknown
    version, and another team's entry alike."""
    for path in (
        "/v0.1/servers/com.acme.team-a%2Fnothing/versions/latest",
        f"{ALPHA_PATH}/9.9.9",
        f"/v0.1/servers/{BETA.replace('/', '%2F')}/versions/latest",
        f"/v0.1/servers/{BETA.replace('/', '%2F')}/versions",
    ):
        response = await bridged.http.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"].startswith("no "), response.text


async def test_400_passes_through_with_the_failing_field(bridged: Bridged) -> None:
    response = await bridged.http.get("/v0.1/servers", params={"limit": "1000"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["location"] == "query.limit"


async def test_callers_authorization_header_is_ignored(bridged: Bridged) -> None:
    """Whatever token the caller sends, the bridge lists with its own user's."""
    issuer, url = bridged.live.issuer, bridged.live.url
    async with httpx.AsyncClient(base_url=issuer) as http:
        client_id = (await register(http))["client_id"]
    bob = await sign_in(issuer, url, client_id, "bob")
    for header in (f"Bearer {bob}", "Bearer not-a-token", "Basic YWxpY2U6eA=="):
        response = await bridged.http.get(
            "/v0.1/servers", params={"version": "latest"}, headers={"Authorization": header}
        )
        assert response.status_code == 200, response.text
        assert [s["server"]["name"] for s in response.json()["servers"]] == ALICE_SEES


async def test_answers_carry_cors_for_allowed_origins(bridged: Bridged) -> None:
    response = await bridged.http.get(
        f"{ALPHA_PATH}/latest", headers={"Origin": VSCODE, "Authorization": "Bearer x"}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == VSCODE
    assert response.headers["vary"] == "Origin"
    missing = await bridged.http.get(f"{ALPHA_PATH}/9.9.9", headers={"Origin": VSCODE})
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == VSCODE


async def test_refused_token_is_a_502_that_says_to_sign_in(live: LiveRegistry) -> None:
    settings = live.client_settings("static", static_headers={live.url: "Bearer not-a-token"})
    async with (
        Authorizer(settings, storage=FileStorage(settings.storage_path), open_url=never_open) as a,
        RegistryClient(live.url, a) as registry,
        bridge_client(registry) as http,
    ):
        response = await http.get("/v0.1/servers", params={"limit": 1})
    detail = problem_of(response, 502)
    assert "refused the bridge's access token" in detail
    assert f"bastion login --registry {live.url}" in detail


async def test_a_refused_sign_in_is_a_502_that_says_to_sign_in(live: LiveRegistry) -> None:
    """No token stored and the person denies consent at the browser: the bridge answers 502
    with the authorization server's refusal and the command to run."""
    denying = BrowserUser(live.issuer, username="alice", decision="deny")
    try:
        async with (
            live.authorizer("alice", store="denied", open_url=denying) as auth,
            RegistryClient(live.url, auth) as registry,
            bridge_client(registry) as http,
        ):
            response = await http.get("/v0.1/servers", params={"limit": 1})
    finally:
        await denying.aclose()
    detail = problem_of(response, 502)
    assert "could not sign in" in detail and "access_denied" in detail
    assert f"bastion login --registry {live.url}" in detail
    assert len(denying.opened) == 1
