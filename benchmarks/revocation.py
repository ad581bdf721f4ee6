"""Revocation: what checking the list costs a resource, and how fast a revocation arrives.

Cost: the protected endpoint of the verification benchmark with its verified-token cache, with
and without a revocation list of 10,000 revoked grants (kept current from the AS by an
HttpRevocationFeed, long-polling meanwhile), both loaded at the same time on the same server CPU
(:func:`benchmarks.plan.side_by_side`); and the same two verifiers in an in-process loop of
cache hits, in alternating windows, where the check's own cost shows.

Propagation: how long after an RFC 7009 revocation has been answered a resource refuses the
token. Each sample: a client_credentials token for the resource, one request that succeeds (the
resource has verified and cached the token), a pause of 0 to 0.3 s (random), ``POST /revoke``
of the access token, then requests back to back until the resource answers 401; the delay runs
from the 200 of ``/revoke`` to the 401. Its resolution is one request (about a millisecond on
loopback).

- one process: the AS and a protected endpoint in one app (``benchmarks.apps:
  authorization_with_resource``), the endpoint checking the list the AS keeps current from the
  database (PostgreSQL: NOTIFY; SQLite: a read every ``revocations.poll_interval``);
- two processes: ``bastion serve`` and ``bastion gateway`` (its own database feed), the
  gateway in front of the benchmark's upstream.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from benchmarks import plan as planning
from benchmarks.apps import revocation_list
from benchmarks.gateway import CALL, gateway_and_upstream
from benchmarks.loadgen import Load, Result, raw_request
from benchmarks.plan import Plan, Target
from benchmarks.report import DELAYS, Ratio, Report, Row
from benchmarks.servers import Process, bastion_environment, free_port, uvicorn_app
from benchmarks.stack import Stack
from benchmarks.verification import access_token, verifier_rate

LIMIT = 5.0
JITTER = 0.3
REVOKED_GRANTS = 10_000
COST = "revocation check on cached verification (GET; both servers at once on the server CPU)"
WITHOUT = "protected endpoint, verified-token cache, no revocation list"
WITH = f"protected endpoint, verified-token cache, {REVOKED_GRANTS:,} revoked grants checked"
LOOP_WITHOUT = "JwtVerifier.verify from the cache, in-process loop"
LOOP_WITH = "JwtVerifier.verify from the cache with the revocation check, in-process loop"
ONE = "one process: the AS and a protected endpoint sharing its list"
TWO = "two processes: bastion serve, then bastion gateway (database feed)"


def group(stack: Stack) -> str:
    return f"revocation propagation (RFC 7009 revocation of an access token, {stack.database})"


Call = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


async def delays(stack: Stack, as_url: str, resource: str, call: Call, samples: int) -> list[float]:
    """``samples`` propagation delays in milliseconds (see the module docstring)."""
    service = stack.clients["service"]
    auth = {"Authorization": service.basic()}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    found: list[float] = []
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        for _ in range(samples):
            issued = await http.post(
                f"{as_url}/token",
                content=stack.client_credentials_body(resource),
                headers={**form, **auth},
            )
            issued.raise_for_status()
            token = issued.json()["access_token"]
            first = await call(http, token)
            if first.status_code != 200:
                raise RuntimeError(f"{resource}: {first.status_code} {first.text}")
            # A revocation comes at a moment unrelated to the feeds' polls; without this pause
            # each sample would start right after the poll that ended the previous one.
            await asyncio.sleep(random.uniform(0, JITTER))  # noqa: S311 - not a secret
            revoked = await http.post(
                f"{as_url}/revoke", content=f"token={token}", headers={**form, **auth}
            )
            revoked.raise_for_status()
            started = time.perf_counter()
            while (await call(http, token)).status_code != 401:
                if time.perf_counter() - started > LIMIT:
                    raise RuntimeError(f"{resource} still accepts a revoked token after {LIMIT} s")
            found.append((time.perf_counter() - started) * 1000)
    return found


def _row(stack: Stack, name: str, found: list[float], note: str) -> Row:
    seconds = sum(found) / 1000
    result = Result(requests=len(found), seconds=seconds, latencies_ms=found)
    return Row(group(stack), name, DELAYS, rounds=[result], note=note)


async def cost(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    """The check's cost over HTTP (paired rounds) and in-process (paired loops)."""
    token = access_token(bastion, stack)
    rounds = 2 if plan.quick else 6
    env = {
        "BENCH_ISSUER": stack.issuer,
        "BENCH_RESOURCE": stack.resource,
        "BENCH_CACHE_SIZE": "10000",
    }
    ports = {WITHOUT: stack.resource_port, WITH: free_port()}
    with (
        uvicorn_app(
            "protected-cached",
            "benchmarks.apps:protected",
            port=ports[WITHOUT],
            env=env,
            cpus=plan.server_cpus,
        ),
        uvicorn_app(
            "protected-checked",
            "benchmarks.apps:protected",
            port=ports[WITH],
            env={**env, "BENCH_REVOCATIONS": str(REVOKED_GRANTS)},
            cpus=plan.server_cpus,
        ),
    ):

        def target(name: str) -> Target:
            request = raw_request(
                "127.0.0.1",
                ports[name],
                "GET",
                "/mcp",
                headers={"Authorization": f"Bearer {token}"},
            )

            async def make() -> Load:
                return planning.load(
                    plan, ports[name], [request], expect_body=b'"hello":"bench-service"'
                )

            return name, make

        without, with_check, ratios = await planning.side_by_side(
            rounds, target(WITHOUT), target(WITH)
        )
    note = f"{plan.connections // 2} connections each"
    report.rows.append(Row(COST, WITHOUT, rounds=without, note=note))
    report.rows.append(
        Row(COST, WITH, rounds=with_check, note=f"{note}; HttpRevocationFeed running")
    )
    report.ratios.append(
        Ratio(
            "cached verification with the revocation check / without "
            f"(side by side, median of {rounds} rounds)",
            WITH,
            WITHOUT,
            0.95,
            given=statistics.median(ratios),
        )
    )
    revoked = revocation_list(REVOKED_GRANTS)
    loops: dict[str, list[float]] = {LOOP_WITHOUT: [], LOOP_WITH: []}
    for index in range(10 if plan.quick else 40):
        order = (LOOP_WITHOUT, LOOP_WITH) if index % 2 == 0 else (LOOP_WITH, LOOP_WITHOUT)
        for name in order:
            rate = await verifier_rate(
                stack.issuer,
                stack.resource,
                token,
                0.25,
                cache_size=10,
                revocations=revoked if name == LOOP_WITH else None,
            )
            loops[name].append(rate)
    extra = statistics.median(
        1e9 / b - 1e9 / a for a, b in zip(loops[LOOP_WITHOUT], loops[LOOP_WITH], strict=True)
    )
    for name, rates in loops.items():
        note = "no HTTP, median of 0.25 s windows"
        if name == LOOP_WITH:
            note += f"; the check adds {extra:.0f} ns per call (median of pairs)"
        report.rows.append(
            Row(COST, name, "verifications/s", rate_override=statistics.median(rates), note=note)
        )
    report.ratios.append(
        Ratio(
            "the same, JwtVerifier alone (in-process loop, median of pairs)",
            LOOP_WITH,
            LOOP_WITHOUT,
            given=statistics.median(
                b / a for a, b in zip(loops[LOOP_WITHOUT], loops[LOOP_WITH], strict=True)
            ),
        )
    )


