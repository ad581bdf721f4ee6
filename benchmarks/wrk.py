"""wrk (Debian's ``/usr/bin/wrk``, C with LuaJIT) as a second load generator for a :class:`Load`.

A generated Lua script sends the load's prepared requests byte for byte, in rotation, checks each
answer's status and body like :mod:`benchmarks.loadgen` does (a wrong one is an error), and
prints, when done, the request count, the status counts and the whole latency histogram as JSON,
so that rows measured by wrk merge and report like the others. wrk runs pinned to the load
CPU(s), one thread per CPU; its CPU use comes from ``wait4``.

wrk sends closed-loop only and cannot stop at the end of a pool of single-use requests, so
pooled and fixed-rate loads stay with the own generator (:func:`supports`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.loadgen import Load, Result, tree_cpu_seconds

MARK = "WRK-RESULT "

# Placeholders: __REQUESTS__, __STATUS__, __BODY__ (Lua literals), __MARK__.
_SCRIPT = r"""
requests = {__REQUESTS__}
expect_status = __STATUS__
expect_body = __BODY__
counter = 0
statuses = {}
bad = 0
first_error = ""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= expect_status or not string.find(body or "", expect_body, 1, true) then
    bad = bad + 1
    if first_error == "" then
      first_error = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

local function quote(s)
  return '"' .. string.gsub(s, '[%c"\\\128-\255]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, _)
  local codes, errors, first = {}, 0, ""
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do
      codes[code] = (codes[code] or 0) + count
    end
    errors = errors + thread:get("bad")
    if first == "" then first = thread:get("first_error") end
  end
  local parts = {}
  for code, count in pairs(codes) do
    parts[#parts + 1] = string.format('"%d": %d', code, count)
  end
  local histogram = {}
  for i = 1, #latency do
    local value, count = latency(i)
    histogram[#histogram + 1] = string.format("[%d, %d]", value, count)
  end
  local e = summary.errors
  io.write(string.format(
    '__MARK__{"requests": %d, "duration_us": %d, "bad": %d, "socket_errors": %d, '
    .. '"statuses": {%s}, "first_error": %s, "histogram_us": [%s]}\n',
    summary.requests, summary.duration, errors, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", "), quote(first), table.concat(histogram, ", ")))
end
"""


def program() -> str | None:
    """wrk on PATH (Debian's package), or None."""
    return shutil.which("wrk")


def supports(load: Load) -> bool:
    """Whether wrk can send ``load`` (not a pool of single-use requests, not a fixed rate)."""
    return not load.pooled and load.rate is None


def _lua_string(data: bytes) -> str:
    """A Lua string literal of ``data``, byte for byte (decimal escapes outside printables)."""
    out = []
    for byte in data:
        if 32 <= byte < 127 and byte not in (34, 92):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def script(requests: Sequence[bytes], expect_status: int, expect_body: bytes) -> str:
    """The Lua script that sends ``requests`` in rotation and reports as JSON."""
    return (
        _SCRIPT.replace("__MARK__", MARK)
        .replace("__STATUS__", str(expect_status))
        .replace("__BODY__", _lua_string(expect_body))
        .replace("__REQUESTS__", ", ".join(_lua_string(r) for r in requests))
    )


def _pinned(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    if not cpus:
        return None

    def pin_self() -> None:
        os.sched_setaffinity(0, cpus)

    return pin_self


def _wrk(wrk: str, load: Load, lua: Path, seconds: int) -> tuple[str, float, float]:
    """One wrk run: its output, its CPU seconds and its wall seconds."""
    threads = max(1, len(load.cpus or ()) or 1)
    argv = [wrk, f"-t{threads}", f"-c{max(load.connections, threads)}", f"-d{seconds}s"]
    argv += ["--timeout", "10s", "--latency", "-s", str(lua)]
    argv.append(f"http://{load.host}:{load.port}/")
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - wrk from PATH, our own arguments
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pinned(load.cpus),
        )
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            raise
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {text[-2000:]}")
    return text, usage.ru_utime + usage.ru_stime, wall


def parse(text: str, cpu_seconds: float, wall: float) -> Result:
    """The :class:`Result` of a wrk run from its output."""
    line = next((x for x in text.splitlines() if x.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {text[-2000:]}")
    data = json.loads(line[len(MARK) :])
    latencies: list[float] = []
    for micros, count in data["histogram_us"]:
        latencies.extend([micros / 1000] * count)
    result = Result(
        requests=data["requests"],
        errors=data["bad"] + data["socket_errors"],
        seconds=data["duration_us"] / 1e6,
        statuses={int(k): v for k, v in data["statuses"].items()},
        first_error=data["first_error"],
        latencies_ms=latencies,
        loader="wrk",
        loader_cpu=cpu_seconds / wall if wall > 0 else None,
    )
    if data["socket_errors"] and not result.first_error:
        result.first_error = (
            f"{data['socket_errors']} socket errors (connect, read, write, timeout)"
        )
    return result


def run(load: Load) -> Result:
    """Send ``load`` with wrk: a warm-up run (not counted), then the measured one. wrk counts
    whole seconds, so the durations are rounded up."""
    wrk = program()
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    if not supports(load):
        raise ValueError("wrk sends neither pools of single-use requests nor a fixed rate")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script(load.requests, load.expect_status, load.expect_body))
        lua = Path(handle.name)
    try:
        if load.warmup > 0:
            _wrk(wrk, load, lua, max(1, math.ceil(load.warmup)))
        servers = tree_cpu_seconds(load.watch)
        result = parse(*_wrk(wrk, load, lua, max(1, math.ceil(load.duration))))
        if load.watch:
            result.server_cpu = tree_cpu_seconds(load.watch) - servers
        return result
    finally:
        with contextlib.suppress(OSError):
            lua.unlink()


__all__ = ["parse", "program", "run", "script", "supports"]
