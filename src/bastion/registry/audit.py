"""The registry's audit trail: one database record per API request, and its export.

:class:`AuditMiddleware` sits outside the token check, so refusals are recorded too (401 without a
subject, 403 with the subject the token named). A record holds who (``sub``, ``client_id``),
which entry (server name and version, when the path or body names one), the action (``list``,
``list_versions``, ``get``, ``publish``, ``update``, ``delete``, ``set_status``,
``set_server_status``, ``unknown``), the HTTP status, a short result code (``ok``,
``unauthorized``, ``invalid_token``, ``insufficient_scope``, ``not_found``, ``invalid``,
``namespace_denied``…), details (for lists: the entries returned) and the request id its log
lines carry (:mod:`bastion.ops.request_id`). The record is written
before the last byte of the answer is sent, so a client that has its answer can count on the
record. Preflights, the OpenAPI document and the protected-resource metadata are not recorded.

Records are written by group commit (:class:`AuditWriter`): the records of requests that finish
while a commit is under way go to the database together in the next transaction. Each request
still waits for its own record to be committed; concurrent requests share the commit instead
of queueing for the database's write lock one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.logs import get_logger
from bastion.ops import metrics
from bastion.ops.request_id import request_id_of
from bastion.registry import paths
from bastion.registry.names import VERSION_MAX, name_problem
from bastion.registry.problems import status_result
from bastion.registry.times import MillisClock, format_rfc3339
from bastion.resource.principal import principal_of
from bastion.store import registry as rows
from bastion.store.database import Database
from bastion.store.registry import AuditRecord

log = get_logger("bastion.registry.audit")
NOTE = "bastion.registry.audit"
_PAGE = 1000
# Commits of audit batches under way at once on PostgreSQL (AuditWriter).
PG_FLUSHES = 2


@dataclass
class Note:
    """What a handler adds to its request's record (set in ``scope[NOTE]``)."""

    action: str
    name: str | None = None
    version: str | None = None
    result: str | None = None
    detail: dict[str, object] | None = None
    # json.dumps(detail), when the handler has it already (set together with detail).
    detail_json: str | None = None


def note_of(scope: Scope) -> Note | None:
    """The note of a request under the audit middleware."""
    found = scope.get(NOTE)
    return found if isinstance(found, Note) else None


def clean_name(name: object) -> str | None:
    """``name`` when it is a valid server name (what the audit stores), else None."""
    return name if isinstance(name, str) and name_problem(name) is None else None


def clean_version(version: object) -> str | None:
    """``version`` when it can be stored (one short line of text), else None."""
    if not isinstance(version, str) or len(version) > VERSION_MAX:
        return None
    if any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in version):
        return None
    return version


def _result_of(status: int, challenge: str | None) -> str:
    if 200 <= status < 300:
        return "ok"
    if challenge:
        for code in ("invalid_token", "insufficient_scope", "invalid_request"):
            if f'error="{code}"' in challenge:
                return code
    return status_result(status)


