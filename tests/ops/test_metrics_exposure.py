"""The metrics are on a listener of their own: the public listeners (the authorization server,
a registry on its own origin, the gateway) answer ``/metrics`` as any path they do not serve,
also when metrics are on; and ``[metrics] listen`` is checked at start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from starlette.applications import Starlette

from bastion.authserver.app import create_app
from bastion.config import Settings
from bastion.gateway.app import create_gateway_app
from bastion.registry.app import create_registry_app
from tests.scaleout.processes import running
from tests.support.live import free_port, serve

BASTION = str(Path(sys.executable).with_name("bastion"))
UNKNOWN = "/no-such-path-anywhere"


def _public_apps(make_settings: Callable[..., Settings]) -> dict[str, Starlette]:
    """Each public app of one configuration with metrics on."""
    issuer_port, registry_port, gateway_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{issuer_port}"
    settings = make_settings(
        issuer=issuer,
        metrics={"listen": f"127.0.0.1:{free_port()}"},
        registry={
            "enabled": True,
            "public_url": f"http://127.0.0.1:{registry_port}",
            "port": registry_port,
        },
        gateway={
            "enabled": True,
            "public_url": f"http://127.0.0.1:{gateway_port}",
            "upstreams": [
                {"name": "demo", "path": "/mcp/demo", "url": "http://127.0.0.1:9/mcp"},
            ],
        },
    )
    return {
        "authorization server": create_app(settings),
        "registry": create_registry_app(settings),
        "gateway": create_gateway_app(settings),
    }


async def test_no_public_listener_answers_metrics(make_settings: Callable[..., Settings]) -> None:
    """GET /metrics on each public listener is answered exactly as an unknown path: the same
    status and body, and not one ``bastion_`` or ``# HELP`` line."""
    for name, app in _public_apps(make_settings).items():
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            unknown = await http.get(UNKNOWN)
            for method in ("GET", "POST"):
                answer = await http.request(method, "/metrics")
                assert answer.status_code == unknown.status_code == 404, (name, answer.text)
                assert answer.text == unknown.text.replace(UNKNOWN, "/metrics"), name
                assert "bastion_" not in answer.text and "# HELP" not in answer.text, name


@pytest.mark.parametrize(
    ("listen", "says"),
    [
        ("9464", 'metrics.listen must be "host:port"'),
        ("127.0.0.1:", 'metrics.listen must be "host:port"'),
        ("127.0.0.1:99999", 'metrics.listen must be "host:port"'),
        (":9464", 'metrics.listen must be "host:port"'),
        ("::1:9464", "write an IPv6 address in brackets"),
        ("metrics.internal:9464", "'metrics.internal' is not an IP address"),
    ],
)
def test_a_listen_setting_that_is_not_an_address_is_refused_at_start(
    make_settings: Callable[..., Settings], listen: str, says: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        make_settings(metrics={"listen": listen})
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        (None, None),
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:9000", ("localhost", 9000)),
        ("10.0.0.5:9464", ("10.0.0.5", 9464)),
    ],
)
def test_metrics_are_off_by_default_and_on_at_the_address_given(
    make_settings: Callable[..., Settings], listen: str | None, address: Any
) -> None:
    assert make_settings(metrics={"listen": listen}).metrics.address == address


@pytest.mark.parametrize("command", [["serve"], ["serve", "--workers", "2"]])
def test_a_taken_metrics_port_is_one_error_naming_the_setting(
    tmp_path: Path, command: list[str]
) -> None:
    """Another program on the metrics address: exit 2 before anything is served, with the
    listener and the setting to change named, no traceback."""
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", free_port()))
        other.listen()
        taken = other.getsockname()[1]
        env = {
            **os.environ,
            "BASTION_ISSUER": f"http://127.0.0.1:{port}",
            "BASTION_DATA_DIR": str(tmp_path / "data"),
            "BASTION_METRICS__LISTEN": f"127.0.0.1:{taken}",
        }
        done = subprocess.run(
            [BASTION, *command, "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    said = f"port {taken} on 127.0.0.1 (the metrics listener) is in use by another program"
    assert said in done.stderr
    assert "choose another metrics.listen" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["serve", "gateway"])
def test_a_single_process_serves_its_metrics_beside_its_listener(
    tmp_path: Path, command: str
) -> None:
    """``bastion serve`` and ``bastion gateway`` in one process: the metrics listener answers
    with what the public listener counted; the public listener does not answer /metrics."""
    port, metrics_port = free_port(), free_port()
    public = f"http://127.0.0.1:{port}"
    settings: dict[str, Any] = {
        "issuer": public if command == "serve" else f"http://127.0.0.1:{free_port()}",
        "data_dir": str(tmp_path / "data"),
        "secret_key": "metrics-single-process-secret-key-0123456789",
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
    }
    ready = "/.well-known/oauth-authorization-server"
    if command == "gateway":
        settings["gateway"] = {
            "enabled": True,
            "public_url": public,
            "upstreams": [{"name": "demo", "path": "/mcp/demo", "url": "http://127.0.0.1:9/mcp"}],
        }
        ready = "/.well-known/oauth-protected-resource/mcp/demo"
    with running(settings, [command, "--port", str(port)], url=public, ready_path=ready):
        assert httpx.get(f"{public}/metrics").status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert scraped.status_code == 200
    app = "authserver" if command == "serve" else "gateway"
    counted = [
        sample
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
        if sample.name == "bastion_http_requests_total" and sample.labels["app"] == app
    ]
    assert {s.labels["status"] for s in counted} >= {"200", "404"}, counted
