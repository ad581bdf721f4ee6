"""HAProxy in front of bastion replicas for the scale-out tests: Debian's ``haproxy`` (path in
BASTION_HAPROXY, written by scripts/test-setup.sh, else on PATH), run in the foreground with
the deployment's own configuration, ``deploy/haproxy/bastion.cfg``, whose addresses come from
its environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

CONFIG = Path(__file__).parents[2] / "deploy" / "haproxy" / "bastion.cfg"
START_TIMEOUT = 20.0


def haproxy_program() -> str:
    """Where haproxy is; skips the test without it (fails under BASTION_REQUIRE_POSTGRES=1, as
    the scale-out tests run there)."""
    found = os.environ.get("BASTION_HAPROXY") or shutil.which("haproxy")
    if found and Path(found).is_file():
        return found
    message = "the load balancer test needs Debian's haproxy; run scripts/test-setup.sh"
    if os.environ.get("BASTION_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " (BASTION_REQUIRE_POSTGRES=1)")
    pytest.skip(message)


@contextmanager
def balancing(addresses: Mapping[str, str], ready: list[str]) -> Iterator[None]:
    """``haproxy -f deploy/haproxy/bastion.cfg -db`` with ``addresses`` (LB_AS_BIND, LB_AS1…)
    in its environment, until the block ends; first every URL of ``ready`` must answer 200
    through it."""
    program = haproxy_program()
    env = {"PATH": os.environ.get("PATH", ""), **addresses}
    checked = subprocess.run(
        [program, "-c", "-q", "-f", str(CONFIG)], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [program, "-f", str(CONFIG), "-db"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait(process, ready, log)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait(process: subprocess.Popen[bytes], urls: list[str], log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2, trust_env=False) as http:
        for url in urls:
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"haproxy exited:\n{log.read().decode(errors='replace')}")
                try:
                    if http.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not answer 200 through haproxy")
                time.sleep(0.1)


__all__ = ["CONFIG", "balancing", "haproxy_program"]
