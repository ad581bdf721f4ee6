"""The load generator: N keep-alive HTTP/1.1 connections on loopback, in a process of its own.

It writes prepared requests and reads the answers with asyncio streams, a deliberately small
HTTP/1.1 client (Content-Length and chunked bodies, nothing else): a general-purpose client such
as httpx spends more CPU per request than the servers under test, and would measure itself.
Run in a child process (:func:`run`), pinned to its own CPU when the machine has one to spare.

Two ways to load: closed-loop (each connection sends its next request as soon as the answer to
the last one arrived; the rate is whatever the server sustains) and, with ``Load.rate``,
open-loop on a fixed schedule (request *i* is due ``i / rate`` seconds after the start, taken by
whichever connection is free; a request sent after its due time because every connection was
busy counts its latency from the due time, so a slow server cannot hide its queue).

The generator's own CPU use during the measured window (``/proc/self/stat``) comes back with the
result: near 100 % of its CPU, it, not the server, may be what limits the rate. So does the time
it waited for its CPU while other processes had it (``schedstat``): on a shared machine a
generator can be starved without being busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from benchmarks.machine import pin


@dataclass(frozen=True)
class Load:
    """What to send: ``requests`` (one per request, each used once, when ``pooled``; else sent
    round-robin), to ``host``:``port`` over ``connections`` connections, for at most
    ``duration`` seconds and ``max_requests`` requests, after ``warmup`` seconds not counted."""

    host: str
    port: int
    requests: Sequence[bytes]
    connections: int = 32
    duration: float = 5.0
    warmup: float = 1.0
    max_requests: int = 1_000_000
    pooled: bool = False
    expect_status: int = 200
    expect_body: bytes = b""
    cpus: frozenset[int] | None = None
    rate: float | None = None  # requests per second on a fixed schedule; None: closed loop
    loader: str = "own"  # "wrk": sent by wrk where it can (benchmarks.wrk.supports)
    # Servers (with their child processes) whose CPU time the measured window took.
    watch: tuple[int, ...] = ()


# Seconds past the end of a load that answers may still take; later, the load ends without them.
ANSWER_TIMEOUT = 30.0
# Above this share of its CPU, the load generator may limit the rate it measures.
BUSY_LOADER = 0.9


@dataclass
class Result:
    """What one run measured (latencies in milliseconds)."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    # The load generator's CPU seconds per wall second in the measured window (None: unknown).
    loader_cpu: float | None = None
    # Its seconds spent runnable but waiting for a CPU, per wall second (others had the CPU).
    loader_wait: float | None = None
    loader: str = "own"
    late: int = 0  # fixed rate: requests sent after their due time (every connection was busy)
    server_cpu: float | None = None  # CPU seconds of the Load's watched servers in the window

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "first_error": self.first_error,
            "loader": self.loader,
            "loader_cpu": None if self.loader_cpu is None else round(self.loader_cpu, 3),
            "loader_wait": None if self.loader_wait is None else round(self.loader_wait, 3),
            "late": self.late,
            "server_cpu_s": None if self.server_cpu is None else round(self.server_cpu, 4),
        }


