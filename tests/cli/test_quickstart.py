"""`bastion quickstart` as a newcomer runs it (README): a real process, then the README's
client-credentials example against it."""

from __future__ import annotations

import functools
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bastion.registry.access import READ, WRITE
from tests.support.live import free_port

BASTION = str(Path(sys.executable).with_name("bastion"))


def start(
    data_dir: Path, port: int, log: Path, *, umask: int | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [BASTION, "quickstart", "--data-dir", str(data_dir), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=None if umask is None else functools.partial(os.umask, umask),
        )


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"quickstart exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"quickstart did not answer within 30 s:\n{log.read_text()}")


def test_quickstart_serves_prints_the_admin_password_once_and_the_readme_example_works(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    data = tmp_path / "bastion-data"
    log = tmp_path / "first.log"
    proc = start(data, port, log)
    processes.append(proc)
    wait_ready(f"{issuer}/.well-known/oauth-authorization-server", proc, log)
    first = log.read_text()
    assert re.search(r"Admin user\s+admin / \S{16,}\s+\(shown once", first), first
    assert (data / "bastion.toml").is_file() and (data / "secret.key").stat().st_mode & 0o077 == 0

    added = subprocess.run(
        [
            BASTION,
            "clients",
            "add",
            "--name",
            "nightly agent",
            "--confidential",
            "--resource",
            "demo",
            "--resource",
            "demo-stdio",
            "--scope",
            "mcp:tools",
            "--config",
            str(data / "bastion.toml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    client_id = re.search(r"client_id\s+(\S+)", added).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret\s+(\S+)", added).group(1)  # type: ignore[union-attr]
    gateway = f"http://127.0.0.1:{port + 1}"
    resource = f"{gateway}/mcp/demo"
    assert f"MCP server demo-stdio  {gateway}/mcp/demo-stdio" in first
    token = httpx.post(
        f"{issuer}/token",
        auth=(client_id, secret),
        data={"grant_type": "client_credentials", "resource": resource},
    )
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "mcp:tools"

    # The README's next step: the demo server through the gateway, with and without the token.
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "readme", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    refused = httpx.post(resource, json=initialize, headers=headers)
    assert refused.status_code == 401
    assert (
        f'resource_metadata="{gateway}/.well-known/oauth-protected-resource/mcp/demo"'
        in (refused.headers["www-authenticate"])
    )
    for path in ("/mcp/demo", "/mcp/demo-stdio"):
        # Each upstream is its own resource: a token is bound to one audience (RFC 8707).
        own = httpx.post(
            f"{issuer}/token",
            auth=(client_id, secret),
            data={"grant_type": "client_credentials", "resource": f"{gateway}{path}"},
        )
        headers["Authorization"] = f"Bearer {own.json()['access_token']}"
        answered = httpx.post(f"{gateway}{path}", json=initialize, headers=headers, timeout=20)
        assert answered.status_code == 200, answered.text
        assert "bastion-demo" in answered.text

    # The registry on the authorization server's listener lists the demo servers (G01).
    registry = f"{issuer}/registry"
    assert re.search(rf"MCP registry\s+{re.escape(registry)}\n", first), first
    anonymous = httpx.get(f"{registry}/v0.1/servers", params={"limit": 1})
    assert anonymous.status_code == 401
    assert 'realm="mcp-registry"' in anonymous.headers["www-authenticate"]
    read_token = _machine_token(data, issuer, registry, "catalogue reader", READ)
    listed = httpx.get(
        f"{registry}/v0.1/servers",
        params={"version": "latest"},
        headers={"Authorization": f"Bearer {read_token}"},
    )
    assert listed.status_code == 200, listed.text
    entries = {e["server"]["name"]: e["server"] for e in listed.json()["servers"]}
    assert sorted(entries) == ["local.bastion/demo", "local.bastion/demo-stdio"]
    assert entries["local.bastion/demo"]["remotes"] == [
        {"type": "streamable-http", "url": resource}
    ]

    proc.terminate()
    proc.wait(10)
    log2 = tmp_path / "second.log"
    again = start(data, port, log2)
    processes.append(again)
    wait_ready(f"{issuer}/jwks", again, log2)
    second = log2.read_text()
    assert "password set on first run" in second
    assert "shown once" not in second
    # A second start lists the demo servers once, not twice.
    again_listed = httpx.get(
        f"{registry}/v0.1/servers", headers={"Authorization": f"Bearer {read_token}"}
    )
    assert again_listed.json()["metadata"]["count"] == 2

    # Publishing under local.* is for the group editors: a caller outside it, even with the
    # write scope, is refused with the namespace named (G03) and nothing is listed.
    write_token = _machine_token(data, issuer, registry, "outside writer", WRITE)
    document = {
        "$schema": entries["local.bastion/demo"]["$schema"],
        "name": "local.example/notes",
        "description": "Notes.",
        "version": "1.0.0",
    }
    refused = httpx.post(
        f"{registry}/v0.1/publish",
        json=document,
        headers={"Authorization": f"Bearer {write_token}"},
    )
    assert refused.status_code == 403, refused.text
    assert "local.example" in refused.text
    after = httpx.get(f"{registry}/v0.1/servers", headers={"Authorization": f"Bearer {read_token}"})
    assert after.json()["metadata"]["count"] == 2


def test_m3_data_files_are_private_whatever_the_umask(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """With the usual umask 022, the quickstart's data directory is 0700 and its files 0600
    while it runs: bastion.toml, secret.key, bastion.db with its -wal and -shm, audit.jsonl.
    A private path opened up since is named at the next start, with its mode and the fix."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    data = tmp_path / "bastion-data"
    proc = start(data, port, tmp_path / "first.log", umask=0o022)
    processes.append(proc)
    wait_ready(f"{issuer}/.well-known/oauth-authorization-server", proc, tmp_path / "first.log")
    registered = httpx.post(f"{issuer}/register", json={"redirect_uris": ["http://127.0.0.1/cb"]})
    assert registered.status_code == 201, registered.text
    assert httpx.post(f"http://127.0.0.1:{port + 1}/mcp/demo", json={}).status_code == 401
    for _ in range(100):  # the audit record is written once the answer has gone
        if (data / "audit.jsonl").exists():
            break
        time.sleep(0.05)
    files = ["bastion.toml", "secret.key", "bastion.db", "bastion.db-wal", "bastion.db-shm"]
    files.append("audit.jsonl")
    modes = {name: stat.S_IMODE((data / name).stat().st_mode) for name in files}
    assert modes == dict.fromkeys(files, 0o600)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700

    proc.terminate()
    proc.wait(10)
    data.chmod(0o755)
    (data / "bastion.toml").chmod(0o644)
    log = tmp_path / "second.log"
    processes.append(proc := start(data, port, log, umask=0o022))
    wait_ready(f"{issuer}/.well-known/oauth-authorization-server", proc, log)
    text = log.read_text()
    assert f"{data} has mode 0755: other local users can read it; run `chmod 700 {data}`" in text
    config = data / "bastion.toml"
    assert f"{config} has mode 0644: other local users can read it; run `chmod 600 {config}`" in (
        text
    )
    assert "secret.key has mode" not in text


def _machine_token(data: Path, issuer: str, registry: str, name: str, scope: str) -> str:
    """A token for ``registry`` with ``scope`` from a machine client the operator adds with
    ``bastion clients add`` (the CLI, as a person would)."""
    added = subprocess.run(
        [
            *(BASTION, "clients", "add", "--name", name, "--confidential"),
            *("--resource", "registry", "--scope", scope),
            *("--config", str(data / "bastion.toml")),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    client_id = re.search(r"client_id\s+(\S+)", added).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret\s+(\S+)", added).group(1)  # type: ignore[union-attr]
    answer = httpx.post(
        f"{issuer}/token",
        auth=(client_id, secret),
        data={"grant_type": "client_credentials", "resource": registry},
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token
