"""Resource-server verification: a protected Starlette endpoint behind ResourceServerMiddleware
and JwtVerifier, with the verified-token cache and without it, against the same endpoint with no
middleware, and the raw ``cryptography`` ES256 verify rate as the floor of what a signature
check costs."""

from __future__ import annotations

import asyncio
import time

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.resource import JwtVerifier, RevocationList
from benchmarks import plan as planning
from benchmarks.loadgen import Load, raw_request
from benchmarks.plan import Plan, Target
from benchmarks.report import Ratio, Report, Row, cpu_ratio
from benchmarks.servers import Process, free_port, uvicorn_app
from benchmarks.stack import Stack

GROUP = "resource-server verification (GET, one server process)"
CACHED = "protected endpoint, verified-token cache"
UNCACHED = "protected endpoint, no cache (signature checked every request)"
BARE = "bare endpoint (no middleware)"
IN_PROCESS = "JwtVerifier.verify without cache, in-process loop"
RAW = "cryptography ES256 verify, in-process loop"


def access_token(bastion: Process, stack: Stack) -> str:
    service = stack.clients["service"]
    answer = httpx.post(
        f"{bastion.url}/token",
        content=stack.client_credentials_body(),
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


def raw_verify_rate(seconds: float, limit: int = 200_000) -> float:
    """ES256 verifications per second with ``cryptography`` alone (one core)."""
    key = ec.generate_private_key(ec.SECP256R1())
    message = b"x" * 300
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    algorithm = ec.ECDSA(hashes.SHA256())
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while count < limit:
        for _ in range(100):
            public.verify(signature, message, algorithm)
        count += 100
        if time.perf_counter() >= deadline:
            break
    return count / (time.perf_counter() - start)


async def verifier_rate(
    issuer: str,
    audience: str,
    token: str,
    seconds: float,
    *,
    cache_size: int = 0,
    revocations: RevocationList | None = None,
) -> float:
    """JwtVerifier.verify calls per second (JWKS fetched once beforehand): without its cache
    (``cache_size`` 0, the default) each call checks the signature; with it, each call after the
    first is a cache hit (and a revocation check, given ``revocations``)."""
    async with JwtVerifier(
        issuer=issuer,
        audience=audience,
        jwks_uri=f"{issuer}/jwks",
        cache_size=cache_size,
        revocations=revocations,
    ) as verifier:
        await verifier.verify(token)
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while count < 2_000_000:
            for _ in range(50):
                await verifier.verify(token)
            count += 50
            if time.perf_counter() >= deadline:
                break
        return count / (time.perf_counter() - start)


async def run(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    token = access_token(bastion, stack)
    env = {"BENCH_ISSUER": stack.issuer, "BENCH_RESOURCE": stack.resource}
    cached_port, uncached_port, bare_port = stack.resource_port, free_port(), free_port()

    def get(port: int) -> bytes:
        return raw_request(
            "127.0.0.1", port, "GET", "/mcp", headers={"Authorization": f"Bearer {token}"}
        )

    with (
        uvicorn_app(
            "protected-cached",
            "benchmarks.apps:protected",
            port=cached_port,
            env={**env, "BENCH_CACHE_SIZE": "10000"},
            cpus=plan.server_cpus,
        ) as cached_app,
        uvicorn_app(
            "protected-uncached",
            "benchmarks.apps:protected",
            port=uncached_port,
            env={**env, "BENCH_CACHE_SIZE": "0"},
            cpus=plan.server_cpus,
        ) as uncached_app,
        uvicorn_app(
            "bare", "benchmarks.apps:bare", port=bare_port, env={}, cpus=plan.server_cpus
        ) as bare_app,
    ):
        expect = b'"hello":"bench-service"'

        def target(server: Process, body: bytes) -> Load:
            return planning.load(
                plan, server.port, [get(server.port)], expect_body=body, watch=(server.process.pid,)
            )

        async def cached() -> Load:
            return target(cached_app, expect)

        async def uncached() -> Load:
            return target(uncached_app, expect)

        async def bare() -> Load:
            return target(bare_app, b'"hello":"anonymous"')

        targets: list[Target] = [(CACHED, cached), (UNCACHED, uncached), (BARE, bare)]
        results = await planning.interleaved(plan, targets)
    rows = {name: Row(GROUP, name, rounds=results[name]) for name, _ in targets}
    report.rows.extend(rows.values())
    seconds = 1.0 if plan.quick else 2.0
    in_process = await verifier_rate(stack.issuer, stack.resource, token, seconds)
    raw = await asyncio.to_thread(raw_verify_rate, seconds)
    report.rows.append(
        Row(GROUP, IN_PROCESS, "verifications/s", rate_override=in_process, note="no HTTP")
    )
    report.rows.append(Row(GROUP, RAW, "verifications/s", rate_override=raw, note="no HTTP"))
    report.ratios += [
        Ratio("cached verification / bare endpoint", CACHED, BARE, 0.90),
        cpu_ratio(
            "cached verification / bare endpoint (from server CPU per request)",
            rows[CACHED],
            rows[BARE],
            0.90,
        ),
        Ratio("uncached verification / bare endpoint", UNCACHED, BARE),
        Ratio("uncached verification / cached verification", UNCACHED, CACHED),
        Ratio("JwtVerifier (no cache) / raw cryptography verify", IN_PROCESS, RAW),
    ]


__all__ = ["access_token", "raw_verify_rate", "run", "verifier_rate"]
