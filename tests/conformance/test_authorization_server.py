"""The official MCP conformance suite's authorization-server scenarios against ``bastion serve``.

The suite (npm ``@modelcontextprotocol/conformance``, pinned by scripts/setup-node.sh, run under
Node 22) checks the metadata document (RFC 8414 §3, MCP authorization-server discovery) and one
authorization code grant with PKCE (OAuth 2.1 §4.1, RFC 7636, RFC 8707, RFC 9207). It prints the
authorization URL and waits for a browser; this test is that browser: it signs in, consents, and
follows the redirect to the suite's loopback callback.

``bastion serve`` runs as a real subprocess with a TOML file written here, on SQLite and on
PostgreSQL (the ``backend`` fixture). The client is pre-registered with the redirect URI
``http://127.0.0.1/callback``; the suite uses ``http://127.0.0.1:<port>/callback``, admitted by
loopback port matching (RFC 8252 §7.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from bastion.authserver.admin import add_client
from bastion.config import Settings, load_settings
from bastion.oauth.redirect_uri import matches
from tests.support.flow import PASSWORD, add_user
from tests.support.live import free_port

pytestmark = pytest.mark.conformance

SUITE_TIMEOUT = 120.0  # the suite itself would wait 300 s for the callback
START_TIMEOUT = 30.0
REGISTERED_REDIRECT_URI = "http://127.0.0.1/callback"
CLIENT_ID = "conformance-client"
# Every check the two scenarios emit at 2025-11-25 and later: a skipped or missing scenario fails.
EXPECTED_CHECKS = {
    "authorization-server-metadata",
    "authorization-server-metadata-cimd",
    "authorization-code-grant",
}
FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def conformance_cli() -> str:
    """The wrapper script of the conformance suite (scripts/setup-node.sh prints its path)."""
    path = os.environ.get("BASTION_CONFORMANCE")
    if not path:
        message = (
            "BASTION_CONFORMANCE is not set: run `make test` (it runs scripts/test-setup.sh), or "
            "`export BASTION_CONFORMANCE=$(bash scripts/setup-node.sh)`"
        )
        if os.environ.get("BASTION_REQUIRE_NODE") == "1":
            pytest.fail(message + " (BASTION_REQUIRE_NODE=1)")
        pytest.skip(message)
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"BASTION_CONFORMANCE={path} is not an executable file: rerun scripts/setup-node.sh"
        )
    return path


@dataclass(frozen=True)
class Served:
    """A running ``bastion serve`` with a pre-registered public client and a local user."""

    issuer: str
    client_id: str
    log: Path


def toml_value(value: Any) -> str:
    """A TOML value for a string or a list of tables of strings (JSON strings are TOML strings)."""
    if isinstance(value, list):
        tables = ", ".join(
            "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in item.items()) + "}"
            for item in value
        )
        return f"[{tables}]"
    return json.dumps(value)


def bastion_command() -> list[str]:
    """The ``bastion`` console script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("bastion")
    if not script.is_file():
        pytest.fail(f"{script} is missing: run `make install` (pip install -e '.[dev]')")
    return [str(script)]


@pytest.fixture
async def bastion_serve(tmp_path: Path, backend: dict[str, Any]) -> AsyncIterator[Served]:
    """``bastion serve --config <file>`` on a free loopback port, until the test ends."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {
        "issuer": issuer,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(tmp_path / "data"),
        "secret_key": "conformance-secret-key-that-is-long-enough-0123456789",
        **backend,
        "resources": [{"uri": f"{issuer}/mcp", "name": "demo", "scopes": ["mcp:tools"]}],
    }
    config = tmp_path / "bastion.toml"
    config.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))
    settings: Settings = load_settings(config)
    assert settings.issuer == issuer

    # The redirect URI the suite will use must be admitted by the registered loopback one.
    assert matches("http://127.0.0.1:3000/callback", [REGISTERED_REDIRECT_URI])
    await add_client(
        settings,
        client_id=CLIENT_ID,
        name="MCP conformance suite",
        redirect_uris=[REGISTERED_REDIRECT_URI],
        confidential=False,
        grant_types=["authorization_code", "refresh_token"],
        scope=None,
    )
    await add_user(settings)

    log = tmp_path / "bastion-serve.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *bastion_command(),
            "serve",
            "--config",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            env={k: v for k, v in os.environ.items() if not k.startswith("BASTION_")},
        )
    try:
        await wait_until_serving(proc, issuer, log)
        yield Served(issuer, CLIENT_ID, log)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_until_serving(proc: asyncio.subprocess.Process, issuer: str, log: Path) -> None:
    """Poll the metadata URL until it answers 200; fail with the server log if it never does."""
    metadata = f"{issuer}/.well-known/oauth-authorization-server"
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(int(START_TIMEOUT / 0.1)):
            if proc.returncode is not None:
                break
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(metadata)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    pytest.fail(
        f"bastion serve did not answer {metadata} (exit code {proc.returncode}):\n"
        + log.read_text(errors="replace")
    )


async def sign_in_and_consent(authorization_url: str, issuer: str, callback: str) -> None:
    """Be the suite's browser: /authorize, log-in form, consent form, redirect to the callback."""
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as browser:
        response = await browser.get(authorization_url)
        assert response.status_code == 303, response.text
        location = urljoin(authorization_url, response.headers["location"])
        pages = 0
        while location.startswith(f"{issuer}/interaction/"):
            pages += 1
            assert pages <= 3, f"log-in did not finish; stuck at {location}"
            page = await browser.get(location)
            assert page.status_code == 200, page.text
            action = FORM_ACTION.search(page.text)
            csrf = CSRF.search(page.text)
            assert action, page.text
            assert csrf, page.text
            form = {"csrf": html.unescape(csrf.group(1))}
            if 'name="password"' in page.text:
                form.update(username="alice", password=PASSWORD)
            else:
                form["decision"] = "allow"
            response = await browser.post(
                urljoin(location, html.unescape(action.group(1))), data=form
            )
            assert response.status_code == 303, response.text
            location = urljoin(location, response.headers["location"])
        assert location.startswith(f"{callback}?"), location
        params = parse_qs(urlsplit(location).query)
        assert "error" not in params, location
        assert params["iss"] == [issuer], location
        arrived = await browser.get(location)
        assert arrived.status_code == 200, arrived.text


