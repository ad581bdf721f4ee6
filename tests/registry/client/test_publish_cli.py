"""``bastion registry publish`` and ``bastion token --scope`` as a user runs them: the real
``bastion`` executable in a subprocess against a live AS and registry on loopback; the user
follows each authorization URL the CLI prints (``--no-browser``) at a scripted browser.

Who must not get in comes first: a read-only token, a caller outside the namespace's
publishers, an invalid document (never sent), a scope the user may not get.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.access.admin import allow
from bastion.client import RegistryClient, RegistryError
from bastion.client.dpop import DPoPKey
from bastion.config import Settings
from bastion.registry.access import READ, WRITE
from bastion.registry.audit import export
from bastion.store.database import Database
from tests.cli.test_client_commands import BASTION, BOUND, Cli, Ran, params
from tests.client.browser_user import BrowserUser
from tests.registry.harness import server_json
from tests.registry.live_registry import LiveRegistry, live_registry

GAMMA = "com.acme.team-a/gamma"


async def audit_lines(live: LiveRegistry) -> list[dict[str, Any]]:
    """The registry's audit trail, read from its database."""
    settings = live.settings
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        return [line async for line in export(db)]
    finally:
        await db.dispose()


@pytest.fixture
async def users(live: LiveRegistry) -> AsyncIterator[dict[str, BrowserUser]]:
    """alice and bob at their browsers (cookies kept between their authorizations)."""
    found = {name: BrowserUser(live.issuer, username=name) for name in ("alice", "bob")}
    try:
        yield found
    finally:
        for user in found.values():
            await user.aclose()


def cli_of(live: LiveRegistry, users: dict[str, BrowserUser], name: str) -> Cli:
    return Cli(live.tmp / f"cli-{name}", users[name])


async def read_token(live: LiveRegistry, cli: Cli, username: str) -> dict[str, Any]:
    """Sign ``username`` in for the registry's read scope only (what ``bastion registry search``
    leaves in the token file) and return the stored tokens."""
    ran = (
        await cli("login", live.url, "--registry", "--no-browser", "--client-config", cli.config())
    ).ok()
    assert len(ran.authorizations) == 1
    stored = cli.tokens(live.url)
    assert WRITE not in stored["granted_scopes"]
    return stored


def publishing(live: LiveRegistry, cli: Cli, path: Path) -> tuple[str | Path, ...]:
    """``bastion registry publish PATH`` to the live registry, authorization URLs printed."""
    config = cli.config()
    return (
        "registry",
        "publish",
        path,
        "--registry",
        live.url,
        "--no-browser",
        "--client-config",
        config,
    )


def token_for(live: LiveRegistry, *scopes: str) -> tuple[str, ...]:
    """``bastion token URL --registry --scope S…``, authorization URLs printed."""
    return ("token", live.url, "--registry", *(f"--scope={s}" for s in scopes), "--no-browser")


def write_file(cli: Cli, document: object, name: str = "server.json") -> Path:
    cli.directory.mkdir(parents=True, exist_ok=True)
    path = cli.directory / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


async def visible_to_alice(live: LiveRegistry, name: str) -> list[str]:
    """The versions of ``name`` alice (team-a, its namespace's publisher) can read."""
    async with (
        live.authorizer("alice", store="reader") as auth,
        RegistryClient(live.url, auth) as r,
    ):
        try:
            return [e.version for e in await r.versions(name)]
        except RegistryError as exc:
            if exc.status != 404:
                raise
            return []


# -- who must not get in -------------------------------------------------------------------------


