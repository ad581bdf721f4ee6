"""``/admin/registry``: the private registry's entries waiting for approval, who sees each entry,
and the history of what was published, changed and deleted.

Only when ``registry.enabled``; otherwise every route answers 404. Changes go through the
registry's own service as a registry admin named ``console:<user name>``
(:mod:`bastion.registry.operator`), which writes the registry's history record and the
authorization server's audit record in the change's transaction. Rejecting, withdrawing an
approval, deprecating or deleting, and changing who sees an entry need a fresh sign-in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.authserver.audit import user_names
from bastion.console.guard import Visit, console_page, refused
from bastion.registry.operator import change_entry, operator_caller, operator_registry
from bastion.registry.problems import Problem
from bastion.registry.service import ListRequest, Registry, StatusChange, parse_status_change
from bastion.registry.times import format_rfc3339
from bastion.store import auth_audit
from bastion.store import registry as rows
from bastion.store.registry import STATUSES, AuditRecord, Entry, ListQuery, Visibility

PAGE = 30
HISTORY_PAGE = 20
# API reads fill the registry's audit table; the history shows what changed entries.
READS = ("list", "list_versions", "get", "unknown")
REJECTED = "Rejected by an administrator"
EVERYTHING = Visibility(everything=True, subject=None, groups=frozenset())

NOTICES = {
    "approved": "The entry is approved: the people of its groups see it now.",
    "rejected": "The entry is rejected: it is marked deleted; only administrators see it.",
    "withdrawn": "Its approval is withdrawn: only its publisher and administrators see it.",
    "status_changed": "The entry's status is changed.",
    "visibility_changed": "Who sees the entry is changed.",
    "signed_in_again": "You signed in again. Repeat the action to go on.",
}


def _registry(visit: Visit) -> Registry:
    bastion = visit.bastion
    return operator_registry(
        bastion.db, visit.settings.registry, lambda: auth_audit.millis(bastion.clock())
    )


def _actor(visit: Visit) -> str:
    return f"console:{visit.user.username}"


def _not_enabled(visit: Visit) -> Response:
    return refused(
        visit.request,
        visit.bastion,
        "No registry",
        "The registry is not enabled on this server (registry.enabled in its configuration).",
        404,
    )


def _cursor(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() else None


async def _history(
    visit: Visit, *, server_name: str | None, before: int | None, also: str | None = None
) -> tuple[list[AuditRecord], dict[str, str], int | None]:
    async with visit.bastion.db.connect() as conn:
        found = await rows.recent_audit(
            conn,
            skip_actions=READS,
            server_name=server_name,
            before_id=before,
            limit=HISTORY_PAGE + 1,
        )
        shown = found[:HISTORY_PAGE]
        ids = {r.subject for r in shown if r.subject} | ({also} if also else set())
        names = await user_names(conn, ids)
    more = shown[-1].id if len(found) > HISTORY_PAGE else None
    return shown, names, more


@console_page()
async def registry_page(visit: Visit) -> Response:
    """GET /admin/registry: entries waiting for approval, every entry (searchable, paged), and
    the publish history (paged, newest first)."""
    if not visit.settings.registry.enabled:
        return _not_enabled(visit)
    query = visit.request.query_params
    search = (query.get("q") or "").strip()[:200]
    registry = _registry(visit)
    async with visit.bastion.db.connect() as conn:
        pending = await rows.list_entries(conn, ListQuery(limit=PAGE, approved=False), EVERYTHING)
    cursor = query.get("cursor") or None
    try:
        page = await registry.list_servers(
            operator_caller(_actor(visit)),
            ListRequest(limit=PAGE, cursor=cursor, search=search or None, include_deleted=True),
        )
    except Problem:  # a cursor made by hand: the first page
        page = await registry.list_servers(
            operator_caller(_actor(visit)),
            ListRequest(limit=PAGE, search=search or None, include_deleted=True),
        )
    history, names, older = await _history(
        visit, server_name=None, before=_cursor(query.get("before"))
    )
    return visit.page(
        "registry.html",
        section="/admin/registry",
        notice=visit.notice(NOTICES),
        pending=pending,
        entries=page.entries,
        next_cursor=page.next_cursor,
        search=search,
        history=history,
        names=names,
        older=older,
        when=format_rfc3339,
    )


async def _entry(visit: Visit, name: str, version: str) -> Entry | None:
    async with visit.bastion.db.connect() as conn:
        return await rows.get_entry(conn, name, version)


def _no_entry(visit: Visit, name: str, version: str) -> Response:
    return refused(
        visit.request,
        visit.bastion,
        "No such entry",
        f"The registry has no version {version[:64]!r} of {name[:200]!r}. See the registry page.",
        404,
    )


async def _show_entry(
    visit: Visit, entry: Entry, *, status: int = 200, error: str | None = None
) -> Response:
    history, names, older = await _history(
        visit,
        server_name=entry.name,
        before=_cursor(visit.request.query_params.get("before")),
        also=entry.owner_subject,
    )
    return visit.page(
        "registry_entry.html",
        status=status,
        section="/admin/registry",
        notice=visit.notice(NOTICES),
        error=error,
        entry=entry,
        statuses=STATUSES,
        history=history,
        names=names,
        older=older,
        when=format_rfc3339,
        back=visit.url("/admin/registry/entry") + "?" + _query(entry.name, entry.version),
    )


def _query(name: str, version: str) -> str:
    return urlencode({"name": name, "version": version})


@console_page()
async def entry_page(visit: Visit) -> Response:
    """GET /admin/registry/entry?name=&version=: one version, who sees it, its history."""
    if not visit.settings.registry.enabled:
        return _not_enabled(visit)
    name = visit.request.query_params.get("name", "")
    version = visit.request.query_params.get("version", "")
    entry = await _entry(visit, name, version)
    if entry is None:
        return _no_entry(visit, name, version)
    return await _show_entry(visit, entry)


Maker = Callable[[Visit, Entry], StatusChange]


async def _change(visit: Visit, notice: str, make: Maker) -> Response:
    """Apply the change ``make`` asks for to the form's entry, and go back to its page (or to
    the registry page, from there); the entry's page with the reason when it is not valid."""
    if not visit.settings.registry.enabled:
        return _not_enabled(visit)
    name, version = visit.field("name"), visit.field("version")
    entry = await _entry(visit, name, version)
    if entry is None:
        return _no_entry(visit, name, version)
    try:
        await change_entry(
            _registry(visit),
            _actor(visit),
            name,
            version,
            make(visit, entry),
            request_id=auth_audit.CONTEXT.get().request_id,
        )
    except Problem as problem:
        reasons = "; ".join(e.message for e in problem.errors)
        message = problem.detail + (f" ({reasons})" if reasons else "")
        return await _show_entry(visit, entry, status=problem.status, error=message)
    if visit.field("back") == visit.url("/admin/registry"):
        return visit.done("/admin/registry", notice)
    return visit.done("/admin/registry/entry", notice, name=name, version=version)


