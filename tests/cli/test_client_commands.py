"""``bastion login | logout | token | whoami | tools | call`` as a user runs them: the real
``bastion`` executable in a subprocess against bastion's AS, gateway and the demo MCP server on
loopback.

The client configuration is a temporary ``client.toml`` (``use_keyring = false``) whose token file
lives in the test's directory. ``--no-browser`` makes the CLI print each authorization URL on
stderr; the test reads it there and signs in and consents over HTTP as the user would
(:class:`~tests.client.browser_user.BrowserUser`), so every authorization a command needs is
counted.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bastion.authserver.app import create_app
from bastion.config import Settings
from bastion.demo.server import demo_app
from bastion.gateway import create_gateway_app
from tests.client.browser_user import BrowserUser
from tests.support.clients import machine_client
from tests.support.flow import add_user
from tests.support.live import free_port, serve

BASTION = str(Path(sys.executable).with_name("bastion"))
# Every command, and the browser's part of it, finishes within this many seconds.
BOUND = 60
# The AS's access-token lifetime; a client with expiry_skew >= this refreshes before every use.
ACCESS_TTL = 300
TOOLS = {"echo", "add", "list_notes", "add_note"}
MACHINE_ID = "nightly-agent"
HELLO = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl"}}
AUTHORIZATION_URL = re.compile(r"^\s*(http://127\.0\.0\.1:\d+/authorize\?\S+)\s*$")


@pytest.fixture
def backend(tmp_path: Path) -> dict[str, Any]:
    """SQLite only: these tests are about the command line (the authorization server's own tests
    run on PostgreSQL too)."""
    return {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"}


@dataclass
class Stack:
    """bastion's AS and gateway with the demo server behind ``url``; a machine client."""

    issuer: str
    url: str
    machine_secret: str

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662, authenticated as the (confidential) machine client."""
        async with httpx.AsyncClient(timeout=BOUND) as http:
            response = await http.post(
                f"{self.issuer}/introspect",
                data={"token": token},
                auth=(MACHINE_ID, self.machine_secret),
            )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
async def stack(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    """The demo server over streamable HTTP behind the gateway at /mcp/demo (add_note needs
    notes:write: step-up; list_notes the group editors, which nobody has); short-lived access
    tokens; a pre-registered client_credentials client for machines."""
    as_port, gateway_port = free_port(), free_port()
    issuer, gateway = f"http://127.0.0.1:{as_port}", f"http://127.0.0.1:{gateway_port}"
    async with serve(demo_app()) as demo_base:
        upstream = {
            "name": "demo",
            "path": "/mcp/demo",
            "url": f"{demo_base}/mcp",
            "scopes": ["mcp:tools"],
            "policy": {
                "default": ["mcp:tools"],
                "tools": {"add_note": ["notes:write"]},
                "tool_groups": {"list_notes": ["editors"]},
            },
        }
        settings = make_settings(
            issuer=issuer,
            resources=[],
            tokens={"access_token_ttl": ACCESS_TTL},
            gateway={"enabled": True, "public_url": gateway, "upstreams": [upstream]},
        )
        await add_user(settings)
        machine = await machine_client(
            settings,
            client_id=MACHINE_ID,
            name="nightly agent",
            introspects=["*"],  # it also stands in for a resource server that introspects
        )
        async with (
            serve(create_app(settings), port=as_port),
            serve(create_gateway_app(settings), port=gateway_port),
        ):
            yield Stack(issuer, f"{gateway}/mcp/demo", machine.secret)


@dataclass
class Ran:
    """One finished ``bastion`` command."""

    code: int
    out: str
    err: str
    authorizations: list[str]

    def ok(self) -> Ran:
        assert self.code == 0, f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return self


@dataclass
class Cli:
    """Runs ``bastion`` with ``--client-config`` and plays the user at the browser."""

    directory: Path
    user: BrowserUser
    runs: list[Ran] = field(default_factory=list)

    @property
    def storage(self) -> Path:
        return self.directory / "tokens.json"

    def config(self, name: str = "client", body: str = "", **settings: Any) -> Path:
        """A client.toml with the token file of this test (keys of ClientSettings)."""
        values = {
            "use_keyring": False,
            "storage_path": str(self.storage),
            "callback_timeout": BOUND / 2,
            "expiry_skew": 0,  # the token is used as long as it lives (ACCESS_TTL)
            **settings,
        }
        lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n" + body)
        return path

    async def __call__(self, *args: str | Path) -> Ran:
        proc = await asyncio.create_subprocess_exec(
            BASTION,
            *map(str, args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        stderr, opened = proc.stderr, []
        lines: list[str] = []

        async def read_stderr() -> None:
            async for raw in stderr:
                line = raw.decode()
                lines.append(line)
                found = AUTHORIZATION_URL.match(line)
                if found:
                    opened.append(found.group(1))
                    await self.user(found.group(1))

        try:
            async with asyncio.timeout(BOUND):
                out, _ = await asyncio.gather(proc.stdout.read(), read_stderr())
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        ran = Ran(code, out.decode(), "".join(lines), opened)
        assert "Traceback" not in ran.err, ran.err
        self.runs.append(ran)
        return ran

    def stored(self) -> dict[str, Any]:
        """The token file as the CLI left it."""
        document: dict[str, Any] = json.loads(self.storage.read_text())
        return document

    def tokens(self, url: str) -> dict[str, Any]:
        [(issuer, tokens)] = self.stored()["tokens"][url].items()
        assert tokens["issuer"] == issuer
        return dict(tokens)


@pytest.fixture
async def cli(stack: Stack, tmp_path: Path) -> AsyncIterator[Cli]:
    user = BrowserUser(stack.issuer)
    try:
        yield Cli(tmp_path / "client", user)
    finally:
        await user.aclose()


@pytest.fixture
async def logged_in(stack: Stack, cli: Cli) -> Ran:
    """``bastion login URL --no-browser``: one authorization, its URL read from stderr."""
    ran = (await cli("login", stack.url, "--no-browser", "--client-config", cli.config())).ok()
    assert len(ran.authorizations) == 1
    return ran


def params(url: str) -> dict[str, str]:
    return {k: v for k, [v] in parse_qs(urlsplit(url).query).items()}


async def test_c12_c13_c15_login_once_then_token_whoami_tools_and_call_reuse_the_tokens(
    stack: Stack, cli: Cli, logged_in: Ran
) -> None:
    """login authorizes in the browser (PKCE, resource = the server, C12) and stores the tokens
    in the 0600 token file; token, whoami, tools and call then use them without another
    authorization; a tool that needs more scope gets exactly one more (step-up, C15)."""
    config = cli.config()
    [authorization] = logged_in.authorizations
    asked = params(authorization)
    assert (asked["resource"], asked["code_challenge_method"]) == (stack.url, "S256")
    assert asked["scope"].split()[0] == "mcp:tools"
    assert stat.S_IMODE(cli.storage.stat().st_mode) == 0o600
    stored = cli.tokens(stack.url)
    assert (stored["issuer"], stored["resource"]) == (stack.issuer, stack.url)
    # login says who, where, which scopes, until when.
    assert f"logged in to {stack.url}" in logged_in.out
    for shown in (stack.issuer, stored["client_id"], "mcp:tools", "unverified", "sub"):
        assert shown in logged_in.out, logged_in.out

    # The same tokens serve every command that follows (run side by side).
    printed, facts_json, facts, listed_json, listed, echoed, added = await asyncio.gather(
        cli("token", stack.url, "--no-browser", "--client-config", config),
        cli("whoami", stack.url, "--json", "--client-config", config),
        cli("whoami", stack.url, "--client-config", config),
        cli("tools", stack.url, "--json", "--no-browser", "--client-config", config),
        cli("tools", stack.url, "--no-browser", "--client-config", config),
        cli("call", stack.url, "echo", '{"text": "hi"}', "--no-browser", "--client-config", config),
        cli("call", stack.url, "add", '{"a": 2, "b": 3}', "--json", "--client-config", config),
    )
    assert [len(r.authorizations) for r in cli.runs] == [1] + [0] * 7
    assert cli.tokens(stack.url)["access_token"] == stored["access_token"]

    # token: the stored access token, alone on stdout (C13). The server takes DPoP, so the token
    # is bound to the client's key (dpop = "auto"): standard error says so, and the server
    # refuses it as Bearer (RFC 9449 §7.2), as a token copied out of the client must be.
    assert printed.ok().out == stored["access_token"] + "\n"
    assert stored["token_type"] == "DPoP" and "DPoP" in printed.err
    async with httpx.AsyncClient(timeout=BOUND) as http:
        response = await http.post(
            stack.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": HELLO},
            headers={
                "Authorization": f"Bearer {printed.out.strip()}",
                "Accept": "application/json, text/event-stream",
            },
        )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"

    # whoami: the stored facts and the access token's claims, marked unverified.
    shown = json.loads(facts_json.ok().out)
    assert shown["server"] == shown["resource"] == stack.url
    assert (shown["issuer"], shown["client_id"]) == (stack.issuer, stored["client_id"])
    assert shown["grant_type"] == "authorization_code"
    assert "mcp:tools" in shown["scopes"] and shown["refresh_token"] is True
    assert shown["expired"] is False and 0 < shown["expires_in"] <= ACCESS_TTL
    claims = shown["unverified_claims"]
    assert claims["client_id"] == stored["client_id"] and claims["sub"] in logged_in.out
    assert claims["aud"] in (stack.url, [stack.url])
    lines = facts.ok().out.splitlines()
    assert f"issuer         {stack.issuer}" in lines and "refresh token  held" in lines
    assert f"  sub          {claims['sub']}" in lines
    assert "access token   a JWT; its claims, unverified (not checked here):" in lines
    assert re.search(r"expires\s+in \d+[ms]( \d+s)? \(\d{4}-\d\d-\d\dT", facts.out), facts.out

    # tools: every tool with its required arguments.
    tools = {t["name"]: t for t in json.loads(listed_json.ok().out)}
    assert set(tools) == TOOLS
    assert tools["echo"]["inputSchema"]["required"] == ["text"]
    table = listed.ok().out
    assert re.search(r"echo\s+.*Return the text unchanged\.\s+.*text", table), table
    assert re.search(r"add\s+.*Add two numbers\.\s+.*a, b", table), table

    # call: the text content, or the structured content with --json.
    assert echoed.ok().out == "hi\n"
    assert json.loads(added.ok().out) == {"result": 5.0}

    # Step-up (C15): add_note needs notes:write: one more authorization (consent only, the
    # browser session is still signed in) for the union of scopes, then the call succeeds.
    noted = await cli(
        "call",
        stack.url,
        "add_note",
        '{"text": "from the CLI"}',
        "--no-browser",
        "--client-config",
        config,
    )
    assert noted.ok().out == "note 1 saved\n"
    # The terminal says why the browser asks again, and what to run without one.
    told = " ".join(noted.err.split())
    assert "needs scope mcp:tools notes:write to call add_note" in told, noted.err
    assert "HTTP 403 insufficient_scope" in told and "step-up" in told
    assert f"bastion token {stack.url} --scope mcp:tools --scope notes:write" in told
    [step_up] = noted.authorizations
    assert {"mcp:tools", "notes:write"} <= set(params(step_up)["scope"].split())
    assert params(step_up)["client_id"] == stored["client_id"]
    assert "notes:write" in cli.tokens(stack.url)["granted_scopes"]
    assert len(cli.stored()["clients"]) == 1  # registered once (DCR), reused


async def test_c16_an_expired_token_is_refreshed_without_login_and_logout_revokes_the_grant(
    stack: Stack, cli: Cli, logged_in: Ran
) -> None:
    """A token about to expire is refreshed with the stored refresh token (no browser, C16), also
    by a new process; logout forgets the tokens and revokes the grant at the AS (RFC 7009):
    afterwards introspection calls the access token inactive and the refresh token is refused."""
    before = cli.tokens(stack.url)
    assert before["refresh_token"]
    # expiry_skew >= the token's lifetime: every use finds it about to expire.
    eager = cli.config("eager", expiry_skew=ACCESS_TTL)
    first = (await cli("token", stack.url, "--no-browser", "--client-config", eager)).ok()
    refreshed = cli.tokens(stack.url)
    assert first.out.strip() == refreshed["access_token"] != before["access_token"]
    assert refreshed["refresh_token"] != before["refresh_token"]  # rotated (public client)
    assert refreshed["obtained_at"] > before["obtained_at"]
    called = await cli("call", stack.url, "echo", '{"text": "again"}', "--client-config", eager)
    assert called.ok().out == "again\n"
    latest = cli.tokens(stack.url)
    assert latest["access_token"] != refreshed["access_token"]
    assert [len(r.authorizations) for r in cli.runs] == [1, 0, 0]
    assert (await stack.introspect(latest["access_token"]))["active"] is True

    out = (await cli("logout", stack.url, "--client-config", cli.config())).ok()
    assert f"forgot the tokens for {stack.url}" in out.out
    assert f"revoked: refresh_token revoked at {stack.issuer}/revoke" in out.out
    assert stack.url not in cli.stored()["tokens"]
    assert (await stack.introspect(latest["access_token"]))["active"] is False
    async with httpx.AsyncClient(timeout=BOUND) as http:
        response = await http.post(
            f"{stack.issuer}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": latest["refresh_token"],
                "client_id": latest["client_id"],
                "resource": stack.url,
            },
        )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")

    gone = await cli("whoami", stack.url, "--client-config", cli.config())
    assert gone.code == 1
    assert f"no tokens stored for {stack.url}; log in with `bastion login {stack.url}`" in gone.err
    again = (await cli("logout", stack.url, "--client-config", cli.config())).ok()
    assert f"no tokens were stored for {stack.url}" in again.out


def machine_config(cli: Cli, stack: Stack, **settings: Any) -> Path:
    """A client.toml with the pre-registered client_credentials client."""
    body = (
        "[[pre_registered]]\n"
        f'issuer = "{stack.issuer}"\n'
        f'client_id = "{MACHINE_ID}"\n'
        f'client_secret = "{stack.machine_secret}"\n'
        'grant_type = "client_credentials"\n'
    )
    return cli.config("machine", body, **settings)


async def test_c06_a_pre_registered_client_credentials_client_needs_no_browser(
    stack: Stack, cli: Cli
) -> None:
    """Pre-registered credentials come first (C06): with a client_credentials client in
    client.toml, call and token work with no authorization URL at all; tool errors and unknown
    tools exit non-zero with a message; logout --no-revoke only forgets the token, logout
    revokes it."""
    config = machine_config(cli, stack)
    # From an empty token store: call gets a token with the client credentials grant.
    called = await cli("call", stack.url, "echo", '{"text": "nightly"}', "--client-config", config)
    assert called.ok().out == "nightly\n"
    stored = cli.tokens(stack.url)
    assert (stored["grant_type"], stored["client_id"]) == ("client_credentials", MACHINE_ID)
    assert stored["refresh_token"] is None

    printed, facts, wrong, unknown = await asyncio.gather(
        cli("token", stack.url, "--client-config", config),
        cli("whoami", stack.url, "--json", "--client-config", config),
        cli("call", stack.url, "add", '{"a": "two", "b": 3}', "--client-config", config),
        cli("call", stack.url, "no_such_tool", "--client-config", config),
    )
    assert printed.ok().out == stored["access_token"] + "\n"
    shown = json.loads(facts.ok().out)
    assert (shown["grant_type"], shown["refresh_token"]) == ("client_credentials", False)
    assert shown["unverified_claims"]["client_id"] == MACHINE_ID
    # The tool reports an error (isError): its text on stderr, exit code 1.
    assert wrong.code == 1 and wrong.out == ""
    assert "error: the tool add reported an error" in wrong.err
    assert "validation error" in wrong.err.lower(), wrong.err
    assert unknown.code == 1 and unknown.out == ""
    assert "Unknown tool: no_such_tool" in unknown.err, unknown.err

    # logout --no-revoke only forgets: the token stays valid at the AS.
    kept = stored["access_token"]
    forgot = (await cli("logout", stack.url, "--no-revoke", "--client-config", config)).ok()
    assert f"forgot the tokens for {stack.url}" in forgot.out and "revoked" not in forgot.out
    assert stack.url not in cli.stored()["tokens"]
    assert (await stack.introspect(kept))["active"] is True
    # logout revokes the access token (there is no refresh token).
    token = (await cli("token", stack.url, "--client-config", config)).ok().out.strip()
    assert token != kept and (await stack.introspect(token))["active"] is True
    out = (await cli("logout", stack.url, "--client-config", config)).ok()
    assert f"revoked: access_token revoked at {stack.issuer}/revoke" in out.out
    assert (await stack.introspect(token))["active"] is False
    assert all(r.authorizations == [] for r in cli.runs)


async def test_a_static_authorization_header_disables_oauth_for_that_url(
    stack: Stack, cli: Cli
) -> None:
    """static_headers: the configured header is sent as is (tools works with nothing stored and
    no authorization); token and login refuse, whoami says OAuth is disabled there. The token
    for the header comes from ``bastion token`` with ``dpop = "never"``, as docs/client.md says
    for scripts that send it as Bearer."""
    bearer_config = machine_config(cli, stack, dpop="never")
    token = (await cli("token", stack.url, "--client-config", bearer_config)).ok()
    other = cli.directory / "other.json"

    def static(name: str, value: str) -> Path:
        body = f'[static_headers]\n"{stack.url}" = "{value}"\n'
        return cli.config(name, body, storage_path=str(other))

    config, wrong = static("static", f"Bearer {token.out.strip()}"), static("wrong", "Bearer x")
    listed, refused_token, refused_login, shown, unauthorized = await asyncio.gather(
        cli("tools", stack.url, "--json", "--client-config", config),
        cli("token", stack.url, "--client-config", config),
        cli("login", stack.url, "--no-browser", "--client-config", config),
        cli("whoami", stack.url, "--json", "--client-config", config),
        cli("tools", stack.url, "--no-browser", "--client-config", wrong),
    )
    assert {t["name"] for t in json.loads(listed.ok().out)} == TOOLS
    assert refused_token.code == 1
    assert f"a static Authorization header is configured for {stack.url}" in refused_token.err
    assert refused_login.code == 1 and "OAuth is disabled there" in refused_login.err
    assert json.loads(shown.ok().out) == {"server": stack.url, "static_header": True}
    # A static header the server refuses is not replaced by OAuth: the 401 is the answer.
    assert unauthorized.code == 1 and unauthorized.out == ""
    refusal = f"the server refused the request: HTTP 401 to POST {stack.url} with WWW-Authenticate"
    assert refusal in unauthorized.err and 'error="invalid_token"' in unauthorized.err
    assert all(r.authorizations == [] for r in cli.runs) and not other.exists()


async def test_a_refusal_no_scope_can_fix_says_the_servers_reason_and_asks_no_browser(
    stack: Stack, cli: Cli
) -> None:
    """A tool only for a group the caller is not in: the gateway's 403 ``access_denied`` says
    why (RFC 6750 §3.1 ``error_description``) and the terminal shows it, instead of a bare
    status; there is no step-up, since no scope would help."""
    config = machine_config(cli, stack)
    refused = await cli("call", stack.url, "list_notes", "--client-config", config)
    assert refused.code == 1 and refused.out == ""
    assert (
        f"the server refused the request: HTTP 403 to POST {stack.url}: access_denied: tool "
        f"list_notes is only for members of group editors, and the machine client {MACHINE_ID} "
        "is not a member; a machine client has no groups"
    ) in refused.err
    assert refused.authorizations == []


async def test_call_refuses_arguments_that_are_not_a_json_object(tmp_path: Path) -> None:
    """The arguments are checked before any request: exit code 2 and what to pass instead."""
    cli = Cli(tmp_path, BrowserUser("http://127.0.0.1:9"))
    url, config = f"http://127.0.0.1:{free_port()}/mcp", cli.config()
    cases = {
        "{not json": "the tool arguments are not valid JSON (Expecting property name",
        '["a"]': "the tool arguments must be a JSON object, not a JSON array",
        '"text"': "the tool arguments must be a JSON object, not a JSON string",
    }
    try:
        ran = await asyncio.gather(
            *(cli("call", url, "echo", arguments, "--client-config", config) for arguments in cases)
        )
    finally:
        await cli.user.aclose()
    for message, refused in zip(cases.values(), ran, strict=True):
        assert refused.code == 2 and refused.out == ""
        assert message in refused.err and 'e.g. \'{"text": "hello"}\'' in refused.err, refused.err


async def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    """Nothing listens at the URL: tools, call and token say so and exit 1, no traceback."""
    cli = Cli(tmp_path, BrowserUser("http://127.0.0.1:9"))
    url = f"http://127.0.0.1:{free_port()}/mcp"
    config = cli.config()
    try:
        listed, called, token = await asyncio.gather(
            cli("tools", url, "--client-config", config),
            cli("call", url, "echo", '{"text": "x"}', "--client-config", config),
            cli("token", url, "--no-browser", "--client-config", config),
        )
    finally:
        await cli.user.aclose()
    for ran in (listed, called):
        assert ran.code == 1 and ran.out == ""
        assert f"cannot reach the server POST {url}" in ran.err, ran.err
    assert token.code == 1 and token.out == ""
    assert f"cannot reach {url}: request failed: ConnectError" in token.err, token.err
