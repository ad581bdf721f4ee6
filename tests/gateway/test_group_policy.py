"""Per-tool policy by group at the gateway (issue: "who may get which token", per-tool policy):
a tool only ``editors`` may call. A caller outside the group gets 403 naming it and no step-up
challenge (no scope would help); a member's call reaches the upstream with the groups in the
signed identity headers. Person tokens come from bastion's AS through the code flow, with the
``groups`` claim (RFC 9068 §2.2.3.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.authserver.app import create_app
from bastion.config import Settings
from bastion.gateway import create_gateway_app, verify_identity_headers
from tests.gateway.upstream import RecordingUpstream
from tests.support.flow import add_user, authorize, exchange, register
from tests.support.live import free_port, serve

IDENTITY_SECRET = "gateway-identity-secret-0123456789abcdef"
ACCEPT = "application/json, text/event-stream"


def add_note() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add_note"}}


@dataclass
class Stack:
    issuer: str
    notes: str
    recorder: RecordingUpstream

    async def person_token(self, username: str) -> str:
        async with httpx.AsyncClient(base_url=self.issuer) as http:
            client_id = (await register(http))["client_id"]
            done = await authorize(
                http, client_id, username=username, resource=self.notes, scope="mcp:tools"
            )
            answer = await exchange(http, client_id, done)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token


@pytest.fixture
async def stack(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Stack]:
    recorder = RecordingUpstream()
    as_port, gateway_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    async with serve(recorder.app) as upstream:
        settings = make_settings(
            issuer=issuer,
            resources=[],
            gateway={
                "enabled": True,
                "public_url": gateway,
                "identity_secret": IDENTITY_SECRET,
                "upstreams": [
                    {
                        "name": "notes",
                        "path": "/mcp/notes",
                        "url": f"{upstream}/mcp",
                        "scopes": ["mcp:tools"],
                        "policy": {
                            "default": ["mcp:tools"],
                            "tool_groups": {"add_note": ["editors", "admins"]},
                        },
                        "forward_identity": True,
                    }
                ],
            },
        )
        await add_user(settings, "alice", groups=["editors", "Team A, B"])
        await add_user(settings, "bob", groups=["readers"])
        async with (
            serve(create_app(settings), port=as_port),
            serve(create_gateway_app(settings), port=gateway_port),
        ):
            try:
                yield Stack(issuer, f"{gateway}/mcp/notes", recorder)
            finally:
                recorder.release()


async def test_a_caller_outside_the_group_gets_403_naming_it_and_no_challenge(
    stack: Stack,
) -> None:
    token = await stack.person_token("bob")
    async with httpx.AsyncClient() as http:
        response = await http.post(
            stack.notes,
            json=add_note(),
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        )
    assert response.status_code == 403, response.text
    assert "www-authenticate" not in response.headers
    body = response.json()
    assert body["error"] == "access_denied"
    assert "tool add_note" in body["error_description"]
    assert "admins or editors" in body["error_description"]
    assert "the caller (subject " in body["error_description"]
    assert "an administrator can add it (bastion users groups)" in body["error_description"]
    assert stack.recorder.requests == []


async def test_a_batch_hiding_the_tool_behind_a_ping_is_refused_too(stack: Stack) -> None:
    token = await stack.person_token("bob")
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            stack.notes,
            json=[ping, add_note()],
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        )
    assert response.status_code == 403, response.text
    assert stack.recorder.requests == []


async def test_a_member_calls_the_tool_and_the_upstream_sees_the_groups_signed(
    stack: Stack,
) -> None:
    token = await stack.person_token("alice")
    async with httpx.AsyncClient() as http:
        response = await http.post(
            stack.notes,
            json=add_note(),
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        )
    assert response.status_code == 200, response.text
    assert len(stack.recorder.requests) == 1
    headers = stack.recorder.last_headers
    identity = verify_identity_headers(headers, IDENTITY_SECRET, audience=stack.notes)
    assert identity.groups == {"editors", "Team A, B"}