async def propagation(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    """Delays from revocation to refusal, in one process and across two."""
    samples = 20 if plan.quick else 100
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    own = f"{issuer}/mcp"
    settings = stack.settings(
        issuer=issuer, resources=[{"uri": own, "name": "own", "scopes": ["mcp:tools"]}]
    )

    async def get(http: httpx.AsyncClient, token: str) -> httpx.Response:
        return await http.get(own, headers={"Authorization": f"Bearer {token}"})

    with uvicorn_app(
        "authorization-with-resource",
        "benchmarks.apps:authorization_with_resource",
        port=port,
        env=bastion_environment(settings),
        cpus=plan.server_cpus,
    ):
        one = await delays(stack, issuer, own, get, samples)
    report.rows.append(_row(stack, ONE, one, f"{samples} revocations"))

    async def tools_call(http: httpx.AsyncClient, token: str) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
        }
        return await http.post(stack.gateway_resource, json=CALL, headers=headers)

    with gateway_and_upstream(plan, stack):
        two = await delays(stack, bastion.url, stack.gateway_resource, tools_call, samples)
    report.rows.append(_row(stack, TWO, two, f"{samples} revocations"))
    if stack.database == "sqlite":
        report.notes.append(
            "revocation: on SQLite each process reads new revocations every "
            "revocations.poll_interval (0.25 s), so delays spread up to that; on PostgreSQL "
            "they arrive with NOTIFY."
        )


async def run(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    await cost(plan, stack, bastion, report)
    await propagation(plan, stack, bastion, report)


__all__ = ["run"]
