"""Requests by route: the route label is a template, never a raw path, so any number of paths
adds no label values; the text served parses as Prometheus's exposition format."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import httpx
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bastion.authserver.app import create_app
from bastion.config import Settings
from bastion.gateway.app import create_gateway_app
from bastion.ops.http_metrics import HttpMetrics
from bastion.ops.metrics_listener import metrics_app


def _label_sets(app: str) -> set[tuple[str, str, str]]:
    """(route, method, status) of every bastion_http_requests_total series of ``app``."""
    found = set()
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == "bastion_http_requests_total" and sample.labels["app"] == app:
                labels = sample.labels
                found.add((labels["route"], labels["method"], labels["status"]))
    return found


def _random_path(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@"
    segments = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        for _ in range(rng.randint(1, 4))
    ]
    return "/" + "/".join(segments)


async def test_a_thousand_random_paths_add_no_label_values(
    make_settings: Callable[..., Settings],
) -> None:
    """1,000 random paths to the authorization server and the gateway (half of them below an
    upstream's path, which is routed and refused 401) leave the set of label values as a few
    known requests made it: unknown paths are ``unmatched`` or the gateway's catch-all
    template, paths below an upstream its ``/{below:path}`` template."""
    settings = make_settings(
        issuer="http://127.0.0.1:8000",
        metrics={"listen": "127.0.0.1:9464"},
        gateway={
            "enabled": True,
            "public_url": "http://127.0.0.1:8001",
            "upstreams": [{"name": "demo", "path": "/mcp/demo", "url": "http://127.0.0.1:9/mcp"}],
        },
    )
    rng = random.Random(16)
    apps = {"authserver": create_app(settings), "gateway": create_gateway_app(settings)}
    for name, app in apps.items():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as http:
            for path in ("/unknown", "/mcp/demo/unknown", "/elsewhere"):
                await http.get(path)
            await http.request("BREW", "/unknown")
            before = _label_sets(name)
            for _ in range(1000):
                prefix = "/mcp/demo" if name == "gateway" and rng.random() < 0.5 else ""
                answer = await http.get(prefix + _random_path(rng))
                assert answer.status_code in (401, 404), answer.text
            after = _label_sets(name)
        assert after == before, sorted(after - before)
        routes = {route for route, _, _ in after}
        assert "other" in {method for _, method, _ in after}
        if name == "authserver":
            assert routes == {"unmatched"}
        else:
            assert routes == {"/{anything:path}", "/mcp/demo/{below:path}"}


async def test_each_request_is_counted_under_its_route_template_once() -> None:
    """A request to a route with a parameter counts once under the template, with its method
    and status, and its duration once under the same route; the text parses."""

    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hi", status_code=201)

    app = HttpMetrics(Starlette(routes=[Route("/hello/{who}", hello)]), name="test-route")

    def count() -> float:
        value = REGISTRY.get_sample_value(
            "bastion_http_requests_total",
            {"app": "test-route", "route": "/hello/{who}", "method": "GET", "status": "201"},
        )
        return value or 0.0

    def timed() -> float:
        value = REGISTRY.get_sample_value(
            "bastion_http_request_duration_seconds_count",
            {"app": "test-route", "route": "/hello/{who}", "method": "GET"},
        )
        return value or 0.0

    started, started_timed = count(), timed()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        for who in ("alice", "bob", "carol"):
            assert (await http.get(f"/hello/{who}")).status_code == 201
    assert count() - started == 3
    assert timed() - started_timed == 3
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=metrics_app()), base_url="http://127.0.0.1"
    ) as http:
        answer = await http.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=")
        names = {family.name for family in text_string_to_metric_families(answer.text)}
        assert {"bastion_http_requests", "bastion_http_request_duration_seconds"} <= names
        refused = await http.get("/metrics/anything")
        assert refused.status_code == 404
        assert "bastion_" not in refused.text
