"""``bastion`` processes for the scale-out tests: real ``bastion serve`` servers and CLI runs,
configured through ``BASTION_*`` environment variables (what a deployment's TOML file holds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def bastion_command() -> list[str]:
    """The ``bastion`` console script of this interpreter."""
    script = Path(sys.executable).with_name("bastion")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from bastion.cli.main import main; main()"]


def environment(settings: Mapping[str, Any]) -> dict[str, str]:
    """The process environment for ``settings`` (nested values as JSON), nothing else BASTION_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    for key, value in settings.items():
        env[f"BASTION_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


@dataclass
class Server:
    """A running ``bastion serve``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def serving(
    settings: Mapping[str, Any], ports: list[int], *, workers: int = 1
) -> Iterator[list[Server]]:
    """Start one ``bastion serve`` per port, all at once (as a deployment's processes start),
    and wait until each answers its metadata; stop them all afterwards."""
    servers: list[Server] = []
    try:
        for port in ports:
            fd, name = tempfile.mkstemp(prefix="bastion-serve-", suffix=".log")
            with os.fdopen(fd, "wb") as out:
                process = subprocess.Popen(
                    [
                        *bastion_command(),
                        "serve",
                        "--port",
                        str(port),
                        "--workers",
                        str(workers),
                        "--log-level",
                        "warning",
                    ],
                    env=environment(settings),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                )
            servers.append(Server(f"http://127.0.0.1:{port}", process, Path(name)))
        for server in servers:
            _wait_ready(server)
        yield servers
    finally:
        for server in servers:
            _stop(server.process)
            server.log.unlink(missing_ok=True)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2, trust_env=False) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"bastion serve exited at start:\n{server.output()}")
            try:
                answer = http.get(f"{server.url}/.well-known/oauth-authorization-server")
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"bastion serve did not start in {START_TIMEOUT} s:\n{server.output()}")


def cli(settings: Mapping[str, Any], *args: str) -> str:
    """Run ``bastion <args>`` with ``settings``; its standard output (it must succeed)."""
    done = subprocess.run(
        [*bastion_command(), *args],
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


__all__ = ["Server", "bastion_command", "cli", "environment", "serving"]
