"""Gateway overhead: an MCP ``tools/call`` through ``bastion gateway`` (token check, policy,
audit, proxy) to an HTTP upstream, against the same call sent straight to the upstream."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import httpx

from benchmarks import plan as planning
from benchmarks.loadgen import Load, raw_request
from benchmarks.plan import Plan, Target
from benchmarks.report import Ratio, Report, Row
from benchmarks.servers import Process, bastion_gateway, uvicorn_app
from benchmarks.stack import Stack

GROUP = "gateway (MCP tools/call over HTTP; gateway and upstream share the server CPU)"
DIRECT = "tools/call straight to the upstream"
THROUGH = "tools/call through bastion gateway"
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "echo", "arguments": {"text": "hello"}},
}


def _token(bastion: Process, stack: Stack) -> str:
    service = stack.clients["service"]
    answer = httpx.post(
        f"{bastion.url}/token",
        content=stack.client_credentials_body(stack.gateway_resource),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": service.basic(),
        },
        timeout=10,
        trust_env=False,
    )
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


@contextlib.contextmanager
def gateway_and_upstream(plan: Plan, stack: Stack) -> Iterator[Process]:
    """The benchmark's upstream and ``bastion gateway`` in front of it; yields the gateway."""
    with (
        uvicorn_app(
            "upstream",
            "benchmarks.apps:upstream",
            port=stack.upstream_port,
            env={},
            cpus=plan.server_cpus,
        ),
        bastion_gateway(stack.settings(), port=stack.gateway_port, cpus=plan.server_cpus) as gw,
    ):
        yield gw


async def run(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    token = _token(bastion, stack)
    body = json.dumps(CALL).encode()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }

    def call(port: int, extra: dict[str, str]) -> bytes:
        return raw_request("127.0.0.1", port, "POST", "/mcp", body, {**headers, **extra})

    with gateway_and_upstream(plan, stack):
        expect = b'"result"'

        async def direct() -> Load:
            return planning.load(
                plan, stack.upstream_port, [call(stack.upstream_port, {})], expect_body=expect
            )

        async def through() -> Load:
            auth = {"Authorization": f"Bearer {token}"}
            return planning.load(
                plan, stack.gateway_port, [call(stack.gateway_port, auth)], expect_body=expect
            )

        targets: list[Target] = [(DIRECT, direct), (THROUGH, through)]
        results = await planning.interleaved(plan, targets)
    for name, _ in targets:
        report.rows.append(Row(GROUP, name, rounds=results[name]))
    report.ratios.append(Ratio("gateway / direct (throughput)", THROUGH, DIRECT))
    report.notes.append(
        "gateway: the upstream answers from a one-line handler, so the ratio is the gateway's "
        "whole cost (token check, policy, audit record, and the upstream request); "
        "see docs/performance.md for where that time goes."
    )


__all__ = ["CALL", "gateway_and_upstream", "run"]