class AuditWriter:
    """Group commit of audit records (see the module docstring).

    :meth:`write` returns once the record is committed, or raises what the commit raised. Up
    to ``flushes`` flush tasks run at a time (each takes what is waiting when it starts, at
    most ``max_batch`` records per statement): with more than one, a batch gathers while
    another commits, which raises throughput where a commit's latency, not the CPU, is the
    limit (PostgreSQL); SQLite has one writer at a time, so one is enough there.
    """

    def __init__(self, db: Database, *, max_batch: int = 500, flushes: int = 1) -> None:
        if flushes < 1:
            raise ValueError("flushes must be at least 1")
        self.db = db
        self.max_batch = max_batch
        self.flushes = flushes
        self._pending: list[tuple[AuditRecord, asyncio.Future[None]]] = []
        self._flushing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"AuditWriter(pending={len(self._pending)}, flushing={len(self._flushing)})"

    async def write(self, record: AuditRecord) -> None:
        """Commit ``record`` together with whatever else is waiting."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, done))
        if len(self._flushing) < self.flushes:
            task = asyncio.create_task(self._flush())
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        # A request cancelled meanwhile does not cancel the commit its record is part of.
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                # One statement, atomic on its own: on PostgreSQL it commits by itself (no
                # BEGIN and COMMIT round trips), on SQLite in a transaction.
                async with self.db.statements() as conn:
                    await rows.add_audits(conn, [record for record, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def aclose(self) -> None:
        """Wait for the records still being written."""
        while self._flushing:
            await asyncio.gather(*self._flushing)


class AuditMiddleware:
    """Record every request to the API paths under ``prefix`` (a plain ASGI middleware)."""

    def __init__(self, app: ASGIApp, *, db: Database, prefix: str, clock: MillisClock) -> None:
        self.app = app
        self.db = db
        self.prefix = prefix
        self.clock = clock
        self.writer = AuditWriter(db, flushes=1 if db.is_sqlite else PG_FLUSHES)

    def note(self, scope: Scope) -> Note:
        """The note of a new request, put in its scope (what the handlers fill in)."""
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = paths.parse(raw, self.prefix)
        action = target.action(scope["method"]) if target else None
        note = Note(
            action=action or "unknown",
            name=target.name if target else None,
            version=target.version if target else None,
        )
        scope[NOTE] = note
        return note

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        note = self.note(scope)
        status = 500
        challenge: str | None = None
        written = False

        async def audited(message: Message) -> None:
            nonlocal written, status, challenge
            if message["type"] == "http.response.start":
                status = message["status"]
                if status >= 300:  # only refusals carry a challenge worth reading
                    challenge = challenge_of(message)
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body")
                and not written
            ):
                written = True
                await self.write(scope, note, status, challenge)
            await send(message)

        try:
            await self.app(scope, receive, audited)
        except Exception:
            if not written:
                written = True
                await self.write(scope, note, 500, None)
            raise
        if not written:  # the app returned without finishing an answer
            await self.write(scope, note, status, challenge)

    async def write(self, scope: Scope, note: Note, status: int, challenge: str | None) -> None:
        """Commit the record of the request of ``scope`` (answered with ``status`` and, for a
        refusal, the ``WWW-Authenticate`` value ``challenge``); a failure is logged, not
        raised: the answer is already decided."""
        who = principal_of(scope)
        record = AuditRecord(
            at=self.clock(),
            subject=who.subject if who else None,
            client_id=who.client_id if who else None,
            action=note.action,
            server_name=clean_name(note.name),
            version=clean_version(note.version),
            status=status,
            result=note.result or _result_of(status, challenge),
            detail=note.detail,
            request_id=request_id_of(scope),
            detail_json=note.detail_json,
        )
        metrics.registry_operation(record.action, record.result)
        try:
            await self.writer.write(record)
        except Exception:
            # The answer is already decided (a write is already committed): keep serving, but
            # make the gap impossible to miss.
            log.exception("could not write the registry audit record %r", record)


def challenge_of(message: Message) -> str | None:
    """The ``WWW-Authenticate`` value of an ``http.response.start`` message, if any."""
    return Headers(raw=message.get("headers", [])).get("www-authenticate")


def export_line(record: AuditRecord) -> dict[str, Any]:
    """The JSON-lines form of a record."""
    return {
        "id": record.id,
        "time": format_rfc3339(record.at),
        "sub": record.subject,
        "client_id": record.client_id,
        "action": record.action,
        "server": record.server_name,
        "version": record.version,
        "status": record.status,
        "result": record.result,
        "detail": record.detail,
        "request_id": record.request_id,
    }


async def export(
    db: Database, *, since: int | None = None, subject: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Every record matching the filters, oldest first, as JSON-lines objects."""
    after: int | None = None
    while True:
        async with db.connect() as conn:
            page = await rows.audit_records(
                conn, since=since, subject=subject, after_id=after, limit=_PAGE
            )
        for record in page:
            yield export_line(record)
        if len(page) < _PAGE:
            return
        after = page[-1].id


__all__ = [
    "NOTE",
    "AuditMiddleware",
    "AuditWriter",
    "Note",
    "challenge_of",
    "clean_name",
    "clean_version",
    "export",
    "export_line",
    "note_of",
]
