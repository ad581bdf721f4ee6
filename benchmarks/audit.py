"""The audit trail's cost at the token endpoint: two ``bastion serve`` processes on the same
database and the same server CPU, one recording (``audit.enabled = true``, the default), one not,
loaded at the same time (:func:`benchmarks.plan.side_by_side`) with refresh_token and
authorization_code requests. The ratio of their rates in a round is the inverse ratio of their
costs per request; the target is at most 5 % (a ratio of at least 0.95).

client_credentials is not measured here: it records nothing (see bastion.authserver.audit)."""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from benchmarks import plan as planning
from benchmarks.issuance import JWT_EXPECTED, _code_form
from benchmarks.loadgen import Load, form_request
from benchmarks.plan import Plan, Target
from benchmarks.report import Ratio, Report, Row
from benchmarks.servers import bastion_serve, free_port
from benchmarks.stack import Stack

GROUP = "audit trail cost (POST /token, two processes side by side on one CPU set)"
ON = "audit on"
OFF = "audit off"


def _refresh(plan: Plan, stack: Stack, port: int) -> Callable[[], Awaitable[Load]]:
    basic = stack.clients["refresh"].basic()

    async def make() -> Load:
        tokens = await stack.refresh_pool(plan.pool // 2)
        body = [urlencode({"grant_type": "refresh_token", "refresh_token": t}) for t in tokens]
        requests = [
            form_request("127.0.0.1", port, "/token", b, {"Authorization": basic}) for b in body
        ]
        return planning.load(plan, port, requests, pooled=True, expect_body=JWT_EXPECTED)

    return make


def _code(plan: Plan, stack: Stack, port: int) -> Callable[[], Awaitable[Load]]:
    client_id = stack.clients["native"].client_id

    async def make() -> Load:
        codes = await stack.code_pool(plan.pool // 2)
        requests = [
            form_request(
                "127.0.0.1",
                port,
                "/token",
                _code_form(client_id, c, stack.verifier, stack.resource),
            )
            for c in codes
        ]
        return planning.load(plan, port, requests, pooled=True, expect_body=JWT_EXPECTED)

    return make


async def run(plan: Plan, stack: Stack, report: Report) -> None:
    """refresh_token and authorization_code, with and without the trail, side by side."""
    rounds = 2 if plan.quick else 6
    ports = {ON: free_port(), OFF: free_port()}
    on = stack.settings(audit={"enabled": True})
    off = stack.settings(audit={"enabled": False})
    with (
        bastion_serve(on, port=ports[ON], cpus=plan.server_cpus),
        bastion_serve(off, port=ports[OFF], cpus=plan.server_cpus),
    ):
        for grant, make in (("refresh_token", _refresh), ("authorization_code", _code)):
            first: Target = (f"{grant}, {OFF}", make(plan, stack, ports[OFF]))
            second: Target = (f"{grant}, {ON}", make(plan, stack, ports[ON]))
            without, with_trail, ratios = await planning.side_by_side(rounds, first, second)
            note = f"{plan.connections // 2} connections each, pool of {plan.pool // 2}"
            report.rows.append(Row(GROUP, first[0], "tokens/s", rounds=without, note=note))
            report.rows.append(Row(GROUP, second[0], "tokens/s", rounds=with_trail, note=note))
            report.ratios.append(
                Ratio(
                    f"{grant}: audit on / off (side by side, median of {rounds} rounds)",
                    second[0],
                    first[0],
                    0.95,
                    given=statistics.median(ratios),
                )
            )


__all__ = ["run"]