def process_cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name (field 2) may hold spaces; the fields after it are plain.
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds of processes ``pids`` and their living descendants (a gateway's stdio
    upstreams, a server's workers) so far."""
    total = 0.0
    pending = list(pids)
    while pending:
        pid = pending.pop()
        try:
            total += process_cpu_seconds(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # ended meanwhile
    return total


def run_queue_seconds() -> float:
    """Seconds this thread was runnable but waited for a CPU (``/proc/thread-self/schedstat``;
    0 where the kernel does not keep it)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class _Answer:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


async def _read_answer(reader: asyncio.StreamReader) -> _Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return _Answer(status, b"".join(parts))
    if length < 0:
        raise ValueError("the answer has neither Content-Length nor chunked encoding")
    return _Answer(status, await reader.readexactly(length) if length else b"")


class _Feed:
    """Hands out requests: round-robin, or each once (a pool), bounded by a request count."""

    def __init__(self, requests: Sequence[bytes], pooled: bool, limit: int) -> None:
        self.requests = requests
        self.pooled = pooled
        self.limit = min(limit, len(requests)) if pooled else limit
        self.taken = 0

    def next(self) -> bytes | None:
        if self.taken >= self.limit:
            return None
        item = self.requests[self.taken if self.pooled else self.taken % len(self.requests)]
        self.taken += 1
        return item


async def _drive(load: Load) -> Result:
    result = Result()
    feed = _Feed(load.requests, load.pooled, load.max_requests)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + load.warmup
    stop_at = measure_from + load.duration
    measured_start: float | None = None
    last_done = start
    # The fixed schedule, on the precise clock (the loop's may tick in milliseconds).
    slots = itertools.count()
    schedule_start = time.perf_counter()
    cpu_from: list[float] = []
    waiting = 0  # requests sent and not answered yet

    def cpu_mark() -> None:
        servers = tree_cpu_seconds(load.watch)
        cpu_from[:] = [process_cpu_seconds(), run_queue_seconds(), servers, time.perf_counter()]

    if load.warmup > 0:
        loop.call_later(load.warmup, cpu_mark)
    else:
        cpu_mark()

    async def wait_for_slot() -> float | None:
        """Sleep until the next slot of the schedule; the time its latency counts from when
        it was already due (0.0: count from the send), None when the schedule is over."""
        assert load.rate
        due = schedule_start + next(slots) / load.rate
        if due - schedule_start >= load.warmup + load.duration:
            return None
        ahead = due - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
            return 0.0
        return due

    async def connection() -> None:
        nonlocal measured_start, last_done, waiting
        reader, writer = await asyncio.open_connection(load.host, load.port)
        try:
            while True:
                due = 0.0
                if load.rate:
                    slot = await wait_for_slot()
                    if slot is None:
                        return
                    due = slot
                now = loop.time()
                if now >= stop_at:
                    return
                request = feed.next()
                if request is None:
                    return
                sent = due or time.perf_counter()
                writer.write(request)
                waiting += 1
                answer = await _read_answer(reader)
                waiting -= 1
                elapsed = (time.perf_counter() - sent) * 1000
                done = loop.time()
                if done < measure_from:
                    continue
                if measured_start is None:
                    measured_start = measure_from
                last_done = max(last_done, done)
                result.requests += 1
                result.late += 1 if due else 0
                result.statuses[answer.status] = result.statuses.get(answer.status, 0) + 1
                ok = answer.status == load.expect_status and load.expect_body in answer.body
                if not ok:
                    result.errors += 1
                    if not result.first_error:
                        result.first_error = f"{answer.status} {answer.body[:300]!r}"
                result.latencies_ms.append(elapsed)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        await asyncio.wait_for(
            asyncio.gather(*(connection() for _ in range(load.connections))),
            load.warmup + load.duration + ANSWER_TIMEOUT,
        )
    except TimeoutError:
        result.first_error = result.first_error or (
            f"requests without an answer after {ANSWER_TIMEOUT:.0f} s (counted as errors)"
        )
        result.errors += waiting
    if measured_start is not None:
        result.seconds = max(last_done - measured_start, 1e-9)
    if cpu_from and (wall := time.perf_counter() - cpu_from[3]) > 0:
        result.loader_cpu = (process_cpu_seconds() - cpu_from[0]) / wall
        result.loader_wait = (run_queue_seconds() - cpu_from[1]) / wall
        if load.watch:
            result.server_cpu = tree_cpu_seconds(load.watch) - cpu_from[2]
    return result


def _child(load: Load, queue: multiprocessing.Queue[Any]) -> None:
    if load.cpus:
        pin(os.getpid(), load.cpus)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        runner = asyncio.run
    try:
        result = runner(_drive(load))
        queue.put(("ok", result))
    except BaseException as exc:
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run(load: Load) -> Result:
    """Generate ``load`` from a separate process and return what it measured."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[Any] = context.Queue()
    process = context.Process(target=_child, args=(load, queue), daemon=True)
    process.start()
    deadline = time.monotonic() + load.warmup + load.duration + 120
    try:
        while True:
            try:
                kind, value = queue.get(timeout=1)
                break
            except Empty:
                if not process.is_alive():
                    raise RuntimeError(
                        f"the load generator exited ({process.exitcode}) without a result"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("the load generator did not finish in time") from None
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    if kind != "ok":
        raise RuntimeError(f"the load generator failed: {value}")
    assert isinstance(value, Result)
    return value


def form_request(
    host: str, port: int, path: str, body: str, headers: dict[str, str] | None = None
) -> bytes:
    """A prepared ``application/x-www-form-urlencoded`` POST."""
    return raw_request(
        host,
        port,
        "POST",
        path,
        body.encode(),
        {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
    )


def raw_request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    """One HTTP/1.1 keep-alive request as bytes."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


__all__ = [
    "BUSY_LOADER",
    "Load",
    "Result",
    "form_request",
    "process_cpu_seconds",
    "raw_request",
    "run",
    "tree_cpu_seconds",
]
