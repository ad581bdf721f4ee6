"""`bastion doctor URL`: the table with its marks and fixes, `--json`, the kind flags and exit
codes, against small servers on loopback; `bastion doctor` without a URL keeps checking the
identity providers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bastion.cli.main import app
from tests.client.servers import RedirectingAS, StubResource
from tests.support.live import serve

BASTION = str(Path(sys.executable).with_name("bastion"))
runner = CliRunner()


@pytest.fixture
def client_config(tmp_path: Path) -> Path:
    path = tmp_path / "client.toml"
    path.write_text("use_keyring = false\n")
    return path


@asynccontextmanager
async def chain(**rs_fields: Any) -> AsyncIterator[StubResource]:
    """An authorization server and a resource (broken as ``rs_fields`` say) on loopback."""
    authz = RedirectingAS(token_error="invalid_grant")
    async with serve(authz.app()) as as_base:
        authz.base = as_base
        rs = StubResource(authz.issuer, **rs_fields)
        async with serve(rs.app()) as rs_base:
            rs.base = rs_base
            yield rs


async def bastion(*args: str) -> Result:
    """The CLI in a thread (it runs its own event loop), while the servers serve in this one."""
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def bastion_process(*args: str) -> tuple[int, str]:
    """The installed ``bastion`` as a real process, 250 columns wide."""
    env = {**os.environ, "COLUMNS": "250", "PYTHONIOENCODING": "utf-8"}
    proc = await asyncio.create_subprocess_exec(
        BASTION,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def rows(output: str) -> list[tuple[str, str, str]]:
    """(mark, check, detail) per table row; a cell wrapped over several lines is joined, and the
    fix row (empty mark and check) is returned as its own row."""
    found: list[list[str]] = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) != 5:
            continue
        mark, name, detail = cells[1:4]
        if mark or (name and found) or not found or detail.startswith("fix:"):
            found.append([mark, name, detail])
        else:
            found[-1][2] = f"{found[-1][2]} {detail}".strip()
    return [(m, n, d) for m, n, d in found]


async def test_human_output_marks_each_step_and_prints_the_fix_under_the_failing_one(
    client_config: Path,
) -> None:
    async with chain(serve_metadata=False) as rs:
        code, out = await bastion_process("doctor", rs.url, "--client-config", str(client_config))
    assert code == 1, out
    table = rows(out)
    assert ("✓", "request", f"POST tools/list without a token: HTTP 401 {rs.url}") in table
    marks = {name: mark for mark, name, _ in table if name}
    assert marks["request"] == "✓" and marks["www-authenticate"] == "✓" and marks["prm"] == "✗"
    prm = next(i for i, (_, name, _) in enumerate(table) if name == "prm")
    fix = table[prm + 1][2]
    assert fix.startswith("fix: Serve RFC 9728 metadata") and "mcp oauth: disabled" in fix
    assert re.search(r"\n3 failed: prm-url, prm \(2 ok, 3 fail\)\n", out), out


async def test_a_healthy_chain_exits_0_with_no_fix_printed(client_config: Path) -> None:
    async with chain() as rs:
        code, out = await bastion_process("doctor", rs.url, "--client-config", str(client_config))
    assert code == 0, out
    assert "no step failed" in out and "fix:" not in out and "✗" not in out


async def test_json_output_is_one_document_and_the_exit_code_follows_it(
    client_config: Path,
) -> None:
    async with chain(challenge=False) as rs:
        result = await bastion("doctor", rs.url, "--json", "--client-config", str(client_config))
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["url"] == rs.url and data["kind"] == "mcp"
    failed = [c for c in data["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["www-authenticate"]
    assert "WWW-Authenticate: Bearer" in failed[0]["fix"]


async def test_json_of_a_healthy_chain_exits_0(client_config: Path) -> None:
    async with chain() as rs:
        result = await bastion("doctor", rs.url, "--json", "--client-config", str(client_config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


async def test_registry_flag_forces_the_registry_request(client_config: Path) -> None:
    async with chain() as rs:
        forced = await bastion(
            "doctor", rs.url, "--registry", "--json", "--client-config", str(client_config)
        )
        mcp = await bastion(
            "doctor", rs.url, "--mcp", "--json", "--client-config", str(client_config)
        )
    registry = json.loads(forced.stdout)
    assert registry["kind"] == "registry" and forced.exit_code == 1
    assert registry["checks"][0]["url"] == f"{rs.url}/v0.1/servers?limit=1"
    assert "HTTP 404" in registry["checks"][0]["detail"]
    assert json.loads(mcp.stdout)["kind"] == "mcp" and mcp.exit_code == 0


async def test_config_and_upstream_do_not_go_with_a_url(client_config: Path) -> None:
    result = await bastion("doctor", "https://mcp.example.com/mcp", "--upstream", "google")
    assert result.exit_code == 2 and "--upstream" in result.output


async def test_an_invalid_client_config_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "client.toml"
    bad.write_text('client_metadata_url = "http://example.com/c.json"\n')
    result = await bastion("doctor", "https://mcp.example.com/mcp", "--client-config", str(bad))
    assert result.exit_code == 2 and "client_metadata_url" in result.output


def test_without_url_the_identity_providers_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text(
        f'issuer = "http://127.0.0.1:8123"\ndata_dir = "{tmp_path / "data"}"\n'
        'secret_key = "cli-test-secret-key-long-enough-0123456789"\n'
    )
    result = runner.invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "no identity providers configured" in result.output