_GROUP_SPLIT = re.compile(r"[\s,]+")


def _approval(approved: bool) -> Maker:
    def make(visit: Visit, entry: Entry) -> StatusChange:
        return StatusChange(entry.status, entry.status_message, approved=approved)

    return make


def _rejection(visit: Visit, entry: Entry) -> StatusChange:
    return StatusChange("deleted", REJECTED, approved=False)


def _status_form(visit: Visit, entry: Entry) -> StatusChange:
    """The status form's change (a 400 Problem naming what is wrong)."""
    document: dict[str, object] = {"status": visit.field("status")}
    if visit.field("message"):
        document["statusMessage"] = visit.field("message")
    return parse_status_change(document)


def _visibility_form(visit: Visit, entry: Entry) -> StatusChange:
    """The visibility form's groups, separated by commas or spaces (none: everyone)."""
    groups = [g for g in _GROUP_SPLIT.split(visit.field("groups")) if g]
    document: dict[str, object] = {"status": entry.status, "groups": groups}
    if entry.status_message is not None:
        document["statusMessage"] = entry.status_message
    return parse_status_change(document)


@console_page()
async def approve(visit: Visit) -> Response:
    """POST /admin/registry/approve: the entry is seen by the people of its groups."""
    return await _change(visit, "approved", _approval(True))


@console_page(fresh=True)
async def reject(visit: Visit) -> Response:
    """POST /admin/registry/reject: an entry waiting for approval is marked deleted."""
    return await _change(visit, "rejected", _rejection)


@console_page(fresh=True)
async def withdraw(visit: Visit) -> Response:
    """POST /admin/registry/withdraw: hide an approved entry from everyone but its publisher
    and administrators, until it is approved again."""
    return await _change(visit, "withdrawn", _approval(False))


@console_page(fresh=True)
async def set_status(visit: Visit) -> Response:
    """POST /admin/registry/status: active, deprecated or deleted, with a message."""
    return await _change(visit, "status_changed", _status_form)


@console_page(fresh=True)
async def set_visibility(visit: Visit) -> Response:
    """POST /admin/registry/visibility: the groups that see the entry (none: everyone)."""
    return await _change(visit, "visibility_changed", _visibility_form)


ROUTES: list[BaseRoute] = [
    Route("/admin/registry", registry_page, methods=["GET"]),
    Route("/admin/registry/entry", entry_page, methods=["GET"]),
    Route("/admin/registry/approve", approve, methods=["POST"]),
    Route("/admin/registry/reject", reject, methods=["POST"]),
    Route("/admin/registry/withdraw", withdraw, methods=["POST"]),
    Route("/admin/registry/status", set_status, methods=["POST"]),
    Route("/admin/registry/visibility", set_visibility, methods=["POST"]),
]

__all__ = [
    "NOTICES",
    "ROUTES",
    "approve",
    "entry_page",
    "registry_page",
    "reject",
    "set_status",
    "set_visibility",
    "withdraw",
]
