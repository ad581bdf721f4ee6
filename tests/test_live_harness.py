"""The loopback server helper of the integration tests fails one test, never the run: a port
taken or an app whose startup fails is an exception there, not uvicorn's ``SystemExit`` that
stops the event loop of every later test."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse

from tests.support.live import _slice, free_port, serve


async def test_an_app_that_cannot_start_is_an_error_and_the_next_server_runs() -> None:
    with pytest.raises(RuntimeError, match="startup failed"):
        async with serve(PlainTextResponse("no lifespan support")):
            pass
    async with serve(Starlette()) as base, httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/")).status_code == 404


async def test_a_taken_port_names_itself() -> None:
    with socket.socket() as other:
        port = free_port()
        other.bind(("127.0.0.1", port))
        other.listen()
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with serve(Starlette(), port=port):
                pass


def test_free_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10000 <= p < low for p in ports)


def test_xdist_workers_draw_ports_from_shares_that_do_not_overlap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    shares = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        shares.append(range(*_slice()))
        assert free_port() in shares[-1]
    assert shares[0].start == 10000 and shares[-1].stop <= low
    assert all(a.stop <= b.start for a, b in itertools.pairwise(shares))
