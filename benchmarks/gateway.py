"""Gateway overhead: MCP ``tools/call`` through ``bastion gateway`` (token check, policy, audit,
proxy) against the same call sent straight to the upstream, for two upstreams:

- a one-line handler (``benchmarks.apps:upstream``, stateless): the ratio is the gateway's whole
  cost;
- bastion's demo server, built with the official SDK (:mod:`benchmarks.mcp_demo`, stateful,
  answers as SSE), with 8 sessions initialized first and the calls rotating across them: the
  headline ratio.

Then the gateway's added latency at half load: both targets of each upstream at a fixed rate of
half the gateway's measured maximum, added p50 and p99 = through minus straight.

The gateway's configuration also mounts the demo as a stdio upstream, for
:mod:`benchmarks.gateway_sessions`.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from benchmarks import mcp_sessions
from benchmarks import plan as planning
from benchmarks.loadgen import Load, Result, raw_request
from benchmarks.mcp_demo import STDIO_COMMAND
from benchmarks.plan import Plan
from benchmarks.report import Ratio, Report, Row
from benchmarks.report import cpu_ratio as report_cpu_ratio
from benchmarks.servers import Process, bastion_gateway, free_port, started, uvicorn_app
from benchmarks.stack import SCOPE, Stack

GROUP = "gateway (MCP tools/call over HTTP; gateway and upstream share the server CPU)"
DIRECT = "tools/call straight to the upstream"
THROUGH = "tools/call through bastion gateway"
RELAYED = "tools/call relayed by a bare app with the gateway's upstream client (the floor)"
SESSIONS = 8
SDK_DIRECT = f"SDK demo server, {SESSIONS} sessions: straight"
SDK_THROUGH = f"SDK demo server, {SESSIONS} sessions: through bastion gateway"
HALF = "at half the gateway's max"
SDK_PATH = "/sdk"
STDIO_PATH = "/stdio"
# The headline targets of issue 20.
SDK_TARGET = 0.85
ONE_LINE_TARGET = 0.40
ADDED_P50_MS = 0.5
ADDED_P99_MS = 2.0
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "echo", "arguments": {"text": "hello"}},
}


@dataclass(frozen=True)
class Upstreams:
    """Where the gateway's upstreams besides the stack's one-line upstream listen."""

    sdk_port: int

    def gateway(self, stack: Stack) -> dict[str, Any]:
        """``[gateway]`` with three upstreams: the one-line one at /mcp, the SDK demo over
        HTTP at /sdk, the SDK demo over stdio at /stdio (up to 100 sessions, all of one
        subject)."""
        gateway: dict[str, Any] = dict(stack.settings()["gateway"])
        gateway["upstreams"] = [
            *gateway["upstreams"],
            {
                "name": "sdk",
                "path": SDK_PATH,
                "url": f"http://127.0.0.1:{self.sdk_port}/mcp",
                "scopes": [SCOPE],
            },
            {
                "name": "stdio",
                "path": STDIO_PATH,
                "command": STDIO_COMMAND,
                # The demo runs the code this run runs (a stdio upstream inherits no more than
                # HOME, PATH and a few others).
                "env": {k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
                "scopes": [SCOPE],
                "max_sessions": 100,
                "max_sessions_per_subject": 100,
            },
        ]
        return gateway

    def settings(self, stack: Stack) -> dict[str, Any]:
        """The run's settings with these upstreams (the AS issues tokens for each)."""
        return stack.settings(gateway=self.gateway(stack))


def resource(stack: Stack, path: str) -> str:
    """The resource URI of the upstream mounted at ``path``."""
    return f"http://127.0.0.1:{stack.gateway_port}{path}"


def token(bastion: Process, stack: Stack, audience: str | None = None) -> str:
    """A client_credentials access token of the service client for ``audience``."""
    service = stack.clients["service"]
    answer = httpx.post(
        f"{bastion.url}/token",
        content=stack.client_credentials_body(audience or stack.gateway_resource),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": service.basic(),
        },
        timeout=10,
        trust_env=False,
    )
    answer.raise_for_status()
    value: str = answer.json()["access_token"]
    return value


@dataclass(frozen=True)
class Running:
    """The gateway and its upstream servers of one suite."""

    gateway: Process
    upstream: Process
    sdk: Process | None

    def pids(self, *, through: bool, sdk: bool) -> tuple[int, ...]:
        """The servers a call straight to an upstream or through the gateway keeps busy."""
        upstream = self.sdk if sdk else self.upstream
        assert upstream is not None
        busy = [upstream, self.gateway] if through else [upstream]
        return tuple(server.process.pid for server in busy)


