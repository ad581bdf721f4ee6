"""A PostgreSQL cluster of a test's own, which the test may stop and start: Debian's server
binaries (``/usr/lib/postgresql/<version>/bin``), a data directory in a fresh temporary
directory, loopback on a free port, trust authentication.

PostgreSQL refuses to run as root; under root (CI containers) the cluster runs as the
``postgres`` user that Debian's package creates (``runuser``), otherwise as the current user.
Without the binaries the test skips, unless BASTION_REQUIRE_POSTGRES=1, where it fails
(``scripts/test-setup.sh`` installs them).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.live import free_port

START_TIMEOUT = 60


def _binaries() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def _owner() -> str | None:
    """The user the cluster runs as: ``postgres`` under root, else None (the current user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root needs the postgres user (Debian's postgresql package)")
    return "postgres"


@dataclass
class PrivateCluster:
    """A cluster this test owns; :meth:`stop` and :meth:`start` as an outage would."""

    bin: Path
    data: Path
    port: int
    owner: str | None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=START_TIMEOUT, check=False
        )
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data.parent}"
        log = str(self.data.parent / "server.log")
        wait = ["-w", "-t", str(START_TIMEOUT)]
        self._run("pg_ctl", "start", *wait, "-D", str(self.data), "-l", log, "-o", options)

    def stop(self) -> None:
        """Stop at once, as a crash would: no checkpoint, connections cut."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A fresh cluster, started; stopped and removed afterwards."""
    bin = _binaries()
    if bin is None:
        message = "no PostgreSQL server binaries under /usr/lib/postgresql (apt install postgresql)"
        if os.environ.get("BASTION_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (BASTION_REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    owner = _owner()
    # Not pytest's tmp_path: under root it is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="bastion-pg-"))
    if owner is not None:
        shutil.chown(root, owner)
    cluster = PrivateCluster(bin, root / "data", free_port(), owner)
    try:
        where = ["-D", str(cluster.data), "-U", "postgres"]
        cluster._run("initdb", *where, "-A", "trust", "-E", "UTF8", "--no-sync")
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["PrivateCluster", "private_cluster"]
