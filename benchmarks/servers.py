"""The processes under test: ``bastion serve``, ``bastion gateway``, plain uvicorn apps.

Each runs as a real uvicorn process configured through ``BASTION_*`` environment variables
(the same settings a deployment would put in its TOML file), logging at warning, pinned to the
server CPU(s) from the moment it starts (``sched_setaffinity`` before ``exec``, so every thread
and every worker process inherits it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bastion_environment(settings: Mapping[str, Any]) -> dict[str, str]:
    """``BASTION_*`` variables for a settings dict (nested models and lists as JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    for key, value in settings.items():
        name = f"BASTION_{key.upper()}"
        env[name] = value if isinstance(value, str) else json.dumps(value)
    # Passed on so that oidc_provider.py finds Node.
    for key in ("BASTION_NODE",):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


@dataclass
class Process:
    """A started server: its base URL and process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _pinned(cpus: frozenset[int] | None) -> Any:
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None

    def pin_self() -> None:
        os.sched_setaffinity(0, cpus)

    return pin_self


@contextlib.contextmanager
def started(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    ready_path: str,
    cpus: frozenset[int] | None = None,
) -> Iterator[Process]:
    """Run ``argv`` until the block ends; wait until GET ``ready_path`` answers below 500."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            list(argv),
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=_pinned(cpus),
        )
    url = f"http://127.0.0.1:{port}"
    server = Process(name, url, process, log)
    try:
        _wait_ready(server, ready_path)
        yield server
    finally:
        stop(process)
        log.unlink(missing_ok=True)


def _wait_ready(server: Process, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2, trust_env=False) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited at start:\n{server.tail()}")
            try:
                if http.get(server.url + path).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not start within {START_TIMEOUT} s:\n{server.tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL; each wait bounded."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def bastion_command() -> list[str]:
    """The ``bastion`` console script beside this interpreter (else the same through -c)."""
    script = Path(sys.executable).with_name("bastion")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from bastion.cli.main import main; main()"]


def bastion_serve(
    settings: Mapping[str, Any], *, port: int, workers: int = 1, cpus: frozenset[int] | None = None
) -> contextlib.AbstractContextManager[Process]:
    """``bastion serve --workers N --log-level warning`` with ``settings``."""
    argv = [*bastion_command(), "serve", "--port", str(port)]
    argv += ["--workers", str(workers), "--log-level", "warning"]
    return started(
        f"bastion-serve-{workers}",
        argv,
        port=port,
        env=bastion_environment(settings),
        ready_path="/.well-known/oauth-authorization-server",
        cpus=cpus,
    )


def bastion_gateway(
    settings: Mapping[str, Any], *, port: int, cpus: frozenset[int] | None = None
) -> contextlib.AbstractContextManager[Process]:
    """``bastion gateway --log-level warning`` with ``settings``."""
    argv = [*bastion_command(), "gateway", "--port", str(port)]
    argv += ["--log-level", "warning"]
    return started(
        "bastion-gateway",
        argv,
        port=port,
        env=bastion_environment(settings),
        ready_path="/.well-known/oauth-protected-resource/missing",
        cpus=cpus,
    )


HAPROXY_CONFIG = ROOT / "deploy" / "haproxy" / "bastion.cfg"


def haproxy_program() -> str | None:
    """Debian's haproxy (BASTION_HAPROXY, else on PATH), or None."""
    found = os.environ.get("BASTION_HAPROXY") or shutil.which("haproxy")
    return found if found and Path(found).is_file() else None


def haproxy(
    program: str, *, port: int, servers: Sequence[int]
) -> contextlib.AbstractContextManager[Process]:
    """HAProxy with the deployment's configuration (``deploy/haproxy/bastion.cfg``), its
    authorization server frontend on ``port`` balancing over the two ``servers`` (ports of
    ``bastion serve``). Its gateway frontend is given a free port and the same servers, and
    stays idle."""
    first, second = servers
    addresses = {
        "LB_AS_BIND": f"127.0.0.1:{port}",
        "LB_GATEWAY_BIND": f"127.0.0.1:{free_port()}",
        "LB_AS1": f"127.0.0.1:{first}",
        "LB_AS2": f"127.0.0.1:{second}",
        "LB_GW1": f"127.0.0.1:{first}",
        "LB_GW2": f"127.0.0.1:{second}",
    }
    return started(
        "haproxy",
        [program, "-f", str(HAPROXY_CONFIG), "-db"],
        port=port,
        env={"PATH": os.environ.get("PATH", ""), **addresses},
        ready_path="/.well-known/oauth-authorization-server",
    )


def uvicorn_app(
    name: str,
    factory: str,
    *,
    port: int,
    env: Mapping[str, str],
    cpus: frozenset[int] | None = None,
    ready_path: str = "/ready",
) -> contextlib.AbstractContextManager[Process]:
    """``uvicorn --factory <factory>`` (uvloop, httptools) at warning, no access log."""
    argv = [sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port)]
    argv += ["--log-level", "warning", "--no-access-log", "--no-server-header"]
    return started(
        name,
        argv,
        port=port,
        env={**os.environ, **env},
        ready_path=ready_path,
        cpus=cpus,
    )


__all__ = [
    "Process",
    "bastion_command",
    "bastion_environment",
    "bastion_gateway",
    "bastion_serve",
    "free_port",
    "haproxy",
    "haproxy_program",
    "started",
    "stop",
    "uvicorn_app",
]