@contextlib.contextmanager
def gateway_and_upstream(
    plan: Plan, stack: Stack, upstreams: Upstreams | None = None
) -> Iterator[Running]:
    """The one-line upstream (and with ``upstreams`` the SDK demo) and ``bastion gateway`` in
    front of them."""
    settings: Mapping[str, Any] = upstreams.settings(stack) if upstreams else stack.settings()
    with contextlib.ExitStack() as running:
        upstream = running.enter_context(
            uvicorn_app(
                "upstream",
                "benchmarks.apps:upstream",
                port=stack.upstream_port,
                env={},
                cpus=plan.server_cpus,
            )
        )
        sdk = None
        if upstreams is not None:
            sdk = running.enter_context(
                uvicorn_app(
                    "sdk-demo",
                    "benchmarks.mcp_demo:http_app",
                    port=upstreams.sdk_port,
                    env={},
                    cpus=plan.server_cpus,
                )
            )
        gateway = running.enter_context(
            bastion_gateway(settings, port=stack.gateway_port, cpus=plan.server_cpus)
        )
        yield Running(gateway, upstream, sdk)


def one_line_loads(plan: Plan, stack: Stack, bearer: str, running: Running) -> tuple[Load, Load]:
    """Straight to the one-line upstream, and through the gateway."""
    body = json.dumps(CALL).encode()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }

    def call(port: int, extra: dict[str, str]) -> bytes:
        return raw_request("127.0.0.1", port, "POST", "/mcp", body, {**headers, **extra})

    expect = b'"result"'
    direct = planning.load(
        plan,
        stack.upstream_port,
        [call(stack.upstream_port, {})],
        expect_body=expect,
        watch=running.pids(through=False, sdk=False),
    )
    auth = {"Authorization": f"Bearer {bearer}"}
    through = planning.load(
        plan,
        stack.gateway_port,
        [call(stack.gateway_port, auth)],
        expect_body=expect,
        watch=running.pids(through=True, sdk=False),
    )
    return direct, through


async def run(
    plan: Plan, stack: Stack, bastion: Process, report: Report, upstreams: Upstreams
) -> None:
    one_line_token = token(bastion, stack)
    sdk_token = token(bastion, stack, resource(stack, SDK_PATH))
    with gateway_and_upstream(plan, stack, upstreams) as running:
        sdk_url = f"http://127.0.0.1:{upstreams.sdk_port}/mcp"
        gateway_url = resource(stack, SDK_PATH)
        straight = await mcp_sessions.open_sessions(sdk_url, SESSIONS)
        through = await mcp_sessions.open_sessions(gateway_url, SESSIONS, sdk_token)
        sdk_direct = planning.load(
            plan,
            upstreams.sdk_port,
            mcp_sessions.calls(upstreams.sdk_port, "/mcp", straight),
            expect_body=mcp_sessions.CALL_OK,
            watch=running.pids(through=False, sdk=True),
        )
        sdk_through = planning.load(
            plan,
            stack.gateway_port,
            mcp_sessions.calls(stack.gateway_port, SDK_PATH, through, sdk_token),
            expect_body=mcp_sessions.CALL_OK,
            watch=running.pids(through=True, sdk=True),
        )
        one_direct, one_through = one_line_loads(plan, stack, one_line_token, running)
        relay_port = free_port()
        with started(
            "relay",
            [
                sys.executable,
                "-m",
                "benchmarks.relay",
                str(relay_port),
                f"{stack.upstream_url}/mcp",
            ],
            port=relay_port,
            env=os.environ,
            ready_path="/ready",
            cpus=plan.server_cpus,
        ) as relay:
            relayed = replace(
                one_direct,
                port=relay_port,
                requests=[
                    r.replace(b":%d" % stack.upstream_port, b":%d" % relay_port, 1)
                    for r in one_direct.requests
                ],
                watch=(relay.process.pid, running.upstream.process.pid),
            )
            loads = {
                SDK_DIRECT: sdk_direct,
                SDK_THROUGH: sdk_through,
                DIRECT: one_direct,
                THROUGH: one_through,
                RELAYED: relayed,
            }
            results = await planning.interleaved(
                plan, [planning.fixed(n, x) for n, x in loads.items()]
            )
        rows = {name: Row(GROUP, name, rounds=results[name]) for name in loads}
        report.rows.extend(rows.values())
        report.ratios.append(
            Ratio(
                f"gateway / direct (throughput), SDK demo server, {SESSIONS} sessions",
                SDK_THROUGH,
                SDK_DIRECT,
                target=SDK_TARGET,
            )
        )
        report.ratios.append(
            Ratio(
                "gateway / direct (throughput), one-line upstream",
                THROUGH,
                DIRECT,
                target=ONE_LINE_TARGET,
            )
        )
        report.ratios.append(
            Ratio("relayed by a bare app / direct (the floor), one-line upstream", RELAYED, DIRECT)
        )
        report.ratios.append(
            report_cpu_ratio(
                "relayed by a bare app / direct (the floor, from server CPU per request)",
                rows[RELAYED],
                rows[DIRECT],
            )
        )
        for label, straight_name, through_name, target in (
            (f"SDK demo server, {SESSIONS} sessions", SDK_DIRECT, SDK_THROUGH, SDK_TARGET),
            ("one-line upstream", DIRECT, THROUGH, ONE_LINE_TARGET),
        ):
            report.ratios.append(cpu_ratio(label, rows[straight_name], rows[through_name], target))
        for label, straight_name, through_name in (
            ("SDK demo", SDK_DIRECT, SDK_THROUGH),
            ("one-line", DIRECT, THROUGH),
        ):
            ceiling = statistics.median(r.rate for r in results[through_name])
            pair = (loads[straight_name], loads[through_name])
            await added_latency(plan, report, label, pair, ceiling / 2)
        await mcp_sessions.close_sessions(sdk_url, straight)
        await mcp_sessions.close_sessions(gateway_url, through, sdk_token)
    report.notes.append(
        "gateway: the one-line upstream answers from a one-line handler, so its ratio is the "
        "gateway's whole cost (token check, policy, audit record, and the upstream request); "
        f"the SDK demo server (mcp {_sdk_version()}, MCPServer with default settings: stateful "
        f"sessions, SSE answers) is a real upstream: {SESSIONS} sessions initialized first, "
        "tools/call rotating across them. See docs/performance.md for where the time goes."
    )


