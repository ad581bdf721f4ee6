"""``bastion proxy registry --trust | --untrust | --ca-path`` and the bridge's options.

``--trust`` runs with ``PATH`` holding only ``certutil`` and ``HOME`` a temporary directory:
the NSS database it changes is the test's own, and the system store (which this machine's root
could change) is reported as not available instead of being touched.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.client import RegistryClient
from bastion.client.local_ca import LocalCA
from bastion.client.local_trust import nickname
from tests.registry.live_registry import ALICE_SEES, LiveRegistry, names_through
from tests.support.live import free_port

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(
        f'use_keyring = false\nstorage_path = "{tmp_path / "tokens.json"}"\n'
        f'local_ca_dir = "{tmp_path / "local-ca"}"\n'
    )
    return path


@pytest.fixture
def only_certutil(tmp_path: Path) -> dict[str, str]:
    certutil = shutil.which("certutil")
    if certutil is None:
        pytest.fail("certutil is missing (libnss3-tools); scripts/test-setup.sh installs it")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "certutil").symlink_to(certutil)
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": str(tools), "HOME": str(home)}


def nss_names(home: Path) -> str:
    listed = subprocess.run(
        ["certutil", "-L", "-d", f"sql:{home / '.pki' / 'nssdb'}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return listed.stdout


@pytest.mark.parametrize("origin", ["*", "null"])
def test_cli_refuses_an_allow_list_with_any_origin_or_null(
    config: Path, tmp_path: Path, origin: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}/registry"
    result = runner.invoke(
        app,
        ["proxy", "registry", url, "--allow-origin", origin, "--client-config", str(config)],
    )
    assert result.exit_code == 1
    assert "never allows the origin" in result.stderr
    assert not (tmp_path / "tokens.json").exists()  # refused before any sign-in


def test_cli_without_url_or_trust_is_a_usage_error(config: Path) -> None:
    result = runner.invoke(app, ["proxy", "registry", "--client-config", str(config)])
    assert result.exit_code == 2 and "give the registry URL" in result.stderr


def test_cli_ca_path_makes_and_prints_the_ca(config: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["proxy", "registry", "--ca-path", "--client-config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "local-ca" / "ca.pem")
    assert LocalCA(tmp_path / "local-ca").ca_certificate()


def test_cli_trust_installs_into_nss_and_says_what_it_did_and_did_not(
    config: Path, tmp_path: Path, only_certutil: dict[str, str]
) -> None:
    home = Path(only_certutil["HOME"])
    args = ["proxy", "registry", "--client-config", str(config)]
    result = runner.invoke(app, [*args, "--trust"], env=only_certutil)
    assert result.exit_code == 0, result.output
    name = nickname(LocalCA(tmp_path / "local-ca").ca_certificate())
    assert f"done NSS database {home / '.pki' / 'nssdb'}" in result.stdout
    assert f"added {name!r}" in result.stdout
    assert "not done system store" in result.stdout
    assert "update-ca-certificates is not installed" in result.stdout
    assert f"NODE_EXTRA_CA_CERTS={tmp_path / 'local-ca' / 'ca.pem'}" in result.stdout
    listed = nss_names(home)
    assert name in listed and "C,," in listed

    again = runner.invoke(app, [*args, "--trust"], env=only_certutil)
    assert again.exit_code == 0, again.output  # idempotent

    removed = runner.invoke(app, [*args, "--untrust"], env=only_certutil)
    assert removed.exit_code == 0, removed.output
    assert f"removed {name!r}" in removed.stdout
    assert name not in nss_names(home)


def test_cli_trust_without_certutil_prints_the_exact_steps(config: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = runner.invoke(
        app,
        ["proxy", "registry", "--trust", "--client-config", str(config)],
        env={"PATH": str(empty), "HOME": str(home)},
    )
    assert result.exit_code == 1  # nothing could be done: only steps
    ca_file = tmp_path / "local-ca" / "ca.pem"
    assert "certutil is not installed (libnss3-tools)" in result.stdout
    assert "sudo apt-get install libnss3-tools" in result.stdout
    assert f"certutil -d sql:{home}/.pki/nssdb -N --empty-password" in result.stdout
    assert f"-A -t C,, -n '{nickname(LocalCA(ca_file.parent).ca_certificate())}'" in result.stdout
    assert f"-i {ca_file}" in result.stdout
    assert not (home / ".pki").exists()
    assert os.access(ca_file, os.R_OK)


def test_cli_untrust_without_a_ca_makes_none(config: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["proxy", "registry", "--untrust", "--client-config", str(config)])
    assert result.exit_code == 0, result.output
    assert "there is no local CA" in result.stdout
    assert not (tmp_path / "local-ca" / "ca.pem").exists()


async def test_cli_serves_https_with_the_local_ca_and_prints_the_url(
    live: LiveRegistry, tmp_path: Path
) -> None:
    """``bastion proxy registry URL --port PORT`` as a person leaves it running: it prints
    ``https://localhost:PORT``, which a client trusting only the local CA lists through."""
    async with live.authorizer("alice", store="cli") as auth, RegistryClient(live.url, auth) as r:
        await r.ensure_token()  # the CLI reuses the stored token: no browser in a subprocess
    settings = live.client_settings("cli")
    config = tmp_path / "cli.toml"
    config.write_text(
        f'use_keyring = false\nstorage_path = "{settings.storage_path}"\n'
        f'local_ca_dir = "{tmp_path / "local-ca"}"\n'
    )
    port = free_port()
    command = "from bastion.cli.main import main; main()"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        command,
        *("proxy", "registry", live.url, "--port", str(port), "--client-config", str(config)),
        "--no-browser",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        url = f"https://localhost:{port}"
        assert first.decode().strip() == f"Registry bridge for {live.url} at {url}"
        rest = [(await asyncio.wait_for(process.stdout.readline(), 10)).decode() for _ in range(3)]
        assert f'"chat.mcp.gallery.serviceUrl": "{url}"' in rest[0]
        assert "bastion proxy registry --trust" in rest[2]
        context = ssl.create_default_context(cafile=str(tmp_path / "local-ca" / "ca.pem"))
        async with httpx.AsyncClient(base_url=url, verify=context) as http:
            assert await names_through(http, limit="2", version="latest") == ALICE_SEES
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
    assert process.stderr is not None
    logged = (await process.stderr.read()).decode()  # each bridged request, as a person sees it
    assert re.search(r"^\d\d:\d\d:\d\d GET /v0\.1/servers\?\S*limit=2\S* -> 200$", logged, re.M), (
        logged
    )
