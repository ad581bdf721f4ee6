"""A port that is taken, or a ``--port`` a data directory cannot take: one clear error before
anything is written or printed, exit code 2, never a traceback (real processes)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.quickstart import planned_settings, write_config
from tests.support.live import free_port

BASTION = str(Path(sys.executable).with_name("bastion"))


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", free_port()))
        other.listen()
        yield other.getsockname()[1]


def bastion(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASTION, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_quickstart_with_a_taken_port_writes_nothing_and_shows_no_password(
    tmp_path: Path, taken: int
) -> None:
    """The gateway's port (PORT+1) is taken: no data directory, no admin password printed."""
    done = bastion("quickstart", "--port", str(taken - 1), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert f"port {taken} on 127.0.0.1 (the gateway) is in use by another program" in done.stderr
    assert f"bastion quickstart --port {taken + 999}" in done.stderr
    assert f"make run PORT={taken + 999}" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_later_quickstart_with_another_port_says_why_it_cannot_move(tmp_path: Path) -> None:
    data = tmp_path / "bastion-data"
    write_config(data, 18500)
    before = (data / "bastion.toml").read_text()
    done = bastion("quickstart", "--data-dir", str(data), "--port", "18600", cwd=tmp_path)
    assert done.returncode == 2
    assert "was set up for port 18500" in done.stderr
    assert f"--data-dir {data.resolve()}-18600 --port 18600" in done.stderr
    assert done.stdout == "" and (data / "bastion.toml").read_text() == before


def test_a_later_quickstart_without_port_keeps_the_saved_one(tmp_path: Path) -> None:
    data = tmp_path / "bastion-data"
    write_config(data, 18700)
    assert planned_settings(data, None).port == 18700
    assert planned_settings(data, 18700).gateway.port == 18701
    assert planned_settings(tmp_path / "fresh", None).port == 8000
    assert planned_settings(tmp_path / "fresh", 9100).gateway.port == 9101
    assert not (tmp_path / "fresh").exists()


def config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "bastion.toml"
    path.write_text(
        f'issuer = "http://127.0.0.1:{port}"\nport = {port}\ndata_dir = "{tmp_path / "data"}"\n'
        'secret_key = "port-test-secret-key-long-enough-0123456789"\n'
        f"[gateway]\nport = {port}\n"
        '[[gateway.upstreams]]\nname = "x"\npath = "/x"\nurl = "http://127.0.0.1:9/mcp"\n'
    )
    path.chmod(0o600)  # else a (right) warning about its mode comes first
    return path


@pytest.mark.parametrize(
    "command",
    [["serve"], ["serve", "--workers", "2"], ["gateway"]],
    ids=["serve", "serve-workers", "gateway"],
)
def test_serve_and_gateway_with_a_taken_port_say_so_in_one_line(
    tmp_path: Path, taken: int, command: list[str]
) -> None:
    done = bastion(*command, "--config", str(config(tmp_path, taken)), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert f"error: port {taken} on 127.0.0.1" in line and "is in use by another program" in line
    assert "--port" in line
    assert "Traceback" not in done.stderr