async def added_latency(
    plan: Plan, report: Report, label: str, pair: tuple[Load, Load], rate: float
) -> None:
    """Straight and through at ``rate`` requests/s on a fixed schedule (interleaved rounds);
    the gateway's added p50 and p99 against the targets."""
    direct, through = (replace(load, rate=rate) for load in pair)
    names = (f"{label}: straight, {HALF}", f"{label}: through bastion gateway, {HALF}")
    results = await planning.interleaved(
        plan, [planning.fixed(names[0], direct), planning.fixed(names[1], through)]
    )
    rows = [
        Row(GROUP, name, rounds=results[name], note=_late(results[name], rate)) for name in names
    ]
    report.rows.extend(rows)
    for quantile, target in (("p50", ADDED_P50_MS), ("p99", ADDED_P99_MS)):
        added = getattr(rows[1], quantile) - getattr(rows[0], quantile)
        report.ratios.append(
            Ratio(
                f"gateway added {quantile} at half load, {label} ({rate:,.0f} requests/s)",
                rows[1].name,
                rows[0].name,
                target=target,
                given=added,
                at_most=True,
                unit="ms",
            )
        )


def cpu_ratio(label: str, straight: Row, through: Row, target: float) -> Ratio:
    """The gateway / direct ratio from the servers' CPU per request (the upstream's and the
    gateway's together through it): robust to what else the machine runs."""
    return report_cpu_ratio(
        f"gateway / direct (from server CPU per request), {label}", through, straight, target
    )


def _late(results: list[Result], rate: float) -> str:
    """The row's note: the fixed rate, and how far the server fell behind it."""
    late = sum(r.late for r in results)
    sent = sum(r.requests for r in results)
    seconds = sum(r.seconds for r in results)
    text = f"fixed rate {rate:,.0f}/s"
    if sent and late:
        text += f"; {late / sent:.1%} sent late (every connection busy; counted from due time)"
    if seconds and sent / seconds < 0.95 * rate:
        text += f"; **behind the schedule: {sent / seconds:,.0f}/s answered**"
    return text


def _sdk_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mcp")
    except metadata.PackageNotFoundError:
        return "?"


__all__ = [
    "CALL",
    "SDK_PATH",
    "STDIO_PATH",
    "Upstreams",
    "gateway_and_upstream",
    "resource",
    "run",
    "token",
]
