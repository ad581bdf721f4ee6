"""``/readyz`` of a real ``bastion serve`` process follows its PostgreSQL server going down and
coming back (a cluster of the test's own, stopped as a crash would stop it), and every command
that serves answers both probes.

Every wait is a bounded poll; each probe must answer within the client's timeout (a probe that
hung on the dead database would fail it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ops.private_postgres import PrivateCluster, private_cluster
from tests.scaleout.processes import bastion_command, free_ports, running, serving
from tests.support.live import free_port

SECRET_KEY = "readiness-test-secret-key-0123456789abcdef"
PROBE_TIMEOUT = 10.0  # well above the checks' 2 s: only a hanging probe reaches it
POLLS = 150  # every 0.2 s: at most 30 s


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as found:
        yield found


def _poll(http: httpx.Client, path: str, status: int) -> httpx.Response:
    answer = http.get(path)
    for _ in range(POLLS):
        if answer.status_code == status:
            return answer
        time.sleep(0.2)
        answer = http.get(path)
    raise AssertionError(f"{path} still answers {answer.status_code}: {answer.text}")


@pytest.mark.postgres
def test_readyz_follows_the_database_down_and_back(cluster: PrivateCluster, tmp_path: Path) -> None:
    """Database stopped (pg_ctl stop -m immediate): /readyz answers 503 with the database
    check failed, promptly and without the URL or the error; /healthz stays 200 (the process
    must not be restarted for it). Database started again: ready again."""
    port = free_port()
    settings = {
        "issuer": f"http://127.0.0.1:{port}",
        "data_dir": str(tmp_path / "data"),
        "database_url": cluster.url,
        "secret_key": SECRET_KEY,
    }
    args = ["serve", "--port", str(port), "--log-level", "warning"]
    url = settings["issuer"]
    with (
        running(settings, args, url=url, ready_path="/readyz") as server,
        httpx.Client(base_url=url, timeout=PROBE_TIMEOUT, trust_env=False) as http,
    ):
        ok = {"ok": True}
        assert http.get("/readyz").json() == {
            "status": "ready",
            "checks": {"database": ok, "migrations": ok, "signing_keys": ok},
        }

        cluster.stop()
        down = _poll(http, "/readyz", 503)
        checks = down.json()["checks"]
        assert down.json()["status"] == "not_ready"
        assert checks["database"] == {"ok": False, "reason": "unreachable"}
        assert checks["signing_keys"] == {"ok": True}
        for leak in (cluster.url, str(cluster.port), "postgres", "refused", "Error"):
            assert leak not in down.text, leak
        for _ in range(3):  # every probe answers while the database is down, none hangs
            assert http.get("/readyz").status_code == 503
            assert http.get("/healthz").json() == {"status": "ok"}
        assert "readiness: database failed: unreachable" in server.output()

        cluster.start()
        back = _poll(http, "/readyz", 200)
        assert back.json()["status"] == "ready"
        assert "readiness: database passes again" in server.output()


def test_every_command_answers_both_probes(tmp_path: Path) -> None:
    """``bastion serve --workers 2``, ``bastion gateway``, ``bastion registry serve`` (on an
    origin of its own) and ``bastion quickstart``, each a real process on SQLite."""
    as_port, gateway_port, registry_port, closed_port = free_ports(4)
    issuer = f"http://127.0.0.1:{as_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    registry = f"http://127.0.0.1:{registry_port}"
    environment: dict[str, Any] = {
        "issuer": issuer,
        "data_dir": str(tmp_path / "data"),
        "secret_key": SECRET_KEY,
        "gateway": {
            "enabled": True,
            "public_url": gateway,
            "port": gateway_port,
            "upstreams": [
                {"name": "notes", "path": "/mcp", "url": f"http://127.0.0.1:{closed_port}/mcp"}
            ],
        },
        "registry": {"enabled": True, "public_url": registry, "port": registry_port},
    }
    with (
        serving(environment, [as_port], workers=2),
        running(environment, ["gateway"], url=gateway, ready_path="/readyz"),
        running(environment, ["registry", "serve"], url=registry, ready_path="/readyz"),
    ):
        for url in (issuer, gateway, registry):
            _both_probes(url)

    quick_port = free_port()
    quickstart = ["quickstart", "--data-dir", str(tmp_path / "quick"), "--port", str(quick_port)]
    quick = f"http://127.0.0.1:{quick_port}"
    with running({}, quickstart, url=quick, ready_path="/readyz", program=bastion_command()):
        _both_probes(quick)
        _both_probes(f"http://127.0.0.1:{quick_port + 1}")  # its gateway


def _both_probes(url: str) -> None:
    with httpx.Client(base_url=url, timeout=PROBE_TIMEOUT, trust_env=False) as http:
        assert http.get("/healthz").json() == {"status": "ok"}, url
        ready = http.get("/readyz")
        assert ready.status_code == 200, (url, ready.text)
        assert ready.json()["status"] == "ready"
