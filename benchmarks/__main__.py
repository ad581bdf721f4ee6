"""``python -m benchmarks``: every benchmark on loopback, bounded in time, one report.

    python -m benchmarks                 # full run: 3 interleaved rounds of 5 s (~13 minutes)
    python -m benchmarks --quick         # smoke run: 1 round of 2 s (~3 minutes), without
                                         # gateway-sessions unless named with --only
    python -m benchmarks --only registry # one suite (also issuance, verification, gateway,
                                         # gateway-sessions, gateway-dpop, revocation, metrics,
                                         # scaling, audit)
    python -m benchmarks --loader wrk    # loads sent by wrk instead of the own generator
    python -m benchmarks --simple-auth ~/src/python-sdk   # also the SDK's simple-auth example

Scale curves: ``--only registry --registry-entries 1000,10000,100000``, ``--only issuance
--grants 10000,1000000`` (a million grants take about a minute to write on PostgreSQL) and
``--only issuance --clients 10000``.

Suites of the gateway:

- ``gateway``: tools/call straight to the upstream and through ``bastion gateway``, for a
  one-line upstream and for the official SDK's demo server with 8 sessions (ratios with their
  targets), then both at a fixed rate of half the gateway's measured maximum: the gateway's
  added p50 and p99.
- ``gateway-sessions``: 1, 8 and 64 concurrent sessions through the gateway, to the SDK demo
  over HTTP and over stdio (the stdio bridge, a process per session).
- ``gateway-dpop``: tools/call through the gateway with a DPoP-bound token and a fresh proof per
  request (signed before each round), against the same call with a Bearer token.

``--loader wrk`` sends every load wrk can send (Debian's wrk, with a Lua script sending the same
prepared requests and checking the answers alike); pools of single-use requests and fixed-rate
loads stay with the own generator. Either way each row shows the load generator's CPU use during
the measurement and, when above 10 %, how long it waited for its CPU (others had it); the report
flags rows where it was busy above 90 % or waited above 50 %. The gateway suites also give the
servers' CPU per request (gateway, upstreams and stdio processes, from /proc), and ratios from it
that hold on a machine shared with other work.

Writes benchmarks/results/latest.md and latest.json (``--output`` for elsewhere). PostgreSQL is
used when reachable (BASTION_BENCH_POSTGRES_URL, default the local test server; ``--sqlite`` to
use SQLite instead); node-oidc-provider when Node 22 is installed (scripts/setup-node.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import (
    audit,
    gateway,
    gateway_dpop,
    gateway_sessions,
    issuance,
    metrics_cost,
    registry,
    revocation,
    scaling,
    verification,
)
from benchmarks.machine import describe
from benchmarks.node_provider import node_binary, node_version
from benchmarks.plan import LOADERS, Plan, make_plan
from benchmarks.report import Report
from benchmarks.servers import bastion_serve, free_port
from benchmarks.stack import POSTGRES_URL, postgres_reachable, postgres_version, stack

# Suites measured against the `bastion serve` started for them, in this order.
SERVED = (
    "issuance",
    "verification",
    "gateway",
    "gateway-sessions",
    "gateway-dpop",
    "revocation",
    "metrics",
)
SUITES = (*SERVED, "registry", "scaling", "audit")
# Left out of --quick unless named (it starts 64 upstream processes).
SLOW = ("gateway-sessions",)
RESULTS = Path(__file__).parent / "results"


def _sizes(text: str) -> tuple[int, ...]:
    """``1000,10000,100_000`` as a tuple of positive counts."""
    try:
        found = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        found = ()
    if not found or min(found) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive counts separated by commas: {text!r}")
    return found


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="one round of 2 s per target")
    parser.add_argument(
        "--simple-auth",
        type=Path,
        metavar="PATH",
        help="a checkout of modelcontextprotocol/python-sdk (or its examples/servers/simple-auth)",
    )
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even if PostgreSQL is up")
    parser.add_argument("--only", choices=SUITES, action="append", help="run only these suites")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 5, 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, 1)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--loader",
        choices=LOADERS,
        default="own",
        help="the load generator (wrk: for every load it can send)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=0,
        metavar="N",
        help="issuance: also N registered clients taking turns at client_credentials",
    )
    parser.add_argument(
        "--grants",
        type=_sizes,
        default=(10_000,),
        metavar="N,N",
        help="issuance: refresh_token with these many grants in the database (default 10000)",
    )
    parser.add_argument(
        "--registry-entries",
        type=_sizes,
        default=(10_000,),
        metavar="N,N",
        help="registry: catalogue sizes to measure (default 10000; e.g. 1000,10000,100000)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where latest.* go")
    return parser.parse_args(argv)


async def main(argv: list[str]) -> int:
    args = parse(argv)
    started = time.monotonic()
    use_postgres = not args.sqlite and postgres_reachable()
    plan = make_plan(
        quick=args.quick,
        simple_auth=args.simple_auth,
        use_postgres=use_postgres,
        duration=args.duration,
        rounds=args.rounds,
        connections=args.connections,
        loader=args.loader,
        clients=args.clients,
        grant_counts=args.grants,
        registry_entries=args.registry_entries,
    )
    suites = args.only or [s for s in SUITES if not (args.quick and s in SLOW)]
    node = node_binary()
    report = Report(
        command=shlex.join(["python", "-m", "benchmarks", *argv]),
        machine=describe(
            node_version(node) if node else None,
            await postgres_version() if use_postgres else None,
        ),
        settings=_settings(plan),
        started_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    ports = {
        "as_port": free_port(),
        "resource_port": free_port(),
        "gateway_port": free_port(),
        "upstream_port": free_port(),
    }
    upstreams = gateway.Upstreams(sdk_port=free_port())
    async with stack(use_postgres=use_postgres, ports=ports) as run:
        report.notes.append(
            f"database: {run.database}"
            + (f" ({POSTGRES_URL.split('@')[-1]}, a fresh schema)" if use_postgres else "")
        )
        if set(SERVED) & set(suites):
            # The AS knows the gateway's every upstream, so that it issues tokens for each.
            settings = upstreams.settings(run)
            with bastion_serve(settings, port=run.as_port, cpus=plan.server_cpus) as server:
                for name in (n for n in SERVED if n in suites):
                    _progress(f"{name}…")
                    if name == "gateway":
                        await gateway.run(plan, run, server, report, upstreams)
                    elif name == "gateway-sessions":
                        await gateway_sessions.run(plan, run, server, report, upstreams)
                    else:
                        await SERVED_SUITES[name](plan, run, server, report)
        if "registry" in suites:
            _progress("registry…")
            await registry.run(plan, run, report)
        if "scaling" in suites:
            _progress("scaling…")
            await scaling.run(plan, run, report)
        if "audit" in suites:
            _progress("audit…")
            await audit.run(plan, run, report)
    report.seconds = time.monotonic() - started
    report.compute_ratios()
    md, js = report.write(args.output)
    print(report.markdown())
    _progress(f"wrote {md} and {js} in {report.seconds:.0f} s")
    return 0


SERVED_SUITES = {
    "issuance": issuance.run,
    "verification": verification.run,
    "revocation": revocation.run,
    "metrics": metrics_cost.run,
    "gateway-dpop": gateway_dpop.run,
}


def _settings(plan: Plan) -> dict[str, object]:
    return {
        "rounds": plan.rounds,
        "seconds per measurement": plan.duration,
        "warm-up s": plan.warmup,
        "connections": plan.connections,
        "server CPU": sorted(plan.server_cpus) if plan.server_cpus else "any",
        "load generator": plan.loader,
        "load generator CPU": sorted(plan.load_cpus) if plan.load_cpus else "any",
        "log level": "warning",
    }


def _progress(message: str) -> None:
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
