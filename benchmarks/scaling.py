"""Throughput against process count: ``bastion serve --workers N`` on one database, and two
``bastion serve`` replicas behind HAProxy (``deploy/haproxy/bastion.cfg``), measured with
client_credentials. The machine's CPUs are shared by the workers and the load generator
(nothing is pinned here), so the ceiling is the machine, not bastion: on a 2-core machine the
load generator alone takes about one core."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

from benchmarks import plan as planning
from benchmarks.issuance import check_token, client_credentials_load
from benchmarks.loadgen import Load
from benchmarks.machine import usable_cpus
from benchmarks.plan import Plan, Target
from benchmarks.report import Ratio, Report, Row
from benchmarks.servers import bastion_serve, free_port, haproxy, haproxy_program
from benchmarks.stack import Stack

WORKERS = (1, 2)
BALANCED = "bastion client_credentials, 2 replicas behind HAProxy"


def group(stack: Stack) -> str:
    return f"scale-out (client_credentials, bastion serve --workers N, {stack.database})"


def name(workers: int) -> str:
    return f"bastion client_credentials, {workers} worker{'s' if workers > 1 else ''}"


async def run(plan: Plan, stack: Stack, report: Report) -> None:
    unpinned = replace(plan, server_cpus=None, load_cpus=None)
    service = stack.clients["service"]
    targets: list[Target] = []
    with ExitStack() as running:
        for workers in WORKERS:
            port = free_port()
            server = running.enter_context(
                bastion_serve(stack.settings(), port=port, workers=workers)
            )
            check_token(f"{server.url}/token", stack.client_credentials_body(), service.basic())

            async def make(port: int = port) -> Load:
                return client_credentials_load(unpinned, stack, port, service.basic())

            targets.append((name(workers), make))
        program = haproxy_program()
        if program is not None:
            replicas = [free_port(), free_port()]
            for port in replicas:
                running.enter_context(bastion_serve(stack.settings(), port=port))
            balancer = running.enter_context(haproxy(program, port=free_port(), servers=replicas))
            check_token(f"{balancer.url}/token", stack.client_credentials_body(), service.basic())

            async def balanced(port: int = balancer.port) -> Load:
                return client_credentials_load(unpinned, stack, port, service.basic())

            targets.append((BALANCED, balanced))
        results = await planning.interleaved(unpinned, targets)
    for workers in WORKERS:
        report.rows.append(
            Row(group(stack), name(workers), "tokens/s", rounds=results[name(workers)])
        )
    report.ratios.append(Ratio("2 workers / 1 worker", name(2), name(1)))
    if program is None:
        report.rows.append(
            Row(group(stack), BALANCED, note="not measured: no haproxy (scripts/test-setup.sh)")
        )
    else:
        report.rows.append(Row(group(stack), BALANCED, "tokens/s", rounds=results[BALANCED]))
        report.ratios.append(Ratio("2 replicas behind HAProxy / 1 worker", BALANCED, name(1)))
    cpus = len(usable_cpus())
    if cpus <= len(WORKERS):
        report.notes.append(
            f"scale-out: this machine has {cpus} usable CPUs, shared here by the workers, the "
            "load generator and PostgreSQL, so the ratio is bounded by the machine, not by "
            "bastion; run on 4+ cores to see what workers add. The kernel hands each of the 32 "
            "keep-alive connections to one worker when it connects, so the split between "
            "workers, and the rate, varies from round to round."
            + (
                " HAProxy and the two replicas behind it share the same CPUs: that row shows "
                "what the balancer costs here, not what replicas on hosts of their own add."
                if program is not None
                else ""
            )
        )


__all__ = ["run"]
