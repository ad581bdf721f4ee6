"""Audit records: one per request, who, which upstream, which method and tool, outcome,
latency; never the token."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from bastion.edge.asgi import send_json
from bastion.edge.body import read_body
from bastion.gateway.audit import AuditLog, AuditMiddleware
from tests.gateway.conftest import ALICE, with_principal

TOKEN = "eyJhbGciOiJFUzI1NiJ9.secret-token-value.sig"


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    """An upstream stand-in: reads the body, answers 200 with a session id, or 403."""
    await read_body(scope, receive, 1 << 20)
    if scope["path"] == "/denied":
        await send_json(send, 403, {"error": "insufficient_scope", "error_description": "x"})
        return
    await send_json(send, 200, {"ok": True}, [("Mcp-Session-Id", "sess-1")])


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_one_record_per_request_with_caller_method_tool_outcome_and_latency(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request gives one JSON line (file mode 0600) and one bastion.audit log record."""
    caplog.set_level(logging.INFO, "bastion.audit")
    path = tmp_path / "logs" / "audit.jsonl"
    log = AuditLog(path)
    app = AuditMiddleware(with_principal(answer, ALICE), upstream="notes", log=log)
    body = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "search"}}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        ok = await client.post(
            "/mcp/notes", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        denied = await client.post("/denied", json=body, headers={"Mcp-Session-Id": "sess-2"})
    log.close()
    assert (ok.status_code, denied.status_code) == (200, 403)
    first, second = lines(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first["upstream"] == "notes"
    assert (first["sub"], first["client_id"]) == ("alice", "client-1")
    assert (first["http_method"], first["path"]) == ("POST", "/mcp/notes")
    assert (first["rpc_method"], first["tool"], first["rpc_id"]) == ("tools/call", "search", 4)
    assert (first["status"], first["error"], first["completed"]) == (200, None, True)
    assert first["session_id"] == "sess-1"  # from the answer (an initialize, say)
    assert isinstance(first["latency_ms"], float)
    assert first["latency_ms"] >= 0
    assert first["time"].endswith("Z")
    assert (second["status"], second["error"]) == (403, "insufficient_scope")
    assert second["session_id"] == "sess-2"  # from the request
    assert TOKEN not in path.read_text()
    assert TOKEN not in caplog.text
    assert len([r for r in caplog.records if r.name == "bastion.audit"]) == 2


async def test_records_are_appended_and_the_file_mode_is_tightened(tmp_path: Path) -> None:
    """An existing audit file is appended to, never truncated, and made 0600."""
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": true}\n')
    path.chmod(0o644)
    log = AuditLog(path)
    log.write({"n": 1})
    log.close()
    log = AuditLog(path)
    log.write({"n": 2})
    log.close()
    assert lines(path) == [{"earlier": True}, {"n": 1}, {"n": 2}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_without_a_file_records_only_go_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "bastion.audit")
    AuditLog(None).write({"upstream": "notes"})
    assert caplog.records[-1].name == "bastion.audit"
    assert json.loads(caplog.records[-1].getMessage()) == {"upstream": "notes"}


async def test_the_log_names_the_subject_as_a_field_the_file_in_the_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit file is the trail and keeps ``sub``; the log line carries it only as the
    record's ``subject`` field, which logging.user_ids hashes or omits."""
    caplog.set_level(logging.INFO, "bastion.audit")
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write({"upstream": "notes", "sub": "alice", "client_id": "vscode"})
    log.close()
    [record] = [r for r in caplog.records if r.name == "bastion.audit"]
    assert json.loads(record.getMessage()) == {"upstream": "notes", "client_id": "vscode"}
    assert record.subject == "alice"  # type: ignore[attr-defined]
    assert lines(tmp_path / "audit.jsonl") == [
        {"upstream": "notes", "sub": "alice", "client_id": "vscode"}
    ]
