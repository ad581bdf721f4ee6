"""The request id on the gateway's way upstream and in its audit records: the upstream gets
the id the gateway's log and answer carry, never a client's malformed X-Request-Id."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from bastion.config import UpstreamSettings
from bastion.gateway.audit import AuditLog, AuditMiddleware
from bastion.gateway.http_proxy import HttpProxy
from bastion.gateway.upstream_http import UpstreamPool
from bastion.ops.request_id import RequestIdMiddleware
from tests.gateway.conftest import ALICE, ProxyFactory, with_principal
from tests.gateway.upstream import RecordingUpstream
from tests.support.live import serve

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}


def _ids_upstream(recorder: RecordingUpstream) -> list[str]:
    return [v for k, v in recorder.requests[-1]["headers"] if k.lower() == "x-request-id"]


async def test_without_the_middleware_a_clients_x_request_id_is_not_relayed(
    upstream: tuple[RecordingUpstream, str], proxied: ProxyFactory, http: httpx.AsyncClient
) -> None:
    """The proxy alone relays no client's X-Request-Id, not even a well-formed one: only the id
    RequestIdMiddleware checked or made goes upstream."""
    recorder, url = upstream
    async with proxied(url=url) as base:
        response = await http.post(f"{base}/mcp", json=INIT, headers={"X-Request-Id": "trace-1"})
    assert response.status_code == 200, response.text
    assert _ids_upstream(recorder) == []


async def _gateway_stack(
    url: str, audit: AuditLog, recorder: RecordingUpstream, headers: list[tuple[str, str]]
) -> tuple[httpx.Response, list[str]]:
    pool = UpstreamPool()
    proxy = HttpProxy(
        UpstreamSettings(name="notes", path="/mcp", url=url, resource="http://127.0.0.1:1/mcp"),
        http=pool,
    )
    stack = RequestIdMiddleware(
        AuditMiddleware(with_principal(proxy, ALICE), upstream="notes", log=audit)
    )
    try:
        async with serve(stack) as base, httpx.AsyncClient(timeout=10) as http:
            response = await http.post(f"{base}/mcp", json=INIT, headers=headers)
    finally:
        await pool.aclose()
    assert response.status_code == 200, response.text
    return response, _ids_upstream(recorder)


async def test_malformed_or_repeated_ids_are_replaced_upstream_and_in_the_audit(
    upstream: tuple[RecordingUpstream, str], tmp_path: Path
) -> None:
    recorder, url = upstream
    audit = AuditLog(tmp_path / "audit.jsonl")
    cases = [
        [("X-Request-Id", 'say "hi" <b>')],
        [("X-Request-Id", "x" * 129)],
        [("X-Request-Id", "first"), ("X-Request-Id", "second")],
    ]
    for headers in cases:
        response, upstream_ids = await _gateway_stack(url, audit, recorder, headers)
        fresh = response.headers["x-request-id"]
        assert fresh not in [v for _, v in headers]
        assert upstream_ids == [fresh]
    audit.close()
    text = (tmp_path / "audit.jsonl").read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == 3
    for headers in cases:
        for _, value in headers:
            assert value not in text
    assert all(len(record["request_id"]) == 22 for record in records)


async def test_a_well_formed_id_reaches_the_upstream_the_answer_and_the_audit(
    upstream: tuple[RecordingUpstream, str], tmp_path: Path
) -> None:
    recorder, url = upstream
    audit = AuditLog(tmp_path / "audit.jsonl")
    response, upstream_ids = await _gateway_stack(
        url, audit, recorder, [("X-Request-Id", "trace-9f2c")]
    )
    audit.close()
    assert response.headers.get_list("x-request-id") == ["trace-9f2c"]
    assert upstream_ids == ["trace-9f2c"]
    [record] = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert record["request_id"] == "trace-9f2c"
