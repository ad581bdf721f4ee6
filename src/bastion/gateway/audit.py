"""One audit record per JSON-RPC message of a gateway request (one per request without any):
who called which upstream, what, and how it went.

A record is one JSON object::

    {"time": "2026-01-02T03:04:05.678Z", "upstream": "notes", "sub": "alice",
     "client_id": "vscode", "http_method": "POST", "path": "/mcp/notes",
     "rpc_method": "tools/call", "tool": "search", "rpc_id": 7, "status": 200,
     "error": null, "completed": true, "latency_ms": 12.3, "session_id": "…",
     "request_id": "…"}

A batch (``[ping, tools/call add_note]``) gives a record per message, each with its own
``rpc_method``, ``tool`` and ``rpc_id`` and the request's ``status`` and ``latency_ms``. ``sub``
and ``client_id`` are null when the request was refused before a token was verified
(401); ``error`` is the OAuth ``error`` code of a refusal (``invalid_token``,
``insufficient_scope``…) or the message of a gateway error (502, 504); ``status`` is null and
``completed`` false when the client left before an answer; ``latency_ms`` runs until the last
byte of the answer (for an SSE stream: until it closed); ``request_id`` is the id the request's
log lines carry (:mod:`bastion.ops.request_id`). Tokens and headers other than
``Mcp-Session-Id`` are never read.

The messages come from the body as the stack read it (:func:`bastion.edge.body.body_of`: the
resource middleware, proxy or bridge read it once and kept it in the scope), so the audit
names exactly what was authorized and forwarded; a body nobody read, or one refused as not
JSON, gives one record without a method.

Records go to the ``bastion.audit`` logger (INFO; ``sub`` as the record's ``subject`` field,
hashed, omitted or kept as ``logging.user_ids`` says) and, when configured, are appended whole
as JSON lines to a file created with mode 0600.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion import safe_json
from bastion.edge import jsonrpc
from bastion.edge.body import body_of
from bastion.gateway.mcp_session import session_header, session_id_of
from bastion.logs import escape_json_controls, get_logger
from bastion.ops.request_id import request_id_of
from bastion.private_files import private_dir
from bastion.resource.principal import principal_of

LOGGER = "bastion.audit"
ERROR_PEEK_BYTES = 4096


def _json_line(record: Mapping[str, object]) -> str:
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
    return escape_json_controls(line)


class AuditLog:
    """Where records go: the ``bastion.audit`` logger and an optional JSON-lines file."""

    def __init__(self, path: Path | None = None, *, logger: logging.Logger | None = None) -> None:
        self.path = path
        self._logger = logger or get_logger(LOGGER)
        self._fd: int | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AuditLog(path={str(self.path) if self.path else None!r})"

    def _open(self, path: Path) -> int:
        if self._fd is None:
            private_dir(path.parent)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(path, flags, 0o600)
            os.fchmod(fd, 0o600)  # an existing file may have been created more openly
            self._fd = fd
        return self._fd

    def write(self, record: Mapping[str, object]) -> None:
        """Log one record and append it to the file (one ``write``: lines never interleave)."""
        # In the log the subject is a field, which logging.user_ids hashes or omits; the file
        # is the audit trail and names it. A line no handler would take is not made.
        if self._logger.isEnabledFor(logging.INFO):
            shown = {k: v for k, v in record.items() if k != "sub"}
            self._logger.info("%s", _json_line(shown), extra={"subject": record.get("sub")})
        if self.path is None:
            return
        line = _json_line(record)
        with self._lock:
            try:
                os.write(self._open(self.path), (line + "\n").encode())
            except OSError as exc:
                self._logger.error("cannot write the audit log %s: %s", self.path, exc)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _Clock:
    """UTC wall-clock time as ``2026-01-02T03:04:05.678Z``, the date and time part made once
    a second (a record per request: formatting a datetime each time cost more than the rest)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second, self._prefix = second, stamp
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"


_now = _Clock()


def _error_of(body: bytes) -> str | None:
    """The OAuth ``error`` code, or the JSON-RPC error message, of an error answer."""
    try:
        document = safe_json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return None


class AuditMiddleware:
    """Wrap one upstream's stack (outside the resource-server middleware, so refusals are
    recorded too) and write its records (one per JSON-RPC message) when its answer ends.

    The stack must read request bodies with :func:`bastion.edge.body.read_body` (the resource
    middleware, :class:`~bastion.gateway.HttpProxy` and :class:`~bastion.gateway.StdioBridge`
    do): the records name the messages of the body it kept in the scope."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        upstream: str,
        log: AuditLog,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.upstream = upstream
        self.log = log
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        error_body = bytearray()
        status: int | None = None
        completed = False
        session_id = session_id_of(scope)

        async def watch_send(message: Message) -> None:
            nonlocal status, completed, session_id
            if message["type"] == "http.response.start":
                status = message["status"]
                session_id = session_id or session_header(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                if status is not None and status >= 400 and len(error_body) < ERROR_PEEK_BYTES:
                    error_body.extend(message.get("body", b"")[:ERROR_PEEK_BYTES])
                if not message.get("more_body", False):
                    completed = True
            await send(message)

        try:
            await self.app(scope, receive, watch_send)
        finally:
            outcome = {
                "status": status,
                "error": _error_of(bytes(error_body)) if error_body else None,
                "completed": completed,
                "latency_ms": round((self.clock() - started) * 1000, 2),
                "session_id": session_id,
            }
            for message in _messages(scope):
                self.log.write(self._record(scope, message, outcome))

    def _record(
        self, scope: Scope, message: jsonrpc.MessageSummary, outcome: Mapping[str, object]
    ) -> dict[str, object]:
        principal = principal_of(scope)
        return {
            "time": _now(),
            "upstream": self.upstream,
            "sub": principal.subject if principal else None,
            "client_id": principal.client_id if principal else None,
            "http_method": scope.get("method"),
            "path": scope.get("path"),
            "rpc_method": message.method,
            "tool": message.tool,
            "rpc_id": message.request_id,
            **outcome,
            "request_id": request_id_of(scope),
        }


def _messages(scope: Scope) -> list[jsonrpc.MessageSummary]:
    """The messages to record: those of the body the stack read, else (JSON that is not
    JSON-RPC) the calls its policy saw, else one blank."""
    body = body_of(scope)
    if body is None:
        return [jsonrpc.MessageSummary()]
    found = [jsonrpc.summary(message) for message in body.messages]
    if not found:
        found = [jsonrpc.MessageSummary(call.method, call.tool) for call in body.calls or ()]
    return found or [jsonrpc.MessageSummary()]


__all__ = ["LOGGER", "AuditLog", "AuditMiddleware"]
