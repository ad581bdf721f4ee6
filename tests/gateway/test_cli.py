"""`bastion gateway --config FILE`: serves the configured upstreams with uvicorn."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

from bastion.cli.main import app
from tests.support.live import free_port

runner = CliRunner()


def test_gateway_without_upstreams_explains_what_to_configure(tmp_path: Path) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text('issuer = "http://127.0.0.1:8123"\n')
    result = runner.invoke(app, ["gateway", "--config", str(config)])
    assert result.exit_code == 2
    assert "[[gateway.upstreams]]" in result.output


def test_invalid_gateway_configuration_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text('[[gateway.upstreams]]\nname = "x"\npath = "/x"\n')
    result = runner.invoke(app, ["gateway", "--config", str(config)])
    assert result.exit_code == 2
    assert "gateway.upstreams[0]" in result.output  # the first [[gateway.upstreams]]


async def test_gateway_command_serves_the_upstreams_until_interrupted(tmp_path: Path) -> None:
    """The command starts uvicorn on gateway.host/port (here --port) with every upstream
    protected: without a token, 401 pointing at the upstream's metadata (R02)."""
    port = free_port()
    config = tmp_path / "bastion.toml"
    config.write_text(
        'issuer = "http://127.0.0.1:8123"\n'
        f'[gateway]\npublic_url = "http://127.0.0.1:{port}"\n'
        '[[gateway.upstreams]]\nname = "notes"\npath = "/mcp/notes"\n'
        'url = "http://127.0.0.1:9/mcp"\n'
    )
    command = [sys.executable, "-c", "from bastion.cli.main import main; main()"]
    process = subprocess.Popen(
        [*command, "gateway", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    response = await http.post(f"http://127.0.0.1:{port}/mcp/notes", json={})
                    break
                except httpx.ConnectError:
                    assert process.poll() is None, process.stderr.read() if process.stderr else ""
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the gateway did not start within 15 s")
        assert response.status_code == 401
        assert (
            f'resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/'
            'mcp/notes"' in response.headers["www-authenticate"]
        )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        finally:
            if process.stderr:
                process.stderr.close()
    assert process.returncode == 0