@dataclass(frozen=True)
class SuiteRun:
    """What the conformance CLI did: exit code, merged stdout/stderr, and every check."""

    returncode: int
    output: str
    checks: list[dict[str, Any]]


async def run_suite(cli: str, served: Served, output_dir: Path, spec_version: str) -> SuiteRun:
    """Run ``conformance authorization`` (both scenarios) and complete its log-in step."""
    callback_port = free_port()
    callback = f"http://127.0.0.1:{callback_port}/callback"
    resource = f"{served.issuer}/mcp"
    proc = await asyncio.create_subprocess_exec(
        cli,
        "authorization",
        "--url",
        served.issuer,
        "--client-id",
        served.client_id,
        "--resource",
        resource,
        "--port",
        str(callback_port),
        "--spec-version",
        spec_version,
        "-o",
        str(output_dir),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SUITE_TIMEOUT
    lines: list[str] = []

    def output() -> str:
        return "".join(lines)

    try:
        authorization_url = None
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), deadline - loop.time())
            if not raw:
                break
            line = raw.decode(errors="replace")
            lines.append(line)
            text = line.strip()
            if text.startswith(f"{served.issuer}/authorize?"):
                authorization_url = text
            if text.startswith("Callback server started"):
                assert authorization_url, f"no {served.issuer}/authorize URL was printed"
                await sign_in_and_consent(authorization_url, served.issuer, callback)
        await asyncio.wait_for(proc.wait(), deadline - loop.time())
    except TimeoutError:
        pytest.fail(f"the conformance suite did not finish in {SUITE_TIMEOUT} s:\n{output()}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- conformance output ---\n{output()}") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    checks = [
        check
        for path in sorted(output_dir.glob("**/checks.json"))
        for check in json.loads(path.read_text())
    ]
    return SuiteRun(proc.returncode, output(), checks)


@pytest.mark.parametrize("spec_version", ["2025-11-25", "2026-07-28"])
async def test_a01_a02_a03_official_conformance_suite_authorization_scenarios_all_pass(
    conformance_cli: str, bastion_serve: Served, tmp_path: Path, spec_version: str
) -> None:
    """MCP authorization, as the official suite checks it: metadata discovery (RFC 8414 §3) with
    ``code_challenge_methods_supported`` and ``client_id_metadata_document_supported``; a public
    client's authorization code grant with PKCE S256 (OAuth 2.1 §4.1, RFC 7636 §4) for a
    ``resource`` (RFC 8707 §2), redirected to a loopback URI on another port (RFC 8252 §7.3) with
    ``iss`` (RFC 9207 §2). Every check of both scenarios is SUCCESS and the suite exits 0."""
    run = await run_suite(conformance_cli, bastion_serve, tmp_path / "conformance", spec_version)

    def report() -> str:
        server_log = bastion_serve.log.read_text(errors="replace")
        return f"--- conformance output ---\n{run.output}--- bastion serve log ---\n{server_log}"

    not_passed = [
        f"{c['id']}: {c['status']} {c.get('errorMessage', '')}".rstrip()
        for c in run.checks
        if c["status"] not in ("SUCCESS", "INFO")
    ]
    assert not not_passed, "checks that did not pass:\n" + "\n".join(not_passed) + "\n" + report()
    seen = {c["id"] for c in run.checks if c["status"] == "SUCCESS"}
    assert seen >= EXPECTED_CHECKS, f"missing checks {EXPECTED_CHECKS - seen}\n{report()}"
    assert run.returncode == 0, report()
