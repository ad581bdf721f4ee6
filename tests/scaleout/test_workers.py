"""``bastion serve --workers N``: no worker outlives its supervisor (bastion.serve.supervision).

The supervisor alone gets SIGKILL, as the OOM killer or ``kill -9 <main pid>`` would do it. Its
workers must not go on serving the port unsupervised: each one stops, the port is free again,
and the same command starts on it. Every wait is a bounded poll.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from tests.scaleout.processes import running
from tests.support.live import free_port

READY = "/healthz"
DEADLINE = 20.0


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces and parentheses, so split after it.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _workers(pid: int) -> set[int]:
    """uvicorn's worker processes among the children of ``pid``."""
    workers = set()
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            workers.add(child)
    return workers


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_workers_end_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {"issuer": url, "data_dir": str(tmp_path / "data")}
    command = ["serve", "--port", str(port), "--workers", "2", "--log-level", "warning"]

    with running(settings, command, url=url, ready_path=READY) as server:
        deadline = time.monotonic() + DEADLINE
        while len(workers := _workers(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 2, server.output()

        os.kill(server.process.pid, signal.SIGKILL)  # the supervisor only
        server.process.wait(timeout=10)
        deadline = time.monotonic() + DEADLINE
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their supervisor"
        assert not _answers(port), "the port still answers with the supervisor dead"

        server.restart()  # the port is free: the same command starts on it
        assert _answers(port)


def test_workers_on_a_fresh_sqlite_database_migrate_it_one_at_a_time(tmp_path: Path) -> None:
    """``--workers 3`` on a data directory with no database yet: the workers take turns at the
    migrations (one migrates, the others find the schema at head), and all serve."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {"issuer": url, "data_dir": str(tmp_path / "fresh")}
    command = ["serve", "--port", str(port), "--workers", "3", "--log-level", "warning"]
    with running(settings, command, url=url, ready_path="/readyz") as server:
        deadline = time.monotonic() + DEADLINE
        while len(workers := _workers(server.process.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 3, server.output()
        assert "Traceback" not in server.output(), server.output()
