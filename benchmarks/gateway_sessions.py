"""Gateway sessions curve: ``tools/call`` through ``bastion gateway`` with 1, 8 and 64
concurrent sessions, to the SDK demo server over streamable HTTP (one upstream process holding
every session) and over stdio (the gateway's stdio bridge: one upstream process per session).

All sessions are initialized before the first measurement; each load rotates its calls across
its N sessions over the plan's connections. The 64 stdio processes are started once (about a
second of CPU each, on the server CPU), which is why the suite runs apart from ``gateway``.
"""

from __future__ import annotations

from benchmarks import mcp_sessions
from benchmarks import plan as planning
from benchmarks.gateway import (
    SDK_PATH,
    STDIO_PATH,
    Upstreams,
    gateway_and_upstream,
    resource,
    token,
)
from benchmarks.plan import Plan, Target
from benchmarks.report import Ratio, Report, Row
from benchmarks.servers import Process
from benchmarks.stack import Stack

GROUP = (
    "gateway sessions (tools/call through bastion gateway to the SDK demo server; "
    "gateway and upstream share the server CPU)"
)
COUNTS = (1, 8, 64)
KINDS = (("over HTTP", SDK_PATH), ("over stdio", STDIO_PATH))


def name(kind: str, count: int) -> str:
    return f"{kind}, {count} session{'s' if count > 1 else ''}"


async def run(
    plan: Plan, stack: Stack, bastion: Process, report: Report, upstreams: Upstreams
) -> None:
    port = stack.gateway_port
    with gateway_and_upstream(plan, stack, upstreams) as running:
        opened: list[tuple[str, list[mcp_sessions.Session], str]] = []
        targets: list[Target] = []
        try:
            for kind, path in KINDS:
                bearer = token(bastion, stack, resource(stack, path))
                url = resource(stack, path)
                sessions = await mcp_sessions.open_sessions(url, max(COUNTS), bearer)
                opened.append((url, sessions, bearer))
                for count in COUNTS:
                    calls = mcp_sessions.calls(port, path, sessions[:count], bearer)
                    # The gateway with its stdio processes, and the HTTP demo.
                    watch = running.pids(through=True, sdk=True)
                    load = planning.load(
                        plan, port, calls, expect_body=mcp_sessions.CALL_OK, watch=watch
                    )
                    targets.append(planning.fixed(name(kind, count), load))
            results = await planning.interleaved(plan, targets)
        finally:
            for url, sessions, bearer in opened:
                await mcp_sessions.close_sessions(url, sessions, bearer)
    rows = {label: Row(GROUP, label, rounds=results[label]) for label, _ in targets}
    report.rows.extend(rows.values())
    for kind, _ in KINDS:
        many, one = rows[name(kind, max(COUNTS))], rows[name(kind, 1)]
        label = f"gateway sessions {kind}: {max(COUNTS)} / 1 session"
        report.ratios.append(Ratio(f"{label} (throughput)", many.name, one.name))
        cpu = None
        if many.server_cpu_ms and one.server_cpu_ms:
            cpu = one.server_cpu_ms / many.server_cpu_ms
        report.ratios.append(
            Ratio(
                f"{label} (from server CPU per request)",
                many.name,
                one.name,
                given=cpu,
                by_suite=True,
            )
        )
    report.notes.append(
        f"gateway sessions: {plan.connections} connections rotate the calls across the N "
        "sessions; a stdio session is a process of its own (the demo server on stdio), an "
        "HTTP session lives in the one demo server process."
    )


__all__ = ["COUNTS", "run"]
