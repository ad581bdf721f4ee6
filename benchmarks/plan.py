"""How long and how hard each measurement runs, and the interleaved rounds that compare
targets under the same conditions (A, B, A, B… so that drift hits both alike).

Loads go out from the own generator (:mod:`benchmarks.loadgen`) or, with ``loader="wrk"``, from
wrk (:mod:`benchmarks.wrk`) wherever wrk can send them (not pools, not fixed rates)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import loadgen, wrk
from benchmarks.loadgen import Load, Result
from benchmarks.machine import usable_cpus


@dataclass(frozen=True)
class Plan:
    """Bounds of one run."""

    rounds: int
    duration: float
    warmup: float
    connections: int
    pool: int  # single-use items (codes, refresh tokens) prepared per round, at most
    max_requests: int
    quick: bool
    simple_auth: Path | None
    server_cpus: frozenset[int] | None
    load_cpus: frozenset[int] | None
    use_postgres: bool
    loader: str = "own"  # or "wrk"
    clients: int = 0  # registered clients taking turns at client_credentials (0: not measured)
    grant_counts: tuple[int, ...] = (10_000,)  # grants in the database, refresh_token's curve
    registry_entries: tuple[int, ...] = (10_000,)  # catalogue sizes, the registry's curve


LOADERS = ("own", "wrk")


def make_plan(
    *,
    quick: bool,
    simple_auth: Path | None,
    use_postgres: bool,
    duration: float | None = None,
    rounds: int | None = None,
    connections: int = 32,
    loader: str = "own",
    clients: int = 0,
    grant_counts: tuple[int, ...] = (10_000,),
    registry_entries: tuple[int, ...] = (10_000,),
) -> Plan:
    """The full plan (3 rounds of 5 s) or the quick one (1 round of 2 s)."""
    cpus = usable_cpus()
    server: frozenset[int] | None = None
    load: frozenset[int] | None = None
    if len(cpus) >= 2:
        server, load = frozenset({cpus[0]}), frozenset(cpus[1:])
    return Plan(
        rounds=rounds or (1 if quick else 3),
        duration=duration or (2.0 if quick else 5.0),
        warmup=0.5 if quick else 1.0,
        connections=connections,
        pool=3_000 if quick else 12_000,
        max_requests=200_000,
        quick=quick,
        simple_auth=simple_auth,
        server_cpus=server,
        load_cpus=load,
        use_postgres=use_postgres,
        loader=loader,
        clients=clients,
        grant_counts=tuple(sorted(set(grant_counts))),
        registry_entries=tuple(registry_entries),
    )


def load(plan: Plan, port: int, requests: Sequence[bytes], **fields: object) -> Load:
    """A :class:`Load` with the plan's bounds. A pool of single-use requests has no warm-up:
    a fast server could spend the whole pool in it (the server is warm from earlier targets)."""
    if fields.get("pooled"):
        fields.setdefault("warmup", 0.0)
    base = Load(
        host="127.0.0.1",
        port=port,
        requests=list(requests),
        connections=plan.connections,
        duration=plan.duration,
        warmup=plan.warmup,
        max_requests=plan.max_requests,
        cpus=plan.load_cpus,
        loader=plan.loader,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


async def measure(one: Load) -> Result:
    """Run one load from a process of its own (without blocking the event loop): wrk when the
    load asks for it and wrk can send it, else the own generator."""
    if one.loader == "wrk" and wrk.supports(one):
        return await asyncio.to_thread(wrk.run, one)
    return await asyncio.to_thread(loadgen.run, one)


Target = tuple[str, Callable[[], Awaitable[Load]]]


def fixed(name: str, one: Load) -> Target:
    """A target that sends the same ``one`` load every round."""

    async def make() -> Load:
        return one

    return name, make


async def interleaved(plan: Plan, targets: Sequence[Target]) -> dict[str, list[Result]]:
    """Each round measures every target once, in order; ``targets`` make a fresh Load per round
    (pools of single-use items are prepared there, outside the measurement)."""
    results: dict[str, list[Result]] = {name: [] for name, _ in targets}
    for _ in range(plan.rounds):
        for name, make in targets:
            one = await make()
            results[name].append(await measure(one))
    return results


async def side_by_side(
    rounds: int, first: Target, second: Target
) -> tuple[list[Result], list[Result], list[float]]:
    """Both targets loaded at the same time, each with half the connections, ``rounds`` times.
    Two servers pinned to the same CPU share it evenly whatever else the machine does, so the
    ratio of their rates in one round is the inverse ratio of their costs per request: steadier
    than rates measured one after the other on a busy machine. The results of each, and the
    ratio second / first of every round."""
    firsts: list[Result] = []
    seconds: list[Result] = []
    ratios: list[float] = []
    for _ in range(rounds):
        a, b = await first[1](), await second[1]()
        half_a = replace(a, connections=max(1, a.connections // 2))
        half_b = replace(b, connections=max(1, b.connections // 2))
        done_a, done_b = await asyncio.gather(measure(half_a), measure(half_b))
        firsts.append(done_a)
        seconds.append(done_b)
        ratios.append(done_b.rate / done_a.rate if done_a.rate else 0.0)
    return firsts, seconds, ratios


__all__ = [
    "LOADERS",
    "Plan",
    "Target",
    "fixed",
    "interleaved",
    "load",
    "make_plan",
    "measure",
    "side_by_side",
]