async def test_g02_rfc6750_3_1_a_read_only_token_cannot_publish_and_nothing_is_written(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    """RFC 6750 §3.1: a token with the read scope only gets 403 insufficient_scope whose
    challenge names the write scope; nothing is stored, and the refusal is audited. The token
    the client stored is DPoP-bound (the registry takes DPoP), so it goes with a proof of the
    client's stored key, and the challenge is in the DPoP scheme (RFC 9449 §7.1)."""
    cli = cli_of(live, users, "alice")
    stored = await read_token(live, cli, "alice")
    token = stored["access_token"]
    key = DPoPKey.from_jwk(cli.stored()["dpop_keys"][stored["issuer"]][stored["client_id"]])
    publish = f"{live.url}/v0.1/publish"
    async with httpx.AsyncClient() as http:
        response = await http.post(
            publish,
            json=server_json(GAMMA),
            headers={
                "Authorization": f"DPoP {token}",
                "DPoP": key.proof("POST", publish, access_token=token),
            },
        )
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("DPoP ")
    assert 'error="insufficient_scope"' in challenge
    assert WRITE in challenge.split('scope="', 1)[1].split('"', 1)[0].split()
    assert await visible_to_alice(live, GAMMA) == []
    [record] = [
        r for r in await audit_lines(live) if r["action"] == "publish" and r["server"] == GAMMA
    ]
    assert (record["status"], record["result"]) == (403, "insufficient_scope")


async def test_g02_a_step_up_the_user_refuses_publishes_nothing(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    """MCP step-up: the CLI asks again for the union of scopes; when the user denies it at the
    consent page, the command fails with the AS's answer and nothing is published."""
    cli = cli_of(live, users, "alice")
    await read_token(live, cli, "alice")
    users["alice"].decision = "deny"
    path = write_file(cli, server_json(GAMMA))
    ran = await cli(*publishing(live, cli, path))
    assert ran.code == 1, ran.err
    [step_up] = ran.authorizations
    assert {READ, WRITE} <= set(params(step_up)["scope"].split())
    assert "access_denied" in ran.err
    assert await visible_to_alice(live, GAMMA) == []


async def test_g03_a_caller_outside_the_namespace_is_refused_even_with_the_write_scope(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    """G03: scopes say which kind of operation; the registry's own rule per namespace still
    applies. bob (team-b) holds the write scope and may not publish under com.acme.team-a: the
    registry's problem reaches him as lines he can act on, exit 1, nothing written."""
    cli = cli_of(live, users, "bob")
    config = cli.config()
    got = (await cli(*token_for(live, WRITE), "--client-config", config)).ok()
    assert WRITE in cli.tokens(live.url)["granted_scopes"]
    assert got.out.strip() == cli.tokens(live.url)["access_token"]
    path = write_file(cli, server_json(GAMMA))
    ran = await cli("registry", "publish", path, "--registry", live.url, "--client-config", config)
    assert ran.code == 1
    assert ran.authorizations == []
    assert "HTTP 403" in ran.err
    assert "you may not publish under namespace 'com.acme.team-a'" in ran.err
    assert "body.name: namespace not yours" in ran.err
    assert await visible_to_alice(live, GAMMA) == []
    [record] = [
        r for r in await audit_lines(live) if r["action"] == "publish" and r["server"] == GAMMA
    ]
    assert (record["status"], record["result"]) == (403, "namespace_denied")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {**server_json(GAMMA, description=""), "name": "no-namespace"},
            ["$.description:", "$.name: 'no-namespace' does not match"],
        ),
        (
            server_json(GAMMA, remotes=[{"type": "carrier-pigeon", "url": "https://x.example"}]),
            ["$.remotes[0]"],
        ),
        ('{"name": "com.acme.team-a/x", "name": "twice"}', ["$: member 'name' appears twice"]),
        ("[1, 2]", ["$: must be an object"]),
    ],
)
async def test_invalid_server_json_never_reaches_the_registry(
    live: LiveRegistry, users: dict[str, BrowserUser], document: object, expected: list[str]
) -> None:
    """The registry's own validation runs first: each problem with its JSON path, exit 2, and
    no request at all (no sign-in, no audit record: the registry saw nothing)."""
    cli = cli_of(live, users, "alice")
    before = await audit_lines(live)
    path = write_file(cli, document)
    ran = await cli(*publishing(live, cli, path))
    assert ran.code == 2, ran.err
    assert "nothing was sent to the registry" in ran.err
    for line in expected:
        assert line in ran.err, ran.err
    assert ran.authorizations == [] and ran.out == ""
    assert not cli.storage.exists()
    assert await audit_lines(live) == before


