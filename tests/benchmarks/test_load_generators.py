"""The benchmarks' load generators count what they must: wrong answers as errors (wrk and the
own generator alike), no more requests than a fixed schedule holds, and the report flags a
load generator that may have limited what it measured."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace

import pytest
from benchmarks.loadgen import Load, Result, raw_request
from benchmarks.machine import describe
from benchmarks.report import Ratio, Report, Row
from benchmarks.servers import free_port, uvicorn_app

from benchmarks import loadgen, wrk


@pytest.fixture(scope="module")
def bare_port() -> Iterator[int]:
    """benchmarks.apps:bare under uvicorn: GET /mcp answers {"hello": "anonymous"}, other
    paths 404."""
    port = free_port()
    with uvicorn_app("bare", "benchmarks.apps:bare", port=port, env={}):
        yield port


def _load(port: int) -> Load:
    """GET /mcp and GET /nope in turn; only /mcp's answer is right."""
    requests = [
        raw_request("127.0.0.1", port, "GET", "/mcp"),
        raw_request("127.0.0.1", port, "GET", "/nope"),
    ]
    return Load(
        "127.0.0.1", port, requests, connections=4, duration=1, warmup=0, expect_body=b"hello"
    )


def _check_counts(result: Result) -> None:
    assert set(result.statuses) == {200, 404}
    assert result.requests == result.statuses[200] + result.statuses[404]
    # Every 404 is wrong, no 200 is.
    assert result.errors == result.statuses[404]
    assert result.first_error.startswith("404")
    assert result.loader_cpu is not None
    assert result.loader_cpu >= 0


def test_wrk_sends_the_requests_in_turn_and_counts_wrong_answers(bare_port: int) -> None:
    if shutil.which("wrk") is None:
        message = "needs wrk (Debian package wrk; scripts/test-setup.sh installs it)"
        if os.environ.get("BASTION_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (BASTION_REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    result = wrk.run(_load(bare_port))
    assert result.loader == "wrk"
    _check_counts(result)
    # wrk's histogram (with its own coordinated-omission correction) holds every request.
    assert len(result.latencies_ms) >= result.requests


def test_own_generator_sends_the_requests_in_turn_and_counts_wrong_answers(
    bare_port: int,
) -> None:
    result = loadgen.run(_load(bare_port))
    assert result.loader == "own"
    _check_counts(result)
    assert len(result.latencies_ms) == result.requests


def test_wrk_refuses_pools_and_fixed_rates() -> None:
    load = _load(1)
    for unsupported in (replace(load, pooled=True), replace(load, rate=10.0)):
        assert not wrk.supports(unsupported)
        with pytest.raises(ValueError, match="neither pools"):
            wrk.run(unsupported)


def test_a_fixed_rate_sends_no_more_than_its_schedule(bare_port: int) -> None:
    load = replace(_load(bare_port), requests=_load(bare_port).requests[:1], rate=40.0)
    result = loadgen.run(load)
    assert result.errors == 0
    # 40 requests/s for 1 s: slots 0 to 39.
    assert 0 < result.requests <= 40


def _report(rows: list[Row], ratios: list[Ratio] | None = None) -> Report:
    report = Report(
        command="test", machine=describe(None, None), settings={}, rows=rows, ratios=ratios or []
    )
    report.compute_ratios()
    return report


def test_the_report_flags_a_busy_or_starved_load_generator() -> None:
    busy = Row("g", "busy", rounds=[Result(requests=10, seconds=1.0, loader_cpu=0.95)])
    starved = Row(
        "g", "starved", rounds=[Result(requests=10, seconds=1.0, loader_cpu=0.2, loader_wait=0.6)]
    )
    idle = Row(
        "g", "idle", rounds=[Result(requests=10, seconds=1.0, loader_cpu=0.38, loader_wait=0.01)]
    )
    text = _report([busy, starved, idle]).markdown()
    assert "| **95 %** |" in text
    assert "| 20 % (**waited 60 %**) |" in text
    assert "| 38 % |" in text
    assert "used more than 90% of its CPU** in: busy." in text
    assert "waited for its CPU more than 50% of the time** in: starved." in text


def test_an_upper_bound_target_is_met_at_or_below_it() -> None:
    above = Ratio("added p50", "a", "b", target=0.5, given=0.6, at_most=True, unit="ms")
    at = Ratio("added p99", "a", "b", target=2.0, given=2.0, at_most=True, unit="ms")
    text = _report([], [above, at]).markdown()
    assert (above.met, at.met) == (False, True)
    assert "| added p50 | 0.60 ms | <= 0.50 ms | **no** |" in text
    assert "| added p99 | 2.00 ms | <= 2.00 ms | yes |" in text
