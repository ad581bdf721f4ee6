"""bastion's registry client (``RegistryClient``, ``bastion registry search|show``) against a live
authorization server and registry on loopback: the first request signs in through the browser
flow (a scripted user at bastion's log-in and consent pages), later ones reuse the token.

The live registry and its fixtures are in :mod:`tests.registry.live_registry`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.client import (
    Authorizer,
    ClientError,
    ClientSettings,
    FileStorage,
    RegistryClient,
    RegistryError,
)
from bastion.registry.access import READ, WRITE
from tests.client.browser_user import never_open
from tests.registry.harness import server_json
from tests.registry.live_registry import (
    ALICE_SEES,
    ALPHA,
    BETA,
    BOB_SEES,
    COMMON,
    WEATHER,
    LiveRegistry,
    names,
)
from tests.support.live import free_port, serve

runner = CliRunner()


# -- the library ---------------------------------------------------------------------------------


async def test_g01_g02_c12_first_request_signs_in_for_the_registry_url(live: LiveRegistry) -> None:
    """The 401 of the first request leads to one browser sign-in whose resource is the registry
    URL, with PKCE S256 and the challenged scope; then the list answers."""
    async with (
        live.authorizer("alice") as auth,
        RegistryClient(live.url, auth) as registry,
    ):
        page = await registry.list_servers()
        assert names(page.servers) == ALICE_SEES
        assert len(live.opened("alice")) == 1
        params = parse_qs(urlsplit(live.opened("alice")[0]).query)
        assert params["resource"] == [live.url]
        assert params["code_challenge_method"] == ["S256"]
        assert READ in params["scope"][0].split()
        stored = await auth.stored_tokens(live.url)
        assert stored is not None and stored.resource == live.url


async def test_c13_x05_token_stored_for_the_registry_url_and_sent_in_the_authorization_header(
    live: LiveRegistry,
) -> None:
    """Another process with the same token file needs no browser; every request carries the
    token in the Authorization header and never in the URL. The registry takes DPoP, so the
    token is DPoP-bound and each request has a proof of its own (RFC 9449 §7.1)."""
    async with live.authorizer("alice") as auth, RegistryClient(live.url, auth) as registry:
        await registry.ensure_token()
    assert len(live.opened("alice")) == 1
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with (
        live.authorizer("alice", open_url=never_open) as auth,
        RegistryClient(live.url, auth) as registry,
    ):
        registry.http.event_hooks["request"].append(record)
        await registry.list_servers()
        await registry.get(ALPHA)
    assert len(sent) == 2
    for request in sent:
        assert request.headers["authorization"].startswith("DPoP ")
        token = request.headers["authorization"].removeprefix("DPoP ")
        assert token not in str(request.url)
    assert len({request.headers["dpop"] for request in sent}) == 2


async def test_g02_publishing_steps_up_from_registry_read_to_registry_write(
    live: LiveRegistry,
) -> None:
    """The client's HTTP client publishes too: the 403 insufficient_scope that asks for
    mcp-registry:write leads to a second authorization for the union of the scopes."""
    async with live.authorizer("alice") as auth, RegistryClient(live.url, auth) as registry:
        await registry.ensure_token()
        stored = await auth.stored_tokens(live.url)
        assert stored is not None and WRITE not in stored.effective_scopes
        document = server_json("com.acme.team-a/gamma", description="Published by the client")
        response = await registry.http.post("/v0.1/publish", json=document)
        assert response.status_code == 200, response.text
        stored = await auth.stored_tokens(live.url)
        assert stored is not None
        assert {READ, WRITE} <= set(stored.effective_scopes)
        assert (await registry.get("com.acme.team-a/gamma")).version == "1.0.0"
    assert len(live.opened("alice")) == 2
    scopes = parse_qs(urlsplit(live.opened("alice")[1]).query)["scope"][0].split()
    assert {READ, WRITE} <= set(scopes)


async def test_g04_two_users_of_different_groups_see_different_entries(live: LiveRegistry) -> None:
    async with live.authorizer("alice") as a, RegistryClient(live.url, a) as alice:
        assert names([e async for e in alice.iter_servers()]) == ALICE_SEES
    async with live.authorizer("bob") as b, RegistryClient(live.url, b) as bob:
        assert names([e async for e in bob.iter_servers()]) == BOB_SEES
        with pytest.raises(RegistryError) as hidden:
            await bob.get(ALPHA)
    assert hidden.value.status == 404


async def test_get_latest_exact_version_and_versions_with_encoded_names(live: LiveRegistry) -> None:
    async with live.authorizer("alice") as auth, RegistryClient(live.url, auth) as registry:
        latest = await registry.get(ALPHA)
        assert (latest.name, latest.version, latest.status) == (ALPHA, "1.1.0", "active")
        assert latest.registry_meta["isLatest"] is True
        older = await registry.get(ALPHA, "1.0.0")
        assert older.version == "1.0.0" and older.registry_meta["isLatest"] is False
        every = await registry.versions(ALPHA)
        assert sorted(e.version for e in every) == ["1.0.0", "1.1.0"]
        assert (await registry.list_servers(version=None)).count == 4


async def test_pages_follow_next_cursor_and_search_filters(live: LiveRegistry) -> None:
    async with live.authorizer("alice") as auth, RegistryClient(live.url, auth) as registry:
        first = await registry.list_servers(limit=2)
        assert names(first.servers) == ALICE_SEES[:2] and first.next_cursor
        second = await registry.list_servers(limit=2, cursor=first.next_cursor)
        assert names(second.servers) == ALICE_SEES[2:] and second.next_cursor is None
        assert names([e async for e in registry.iter_servers(limit=1)]) == ALICE_SEES
        found = await registry.list_servers(search="weather")
        assert names(found.servers) == [WEATHER, ALPHA]


async def test_iteration_is_bounded(live: LiveRegistry) -> None:
    async with live.authorizer("alice") as auth, RegistryClient(live.url, auth) as registry:
        with pytest.raises(RegistryError, match="more than 2 pages"):
            _ = [e async for e in registry.iter_servers(limit=1, max_pages=2)]


async def test_problem_details_become_registry_errors(live: LiveRegistry) -> None:
    """RFC 9457 answers: the status, the detail and the failing fields reach the caller."""
    async with live.authorizer("alice") as auth, RegistryClient(live.url, auth) as registry:
        with pytest.raises(RegistryError) as missing:
            await registry.get("com.acme.team-a/nothing", "9.9.9")
        assert missing.value.status == 404
        assert (
            missing.value.detail == "no version '9.9.9' of a server named 'com.acme.team-a/nothing'"
        )
        assert "HTTP 404" in str(missing.value)
        with pytest.raises(RegistryError) as invalid:
            await registry.list_servers(limit=1000)
        assert invalid.value.status == 400
        assert invalid.value.errors == ("query.limit: must be an integer from 1 to 100",)
        assert "query.limit" in str(invalid.value)


async def test_refused_token_says_to_sign_in_again(live: LiveRegistry) -> None:
    """A token the registry refuses (here a configured static header) is a 401 RegistryError
    that names the command to run."""
    settings = live.client_settings("static", static_headers={live.url: "Bearer not-a-token"})
    async with (
        Authorizer(settings, storage=FileStorage(settings.storage_path), open_url=never_open) as a,
        RegistryClient(live.url, a) as registry,
    ):
        await registry.ensure_token()  # a static header is the credential: no sign-in
        with pytest.raises(RegistryError) as refused:
            await registry.list_servers()
    assert refused.value.status == 401
    assert f"bastion login --registry {live.url}" in str(refused.value)


async def test_silent_refresh_after_expiry(live: LiveRegistry) -> None:
    """An expired access token is refreshed without the browser (offline_access)."""
    now = [1_000_000_000.0]
    async with live.authorizer("alice") as auth, RegistryClient(live.url, auth) as registry:
        await registry.list_servers()
    first = await FileStorage(live.client_settings("alice").storage_path).get_tokens(live.url)
    assert first is not None and first.refresh_token and first.expires_at is not None
    now[0] = first.expires_at + 3600
    async with (
        live.authorizer("alice", open_url=never_open, clock=lambda: now[0]) as auth,
        RegistryClient(live.url, auth) as registry,
    ):
        assert names((await registry.list_servers()).servers) == ALICE_SEES
        renewed = await auth.stored_tokens(live.url)
    assert renewed is not None and renewed.access_token != first.access_token
    assert len(live.opened("alice")) == 1


async def test_unreachable_registry_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/registry"
    settings = ClientSettings(use_keyring=False, storage_path=tmp_path / "t.json")
    async with (
        Authorizer(settings, storage=FileStorage(tmp_path / "t.json"), open_url=never_open) as a,
        RegistryClient(url, a) as registry,
    ):
        with pytest.raises(RegistryError, match="no answer from the registry") as failed:
            await registry.get(ALPHA)
    assert failed.value.status is None


async def test_a_url_that_is_not_a_registry_is_said_to_be_so(tmp_path: Path) -> None:
    """A registry always answers its list; a 404 there is "not a registry", not "the name or
    version is wrong" (the first hour of a new user: a wrong URL)."""
    settings = ClientSettings(use_keyring=False, storage_path=tmp_path / "t.json")
    async with (
        serve(Starlette()) as base,  # 404 Not Found for every path
        Authorizer(settings, storage=FileStorage(tmp_path / "t.json"), open_url=never_open) as a,
        RegistryClient(f"{base}/mcp/demo", a) as registry,
    ):
        with pytest.raises(RegistryError) as failed:
            await registry.list_servers()
        with pytest.raises(RegistryError) as missing:
            await registry.get(ALPHA)
    assert f"{base}/mcp/demo does not look like an MCP registry" in str(failed.value)
    assert "the name or version is wrong" not in str(failed.value)
    assert "the name or version is wrong" in str(missing.value)


