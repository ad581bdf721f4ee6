"""``/admin/audit``: the authorization server's audit trail, searched by person, client, type
and time, newest first and paged; ``/admin/audit/export``: the same search as JSON lines (the
lines of ``bastion audit --json``), streamed as a download.

The filters are those of ``bastion audit`` (:mod:`bastion.authserver.audit_query`): a user name,
a client id, an event type (or ``admin.*``), since and until as a duration back from now
(``24h``, ``7d``) or an RFC 3339 time. A filter that cannot be read is named on the page (400).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.datastructures import QueryParams
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bastion.authserver import audit
from bastion.authserver.admin import AdminError
from bastion.authserver.audit_query import TYPES, check_types, filters_of, since_millis
from bastion.console.guard import Visit, console_page
from bastion.console.render import CONSOLE_HEADERS
from bastion.store import auth_audit
from bastion.store.auth_audit import Filters

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
FIELDS = ("user", "client", "type", "since", "until", "limit")
# The types the select offers: every event, and every administrator's change at once.
TYPE_CHOICES = ["admin.*", *TYPES]


class BadFilter(ValueError):
    """A filter of the search that cannot be read (its message is shown on the page)."""


@dataclass(frozen=True)
class Search:
    """The filters of a search as the person wrote them, and the query they make."""

    values: dict[str, str]
    filters: Filters
    limit: int | None


def _time(label: str, value: str, now: int) -> int:
    try:
        return since_millis(value, now)
    except ValueError:
        raise BadFilter(
            f"{label} {value[:64]!r} is neither a duration back from now (like 30m, 24h, 7d, "
            "2w) nor an RFC 3339 time (like 2026-12-01T00:00:00Z)"
        ) from None


async def search_of(visit: Visit, query: QueryParams) -> Search:
    """The search ``query`` asks for; :class:`BadFilter` naming the first filter that cannot
    be read."""
    values = {name: (query.get(name) or "").strip()[:256] for name in FIELDS}
    now = auth_audit.millis(visit.bastion.clock())
    since = _time("Since", values["since"], now) if values["since"] else None
    until = _time("Until", values["until"], now) if values["until"] else None
    if since is not None and until is not None and until <= since:
        raise BadFilter("Until must be later than since")
    limit = None
    if values["limit"]:
        raw = values["limit"]
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
            raise BadFilter(f"Show must be a number from 1 to {MAX_LIMIT}, not {raw[:16]!r}")
        limit = int(raw)
    try:
        types = check_types([values["type"]]) if values["type"] else []
        filters = await filters_of(
            visit.bastion.db,
            username=values["user"] or None,
            client_id=values["client"] or None,
            types=types,
            since=since,
            until=until,
        )
    except AdminError as exc:
        raise BadFilter(_console_words(str(exc), values)) from None
    return Search(values, filters, limit)


def _console_words(message: str, values: dict[str, str]) -> str:
    """An error of the shared filters in the page's words (the CLI's mention its options)."""
    if message.startswith("no audit event type"):
        return f"No event type {values['type'][:64]!r}: choose one from the list."
    if message.startswith("no user named"):
        return (
            f"No person called {values['user'][:64]!r} signs in here. A removed person's records "
            "carry only their id: find it among the admin.user_removed records."
        )
    return message


@console_page()
async def audit_page(visit: Visit) -> Response:
    """GET /admin/audit: the records matching the filters, newest first, a page at a time."""
    query = visit.request.query_params
    try:
        search = await search_of(visit, query)
    except BadFilter as exc:
        values = {name: (query.get(name) or "").strip()[:256] for name in FIELDS}
        return _page(visit, values, [], None, error=str(exc), status=400)
    size = search.limit or DEFAULT_LIMIT
    raw_before = query.get("before") or ""
    before = int(raw_before) if raw_before.isascii() and raw_before.isdigit() else 0
    async with visit.bastion.db.connect() as conn:
        found = await auth_audit.page(conn, search.filters, before_id=before, limit=size + 1)
        shown = found[:size]
        names = await audit.user_names(
            conn, {i for r in shown for i in (r.subject, r.target_id) if i}
        )
    lines = [audit.line_of(record, names) for record in shown]
    older = shown[-1].id if len(found) > size and shown[-1].id is not None else None
    return _page(visit, search.values, lines, older)


def _page(
    visit: Visit,
    values: dict[str, str],
    lines: list[dict[str, object]],
    older: int | None,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    kept = {k: v for k, v in values.items() if v}
    return visit.page(
        "audit.html",
        status=status,
        section="/admin/audit",
        values=values,
        kept=kept,
        lines=lines,
        older=older,
        error=error,
        types=TYPE_CHOICES,
    )


@console_page()
async def export(visit: Visit) -> Response:
    """GET /admin/audit/export: the matching records, oldest first (with a limit: the newest
    that many), as JSON lines in a download."""
    try:
        search = await search_of(visit, visit.request.query_params)
    except BadFilter as exc:
        values = {k: (visit.request.query_params.get(k) or "").strip()[:256] for k in FIELDS}
        return _page(visit, values, [], None, error=str(exc), status=400)
    db = visit.bastion.db

    async def lines() -> AsyncIterator[bytes]:
        async for line in audit.export(db, search.filters, newest=search.limit):
            yield (json.dumps(line, separators=(",", ":")) + "\n").encode()

    stamp = datetime.fromtimestamp(visit.bastion.clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        **CONSOLE_HEADERS,
        "Content-Disposition": f'attachment; filename="bastion-audit-{stamp}.jsonl"',
    }
    return StreamingResponse(lines(), media_type="application/jsonl", headers=headers)


ROUTES: list[BaseRoute] = [
    Route("/admin/audit", audit_page, methods=["GET"]),
    Route("/admin/audit/export", export, methods=["GET"]),
]

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ROUTES",
    "TYPE_CHOICES",
    "BadFilter",
    "Search",
    "audit_page",
    "export",
    "search_of",
]