async def test_dry_run_validates_and_shows_the_plan_without_a_request(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    cli = cli_of(live, users, "alice")
    before = await audit_lines(live)
    path = write_file(cli, server_json(GAMMA, groups=["team-a"]))
    common = ("--registry", live.url, "--dry-run", "--client-config", cli.config())
    shown = (await cli("registry", "publish", path, *common)).ok()
    assert f"would publish {GAMMA} 1.0.0 to {live.url}" in shown.out
    assert "members of team-a" in shown.out and "dry run: nothing was sent" in shown.out
    plan = json.loads((await cli("registry", "publish", path, "--json", *common)).ok().out)
    assert plan == {
        "registry": live.url,
        "name": GAMMA,
        "version": "1.0.0",
        "namespace": "com.acme.team-a",
        "groups": ["team-a"],
        "visible_to": plan["visible_to"],
    }
    assert all(not r.authorizations for r in cli.runs)
    assert await audit_lines(live) == before


async def test_rfc6749_3_3_token_scope_the_as_refuses_is_its_error_not_a_token(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    """A scope the AS does not know: its invalid_scope answer, word for word; nothing on
    standard output and nothing stored."""
    cli = cli_of(live, users, "alice")
    ran = await cli(
        "token",
        live.url,
        "--registry",
        "--scope",
        "mcp-registry:everything",
        "--no-browser",
        "--client-config",
        cli.config(),
    )
    assert ran.code == 1
    assert ran.out == ""
    assert "invalid_scope" in ran.err and "unknown scope: mcp-registry:everything" in ran.err
    assert not cli.storage.exists() or live.url not in cli.stored().get("tokens", {})


async def test_rfc6749_3_3_token_scope_the_user_may_not_have_fails_instead_of_a_smaller_token(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    """An access rule lets alice read the registry only. Asking for the write scope alone: the
    AS's own refusal (invalid_scope). Asking with a read token stored (the union: read and
    write): the AS grants read only, which RFC 6749 §3.3 allows; the CLI fails naming the
    missing scope and never prints the smaller token."""
    await allow(live.settings, live.url, "user:alice", [READ])
    cli = cli_of(live, users, "alice")
    config = cli.config()
    asked = token_for(live, WRITE)
    refused = await cli(*asked, "--client-config", config)
    assert refused.code == 1 and refused.out == ""
    assert "invalid_scope" in refused.err and f"alice may not have scope {WRITE}" in refused.err
    await read_token(live, cli, "alice")
    narrowed = await cli(*asked, "--client-config", config)
    assert narrowed.code == 1 and narrowed.out == ""
    [authorization] = narrowed.authorizations
    assert set(params(authorization)["scope"].split()) == {READ, WRITE}
    assert f"granted {READ} for {live.url}, not {WRITE}" in narrowed.err


# -- who may -------------------------------------------------------------------------------------


async def test_g02_mcp_step_up_cli_publish_goes_from_read_to_write_once(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    """MCP "Step-Up Authorization Flow" in the CLI as in the library: with a read-only token,
    publish meets 403 insufficient_scope, says so (and, with --no-browser, which command to run
    instead), authorizes once for the union of the scopes and retries; the next publication
    needs no authorization."""
    cli = cli_of(live, users, "alice")
    config = cli.config()
    stored = await read_token(live, cli, "alice")
    path = write_file(cli, server_json(GAMMA, groups=["team-a"]))
    ran = (await cli(*publishing(live, cli, path))).ok()
    [step_up] = ran.authorizations
    asked = params(step_up)
    assert {READ, WRITE} <= set(asked["scope"].split())
    assert asked["client_id"] == stored["client_id"] and asked["resource"] == live.url
    assert "HTTP 403 insufficient_scope" in ran.err
    assert (
        f"bastion token {live.url} --registry --scope {READ} --scope {WRITE} "
        f"--client-config {config}"
    ) in ran.err
    assert f"publishing {GAMMA} 1.0.0 to {live.url}" in ran.out
    assert f"published {GAMMA} 1.0.0: active (latest)" in ran.out
    assert "members of team-a" in ran.out and "approval    approved" in ran.out
    assert WRITE in cli.tokens(live.url)["granted_scopes"]

    again = write_file(cli, server_json(GAMMA, "1.1.0", groups=["team-a"]), "next.json")
    ran = (
        await cli(
            "registry",
            "publish",
            again,
            "--registry",
            live.url,
            "--json",
            "--client-config",
            config,
        )
    ).ok()
    assert ran.authorizations == []
    answer = json.loads(ran.out)
    assert answer["server"]["version"] == "1.1.0"
    assert answer["_meta"]["dev.mcp-bastion/registry"]["groups"] == ["team-a"]
    assert sorted(await visible_to_alice(live, GAMMA)) == ["1.0.0", "1.1.0"]


async def test_g01_g02_a_first_publication_signs_in_then_steps_up(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    """Nothing stored: the 401 leads to a sign-in for the challenged (read) scope, the 403
    insufficient_scope to one step-up for read and write; then the entry is published."""
    cli = cli_of(live, users, "alice")
    path = write_file(cli, server_json(GAMMA))
    ran = (await cli(*publishing(live, cli, path))).ok()
    first, step_up = ran.authorizations
    assert params(first)["scope"].split() == [READ]
    assert set(params(step_up)["scope"].split()) == {READ, WRITE}
    assert await visible_to_alice(live, GAMMA) == ["1.0.0"]


async def test_token_scope_then_publish_from_stdin_with_registry_url_from_the_config(
    live: LiveRegistry, users: dict[str, BrowserUser]
) -> None:
    """``bastion token --scope`` gets a write token once (a script's way); a second call with
    the same scopes reuses it; publish reads standard input and the configured registry_url."""
    cli = cli_of(live, users, "alice")
    config = cli.config(registry_url=live.url)
    first = (await cli(*token_for(live, READ, WRITE), "--client-config", config)).ok()
    assert len(first.authorizations) == 1
    second = (
        await cli("token", live.url, "--registry", "--scope", WRITE, "--client-config", config)
    ).ok()
    assert second.authorizations == [] and second.out == first.out
    path = write_file(cli, server_json(GAMMA, "2.0.0"))
    ran = await cli_stdin(cli, path, "registry", "publish", "-", "--client-config", config)
    assert ran.code == 0, ran.err
    assert f"published {GAMMA} 2.0.0" in ran.out
    assert await visible_to_alice(live, GAMMA) == ["2.0.0"]


async def cli_stdin(cli: Cli, stdin: Path, *args: str | Path) -> Ran:
    """Run ``bastion`` with a file on standard input (no browser expected)."""
    with stdin.open("rb") as source:
        proc = await asyncio.create_subprocess_exec(
            BASTION,
            *map(str, args),
            stdin=source,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(BOUND):
            out, error = await proc.communicate()
    return Ran(proc.returncode or 0, out.decode(), error.decode(), [])


async def test_publish_says_who_sees_an_entry_that_waits_for_approval(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """G04: on a registry that approves publications by hand, the answer's approval state is
    shown: until an admin approves it, only the publisher and the registry's admins see it."""
    async with live_registry(make_settings, tmp_path, approve_on_publish=False) as live:
        user = BrowserUser(live.issuer, username="alice")
        try:
            cli = Cli(live.tmp / "cli-alice", user)
            config = cli.config()
            (await cli(*token_for(live, WRITE), "--client-config", config)).ok()
            path = write_file(cli, server_json(GAMMA))
            ran = (await cli(*publishing(live, cli, path))).ok()
        finally:
            await user.aclose()
    assert ran.authorizations == []
    assert (
        "visible to  only you (its publisher) and the registry's admins until approved; then "
        "every reader of the registry"
    ) in ran.out
    assert "approval    waiting for a registry admin" in ran.out


async def test_rfc6749_3_3_a_scope_that_is_not_a_scope_token_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    """Bad input exits with code 2 and names the value; no server is asked (none runs)."""
    cli = Cli(tmp_path / "cli", BrowserUser("http://127.0.0.1:9"))
    try:
        for bad in ('a"b', "back\\slash", " "):
            ran = await cli(
                "token", "http://127.0.0.1:9/mcp", "--scope", bad, "--client-config", cli.config()
            )
            assert ran.code == 2, ran.err
            assert "--scope" in ran.err and ran.authorizations == []
    finally:
        await cli.user.aclose()
    assert not cli.storage.exists()
