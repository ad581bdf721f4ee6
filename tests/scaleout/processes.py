"""``bastion`` processes for the scale-out tests: real ``bastion serve`` servers, other
long-running commands (``bastion gateway``, ``bastion registry serve``) and CLI runs, configured
through ``BASTION_*`` environment variables (what a deployment's TOML file holds)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.live import free_port

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
    """A running ``bastion`` process (``serve``, ``gateway``…), and how it was started, so that
    it can be started again the same way (same port, same database) after :meth:`kill`."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to the process and everything it started (the workers of ``--workers N``),
        as a crash of the host or container would end them: no shutdown, no cleanup."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def freeze(self) -> None:
        """SIGSTOP: the processes stop where they are, holding whatever they have not sent."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, sig: signal.Signals) -> None:
        # Each server is started in a session (and process group) of its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def restart(self) -> None:
        """Start it again as before and wait until it answers (it must have stopped)."""
        if self.process.poll() is None:
            raise RuntimeError("restart() needs a stopped process; kill() it first")
        self.process = _launch(self.command, self.env, self.log)
        _wait_ready(self, self.ready_path)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop), SIGKILL after STOP_TIMEOUT; then SIGKILL to whatever is left
    of its process group, so that no worker outlives a test."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _launch(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # a group of its own, for kill(), freeze() and thaw()
        )


def _start(
    settings: Mapping[str, Any], args: list[str], url: str, program: list[str] | None = None
) -> Server:
    fd, name = tempfile.mkstemp(prefix=f"bastion-{args[0]}-", suffix=".log")
    os.close(fd)
    command, env = [*(program or bastion_command()), *args], environment(settings)
    return Server(url, _launch(command, env, Path(name)), Path(name), command, env)


def _finish(servers: list[Server]) -> None:
    for server in servers:
        _stop(server.process)
        server.log.unlink(missing_ok=True)


@contextmanager
def serving(
    settings: Mapping[str, Any], ports: list[int], *, workers: int = 1
) -> Iterator[list[Server]]:
    """Start one ``bastion serve`` per port, all at once (as a deployment's processes start),
    and wait until each answers its metadata; stop them all afterwards."""
    servers: list[Server] = []
    try:
        for port in ports:
            args = ["serve", "--port", str(port), "--workers", str(workers)]
            url = f"http://127.0.0.1:{port}"
            servers.append(_start(settings, [*args, "--log-level", "warning"], url))
        for server in servers:
            server.ready_path = "/.well-known/oauth-authorization-server"
            _wait_ready(server, server.ready_path)
        yield servers
    finally:
        _finish(servers)


@contextmanager
def running(
    settings: Mapping[str, Any],
    args: list[str],
    *,
    url: str,
    ready_path: str,
    program: list[str] | None = None,
) -> Iterator[Server]:
    """``bastion <args>`` (``gateway``, ``registry serve``…), or ``program`` with ``args``,
    with ``settings`` until the block ends, once GET ``url`` + ``ready_path`` answers 200."""
    server = _start(settings, args, url, program)
    server.ready_path = ready_path
    try:
        _wait_ready(server, ready_path)
        yield server
    finally:
        _finish([server])


@contextmanager
def running_together(
    launches: Sequence[tuple[Mapping[str, Any], list[str], str, str]],
) -> Iterator[list[Server]]:
    """Start ``bastion <args>`` for every (settings, args, url, ready_path) at once, then wait
    until each answers GET ``url`` + ``ready_path`` with 200; stop them all afterwards."""
    servers: list[Server] = []
    try:
        for settings, args, url, ready_path in launches:
            servers.append(_start(settings, args, url))
            servers[-1].ready_path = ready_path
        for server in servers:
            _wait_ready(server, server.ready_path)
        yield servers
    finally:
        _finish(servers)


def _wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2, trust_env=False) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"bastion exited at start:\n{server.output()}")
            try:
                answer = http.get(f"{server.url}{path}")
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"bastion did not start in {START_TIMEOUT} s:\n{server.output()}")


def free_ports(count: int) -> list[int]:
    """``count`` different loopback ports that are free now (see :func:`free_port`)."""
    return [free_port() for _ in range(count)]


def require_postgres(url: str) -> None:
    """Skip the test when nothing listens where the PostgreSQL URL points (fail instead under
    BASTION_REQUIRE_POSTGRES=1, as in CI)."""
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            return
    except OSError:
        message = f"scale-out tests need PostgreSQL; none reachable at {url}"
        if os.environ.get("BASTION_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (BASTION_REQUIRE_POSTGRES=1)")
        pytest.skip(message + "; set BASTION_TEST_POSTGRES_URL")


def cli_run(settings: Mapping[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``bastion <args>`` with ``settings``, whatever its exit status."""
    return subprocess.run(
        [*bastion_command(), *args],
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cli(settings: Mapping[str, Any], *args: str) -> str:
    """Run ``bastion <args>`` with ``settings``; its standard output (it must succeed)."""
    done = cli_run(settings, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


__all__ = [
    "Server",
    "bastion_command",
    "cli",
    "environment",
    "free_ports",
    "require_postgres",
    "running",
    "running_together",
    "serving",
]