def test_registry_url_must_be_https_or_loopback(tmp_path: Path) -> None:
    settings = ClientSettings(use_keyring=False, storage_path=tmp_path / "t.json")
    authorizer = Authorizer(settings, storage=FileStorage(tmp_path / "t.json"))
    with pytest.raises(ClientError, match="uses http on a non-loopback host"):
        RegistryClient("http://registry.example.com/registry", authorizer)


# -- the CLI -------------------------------------------------------------------------------------


def client_config(live: LiveRegistry, store: str) -> Path:
    """A client.toml using the token file of ``store`` (no keyring, short browser wait)."""
    settings = live.client_settings(store)
    path = live.tmp / f"{store}-client.toml"
    path.write_text(
        f'use_keyring = false\nstorage_path = "{settings.storage_path}"\ncallback_timeout = 5\n'
    )
    return path


async def bastion(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    return result.exit_code, result.stdout, result.stderr


async def signed_in(live: LiveRegistry, username: str) -> Path:
    """Sign ``username`` in through the library; the CLI then reuses the stored token."""
    async with live.authorizer(username) as auth, RegistryClient(live.url, auth) as registry:
        await registry.ensure_token()
    return client_config(live, username)


async def test_cli_search_table_json_and_all_pages(live: LiveRegistry) -> None:
    config = await signed_in(live, "bob")
    common = ("--client-config", str(config), "--no-browser")
    code, out, _ = await bastion("registry", "search", live.url, *common)
    assert code == 0, out
    for name in BOB_SEES:
        assert name in out
    assert ALPHA not in out and "active" in out
    code, out, err = await bastion("registry", "search", live.url, "--limit", "1", *common)
    assert code == 0 and COMMON in out and BETA not in out
    assert "--all" in err
    code, out, _ = await bastion(
        "registry", "search", live.url, "--all", "--limit", "1", "--json", *common
    )
    assert code == 0, out
    document = json.loads(out)
    assert [s["server"]["name"] for s in document["servers"]] == BOB_SEES
    code, out, _ = await bastion("registry", "search", live.url, "weather", "--json", *common)
    assert [s["server"]["name"] for s in json.loads(out)["servers"]] == [WEATHER]


async def test_cli_prints_the_registrys_text_verbatim(live: LiveRegistry) -> None:
    """Descriptions are the registry's text, not console markup: brackets stay as they are."""
    description = "Shows [/b] and [red] as text"
    await live.publish("bob", server_json("com.acme.team-b/brackets", description=description))
    config = await signed_in(live, "bob")
    code, out, err = await bastion(
        "registry", "search", live.url, "brackets", "--client-config", str(config)
    )
    assert code == 0, err
    assert "[/b]" in out and "[red]" in out


async def test_cli_show_prints_server_json_and_status(live: LiveRegistry) -> None:
    config = await signed_in(live, "alice")
    common = ("--client-config", str(config), "--no-browser")
    code, out, _ = await bastion("registry", "show", live.url, ALPHA, "1.0.0", "--json", *common)
    assert code == 0, out
    document = json.loads(out)
    assert document["server"]["version"] == "1.0.0"
    assert document["_meta"]["dev.mcp-bastion/registry"]["status"] == "active"
    code, out, _ = await bastion("registry", "show", live.url, ALPHA, *common)
    assert code == 0, out
    assert '"version": "1.1.0"' in out and "isLatest" in out and "active" in out
    code, out, err = await bastion("registry", "show", live.url, BETA, *common)
    assert code == 1
    assert "HTTP 404" in err and "not visible to you" in err


async def test_cli_proxy_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    """The bridge forwards requests with the user's token: it never listens beyond loopback."""
    config = tmp_path / "client.toml"
    config.write_text(f'use_keyring = false\nstorage_path = "{tmp_path / "tokens.json"}"\n')
    url = f"http://127.0.0.1:{free_port()}/registry"
    for host in ("0.0.0.0", "192.0.2.1", "::"):
        code, _, err = await bastion(
            "proxy", "registry", url, "--host", host, "--client-config", str(config)
        )
        assert code == 2
        assert f"--host {host}: the bridge listens on loopback only" in err
    assert not (tmp_path / "tokens.json").exists()
