"""What Prometheus metrics cost the token endpoint: two ``bastion serve`` processes on the same
database and the same server CPU, one with ``[metrics] listen`` and one without, loaded with
client_credentials at the same time (:func:`benchmarks.plan.side_by_side`); the metrics
listener is scraped once a second meanwhile, as Prometheus would."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import AsyncIterator

import httpx

from benchmarks import plan as planning
from benchmarks.issuance import JWT_EXPECTED, check_token
from benchmarks.loadgen import Load, form_request
from benchmarks.plan import Plan, Target
from benchmarks.report import Ratio, Report, Row
from benchmarks.servers import Process, bastion_serve, free_port
from benchmarks.stack import Stack

GROUP = "metrics cost (POST /token client_credentials, side by side)"
OFF = "bastion client_credentials, metrics off"
ON = "bastion client_credentials, metrics on"


@contextlib.asynccontextmanager
async def _scraping(url: str) -> AsyncIterator[list[int]]:
    """GET ``url`` once a second until the block ends; the sizes of the answers."""
    sizes: list[int] = []

    async def loop() -> None:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
            while True:
                answer = await http.get(url)
                sizes.append(len(answer.content))
                await asyncio.sleep(1)

    task = asyncio.create_task(loop())
    try:
        yield sizes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    """The two processes, side by side, ``plan.rounds`` rounds (at least 3)."""
    service = stack.clients["service"]
    metrics_port = free_port()
    rounds = max(plan.rounds, 3)
    on_settings = stack.settings(metrics={"listen": f"127.0.0.1:{metrics_port}"})
    with (
        bastion_serve(stack.settings(), port=free_port(), cpus=plan.server_cpus) as off,
        bastion_serve(on_settings, port=free_port(), cpus=plan.server_cpus) as on,
    ):
        for server in (off, on):
            check_token(f"{server.url}/token", stack.client_credentials_body(), service.basic())

        def target(name: str, server: Process) -> Target:
            request = form_request(
                "127.0.0.1",
                server.port,
                "/token",
                stack.client_credentials_body(),
                {"Authorization": service.basic()},
            )

            async def make() -> Load:
                return planning.load(plan, server.port, [request], expect_body=JWT_EXPECTED)

            return name, make

        async with _scraping(f"http://127.0.0.1:{metrics_port}/metrics") as sizes:
            without, with_metrics, ratios = await planning.side_by_side(
                rounds, target(OFF, off), target(ON, on)
            )
    note = f"{plan.connections // 2} connections each"
    report.rows.append(Row(GROUP, OFF, "tokens/s", rounds=without, note=note))
    scraped = f"scraped every second ({len(sizes)} scrapes, {max(sizes, default=0)} bytes)"
    report.rows.append(Row(GROUP, ON, "tokens/s", rounds=with_metrics, note=f"{note}; {scraped}"))
    report.ratios.append(
        Ratio(
            f"client_credentials with metrics / without (side by side, median of {rounds} rounds)",
            ON,
            OFF,
            0.97,
            given=statistics.median(ratios),
        )
    )


__all__ = ["run"]
