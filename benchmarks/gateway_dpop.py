"""DPoP at the gateway (RFC 9449 §7): ``tools/call`` to the one-line upstream through
``bastion gateway`` with a DPoP-bound token and a fresh proof per request, against the same call
with a Bearer token.

A DPoP request costs the gateway an ES256 proof verification and a first-use record of the
proof's ``jti`` (§11.1; in the database when the gateway shares one, as here, so that every
replica refuses a replay). Each proof is single use, so the DPoP load is a pool: proofs signed
before each round (``iat`` now, well inside the 60 s a proof is accepted), one per request, not
measured. The Bearer load sends one request again and again; both rows give the servers' CPU per
request (gateway and upstream), and the ratio from it holds on a shared machine.
"""

from __future__ import annotations

import json

import httpx

from bastion.client.dpop import DPoPKey
from benchmarks import plan as planning
from benchmarks.gateway import CALL, gateway_and_upstream
from benchmarks.gateway import token as bearer_token
from benchmarks.loadgen import Load, raw_request
from benchmarks.plan import Plan
from benchmarks.report import Ratio, Report, Row
from benchmarks.servers import Process
from benchmarks.stack import Stack

GROUP = "gateway with DPoP (tools/call to the one-line upstream through bastion gateway)"
BEARER = "Bearer token"
DPOP = "DPoP-bound token, a fresh proof per request"
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}
EXPECT = b'"result"'


def dpop_token(bastion: Process, stack: Stack, key: DPoPKey) -> str:
    """A client_credentials access token of the service client bound to ``key`` (RFC 9449 §5)."""
    service = stack.clients["service"]
    url = f"{bastion.url}/token"
    answer = httpx.post(
        url,
        content=stack.client_credentials_body(stack.gateway_resource),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": service.basic(),
            "DPoP": key.proof("POST", url),
        },
        timeout=10,
        trust_env=False,
    )
    answer.raise_for_status()
    body = answer.json()
    if body.get("token_type") != "DPoP":
        raise RuntimeError(f"the token endpoint did not bind the token to the key: {body!r}")
    value: str = body["access_token"]
    return value


def call(port: int, headers: dict[str, str]) -> bytes:
    """One tools/call request to the gateway's /mcp with ``headers`` added."""
    body = json.dumps(CALL).encode()
    return raw_request("127.0.0.1", port, "POST", "/mcp", body, {**HEADERS, **headers})


def proof_requests(port: int, stack: Stack, key: DPoPKey, token: str, count: int) -> list[bytes]:
    """``count`` tools/call requests, each with a proof of its own for the gateway's /mcp."""
    proof = key.proof
    return [
        call(
            port,
            {
                "Authorization": f"DPoP {token}",
                "DPoP": proof("POST", stack.gateway_resource, access_token=token),
            },
        )
        for _ in range(count)
    ]


async def run(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    key = DPoPKey.generate()
    bearer = bearer_token(bastion, stack)
    bound = dpop_token(bastion, stack, key)
    port = stack.gateway_port
    with gateway_and_upstream(plan, stack) as running:
        watch = running.pids(through=True, sdk=False)
        plain = planning.load(
            plan,
            port,
            [call(port, {"Authorization": f"Bearer {bearer}"})],
            expect_body=EXPECT,
            watch=watch,
        )

        async def proofs() -> Load:
            requests = proof_requests(port, stack, key, bound, plan.pool)
            return planning.load(plan, port, requests, pooled=True, expect_body=EXPECT, watch=watch)

        results = await planning.interleaved(plan, [planning.fixed(BEARER, plain), (DPOP, proofs)])
    rows = {
        BEARER: Row(GROUP, BEARER, rounds=results[BEARER]),
        DPOP: Row(GROUP, DPOP, rounds=results[DPOP], note=f"pool of {plan.pool} proofs per round"),
    }
    report.rows.extend(rows.values())
    report.ratios.append(Ratio("gateway: DPoP / Bearer (throughput)", DPOP, BEARER))
    cpu = None
    if rows[DPOP].server_cpu_ms and rows[BEARER].server_cpu_ms:
        cpu = rows[BEARER].server_cpu_ms / rows[DPOP].server_cpu_ms
    report.ratios.append(
        Ratio(
            "gateway: DPoP / Bearer (from server CPU per request)",
            DPOP,
            BEARER,
            given=cpu,
            by_suite=True,
        )
    )
    report.notes.append(
        "gateway with DPoP: each request carries a proof of its own (ES256, signed before the "
        "round); the gateway verifies it and records its jti as used in the database the "
        "gateway shares with the authorization server (RFC 9449 section 11.1), so a replay is "
        "refused by every replica."
    )


__all__ = ["call", "dpop_token", "proof_requests", "run"]
