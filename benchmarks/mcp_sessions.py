"""Stateful MCP sessions for the gateway benchmarks: open N (``initialize``, then
``notifications/initialized``), prepare one ``tools/call`` per session for the load generator to
rotate through, and end them (DELETE) afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks.loadgen import raw_request

PROTOCOL = "2025-06-18"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "bastion-benchmarks", "version": "1"},
    },
}
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "echo", "arguments": {"text": "hello"}},
}
# A tool's answer as the SDK writes it (a failing tool answers 200 too, with isError true).
CALL_OK = b'"isError":false'
# Distinct request ids a load rotates through.
IDS = 4096
# Sessions opened at once (a stdio session starts a process).
OPENING = 8


@dataclass(frozen=True)
class Session:
    """An initialized session: its ``Mcp-Session-Id`` and the protocol version agreed."""

    id: str
    protocol: str


def _message(answer: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of an answer, plain JSON or the first event of an SSE stream."""
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        for line in answer.text.splitlines():
            if line.startswith("data:"):
                message: dict[str, Any] = json.loads(line[5:])
                return message
        raise RuntimeError(f"an SSE answer without data: {answer.text[:300]!r}")
    parsed: dict[str, Any] = answer.json()
    return parsed


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def open_sessions(url: str, count: int, token: str | None = None) -> list[Session]:
    """``count`` initialized sessions at the MCP endpoint ``url``."""
    async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
        gate = asyncio.Semaphore(OPENING)

        async def one() -> Session:
            async with gate:
                answer = await http.post(url, json=INITIALIZE, headers={**HEADERS, **_auth(token)})
                if answer.status_code != 200 or "mcp-session-id" not in answer.headers:
                    raise RuntimeError(
                        f"initialize at {url}: {answer.status_code} {answer.text[:300]!r}"
                    )
                session = Session(
                    answer.headers["mcp-session-id"], _message(answer)["result"]["protocolVersion"]
                )
                done = await http.post(
                    url,
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers={**HEADERS, **_auth(token), **session_headers(session)},
                )
                if done.status_code != 202:
                    raise RuntimeError(
                        f"notifications/initialized at {url}: {done.status_code} "
                        f"{done.text[:300]!r}"
                    )
                return session

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_sessions(url: str, sessions: Sequence[Session], token: str | None = None) -> None:
    """End ``sessions`` (DELETE); failures are ignored (the server stops anyway)."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        for session in sessions:
            try:
                await http.delete(url, headers={**_auth(token), **session_headers(session)})
            except httpx.HTTPError:
                continue


def session_headers(session: Session) -> dict[str, str]:
    return {"Mcp-Session-Id": session.id, "MCP-Protocol-Version": session.protocol}


def calls(
    port: int, path: str, sessions: Sequence[Session], token: str | None = None
) -> list[bytes]:
    """Prepared ``tools/call`` requests of ``echo`` to ``127.0.0.1:port`` ``path``, cycling
    through ``sessions``, each with its own JSON-RPC id: a session answers a request by its id,
    so two requests in flight with the same id in one session would cross (:data:`IDS` ids,
    many more than requests in flight)."""
    prepared = []
    for number in range(max(IDS, len(sessions))):
        session = sessions[number % len(sessions)]
        body = json.dumps({**CALL, "id": number + 1}).encode()
        headers = {**HEADERS, **_auth(token), **session_headers(session)}
        prepared.append(raw_request("127.0.0.1", port, "POST", path, body, headers))
    return prepared


__all__ = ["CALL", "CALL_OK", "Session", "calls", "close_sessions", "open_sessions"]
