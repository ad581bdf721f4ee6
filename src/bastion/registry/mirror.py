"""Mirroring an upstream registry (``[[registry.mirrors]]``, ``bastion registry sync``;
docs/registry.md, "Mirroring").

A run of one mirror:

1. takes the mirror's lease in the database (one run at a time across processes;
   :mod:`bastion.store.registry_mirrors`);
2. reads the upstream's ``GET /v0.1/servers`` (:mod:`bastion.registry.mirror_upstream`): the
   first run everything, later runs ``updated_since`` = the high-water mark minus
   :data:`OVERLAP_MS`, with ``include_deleted``; at most ``max_pages`` pages, a longer listing
   continuing at the next run from the stored cursor. A page that is not a registry page stops
   the run before anything is written;
3. takes each document in turn: outside the filters, it is counted and nothing else; a name that
   matches the filters only when case is ignored, a ServerResponse whose official ``_meta`` is
   missing or wrong, or a server.json the registry's own validation refuses, is refused; a
   server that has any version not written by this mirror (published locally, or by another
   mirror), or a version changed locally since the mirror wrote it, is curated and left alone;
   else a new version is added (owned by the mirror's owner, with its groups and approval) and a
   known one follows the upstream (server.json edits; status when ``follow_status``);
4. moves the high-water mark only when the whole listing was read and applied, to the largest
   upstream ``updatedAt`` seen (never past this clock's now).

Every added, updated, curated or refused document gets one audit record (action ``mirror``,
detail naming the mirror), in the same transaction as its change; every run one more (action
``mirror_sync``). ``dry_run`` decides the same way from a read of the database and writes
nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.config import MirrorSettings, Settings
from bastion.logs import get_logger
from bastion.registry.audit import clean_name, clean_version
from bastion.registry.mirror_filter import INSIDE, LOOKALIKE, MirrorFilter
from bastion.registry.mirror_upstream import (
    MAX_PASS_BYTES,
    UpstreamRefused,
    UpstreamUnavailable,
    read_pass,
)
from bastion.registry.names import name_problem
from bastion.registry.problems import Problem
from bastion.registry.read_cache import writing
from bastion.registry.service import Registry
from bastion.registry.times import MillisClock, format_rfc3339, parse_rfc3339, system_millis
from bastion.registry.validation import ValidServer, validate_server
from bastion.store import registry as rows
from bastion.store import registry_mirrors as mirrors
from bastion.store.database import Database
from bastion.store.registry import STATUSES, AuditRecord, Entry

log = get_logger("bastion.registry.mirror")
OFFICIAL = "io.modelcontextprotocol.registry/official"
OVERLAP_MS = 60_000
MAX_STATUS_MESSAGE = 500
Kind = Literal["added", "updated", "curated", "refused", "filtered", "unchanged"]
_AUDITED = {"added": 200, "updated": 200, "curated": 409, "refused": 400}


@dataclass(frozen=True)
class Change:
    """What a run did, or would do, with one upstream document."""

    kind: Kind
    name: str | None
    version: str | None
    reason: str = ""


@dataclass
class SyncReport:
    """The outcome of one run of one mirror."""

    mirror: str
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    pages: int = 0
    complete: bool = False
    since: int | None = None
    high_water: int | None = None
    error: str | None = None
    busy: bool = False

    def count(self, kind: Kind) -> int:
        """How many documents got ``kind``."""
        return sum(1 for c in self.changes if c.kind == kind)

    def counts(self) -> dict[str, int]:
        """Documents per kind."""
        kinds: Sequence[Kind] = ("added", "updated", "curated", "refused", "filtered", "unchanged")
        return {kind: self.count(kind) for kind in kinds}

    def as_json(self) -> dict[str, object]:
        """The report as JSON (``bastion registry sync --json``)."""
        return {
            "mirror": self.mirror,
            "dry_run": self.dry_run,
            "busy": self.busy,
            "error": self.error,
            "pages": self.pages,
            "complete": self.complete,
            "updated_since": format_rfc3339(self.since) if self.since is not None else None,
            "high_water": format_rfc3339(self.high_water) if self.high_water is not None else None,
            "counts": self.counts(),
            "changes": [
                {"kind": c.kind, "name": c.name, "version": c.version, "reason": c.reason}
                for c in self.changes
                if c.kind != "unchanged"
            ],
        }


@dataclass(frozen=True)
class UpstreamVersion:
    """A ServerResponse of the upstream that passed every check."""

    valid: ValidServer
    status: str
    status_message: str | None
    published_at: int
    updated_at: int


class Refused(Exception):
    """A document the mirror refuses, and why."""


def _official(item: dict[str, Any]) -> dict[str, Any]:
    """The registry metadata of a ServerResponse: ``_meta["io.modelcontextprotocol.registry/
    official"]``, or, from a registry that names it otherwise (the generic API leaves the key to
    each registry; bastion's is ``dev.mcp-bastion/registry``), the one ``_meta`` member that
    has a ``status`` and an ``updatedAt``."""
    meta = item.get("_meta")
    if not isinstance(meta, dict):
        raise Refused("no _meta object")
    official = meta.get(OFFICIAL)
    if isinstance(official, dict):
        return official
    found = [v for v in meta.values() if isinstance(v, dict) and "status" in v and "updatedAt" in v]
    if len(found) != 1:
        raise Refused(f'no _meta["{OFFICIAL}"] object (nor one other with status and updatedAt)')
    return found[0]


def _time(official: dict[str, Any], member: str) -> int:
    value = official.get(member)
    try:
        return parse_rfc3339(value) if isinstance(value, str) else -1
    except ValueError:
        return -1


def updated_at_of(item: Any) -> int | None:
    """The upstream ``updatedAt`` of a page item (Unix ms), None when it has none."""
    if not isinstance(item, dict):
        return None
    try:
        found = _time(_official(item), "updatedAt")
    except Refused:
        return None
    return found if found >= 0 else None


def parse_item(item: dict[str, Any], server: dict[str, Any]) -> UpstreamVersion:
    """The checked content of a ServerResponse, or :class:`Refused`."""
    official = _official(item)
    status = official.get("status")
    if status not in STATUSES:
        raise Refused(f"_meta status {str(status)[:40]!r} is not one of {list(STATUSES)}")
    message = official.get("statusMessage")
    if message is not None and (not isinstance(message, str) or len(message) > MAX_STATUS_MESSAGE):
        raise Refused(f"_meta statusMessage is not a string of at most {MAX_STATUS_MESSAGE}")
    updated_at = _time(official, "updatedAt")
    published_at = _time(official, "publishedAt")
    if updated_at < 0 or published_at < 0:
        raise Refused("_meta publishedAt and updatedAt must be RFC 3339 date-times")
    try:
        valid = validate_server(server)
    except Problem as problem:
        reasons = "; ".join(f"{e.location}: {e.message}" for e in problem.errors[:5])
        raise Refused(f"{problem.detail}: {reasons}"[:500]) from None
    return UpstreamVersion(valid, status, message, published_at, updated_at)


def fingerprint(entry: Entry) -> str:
    """A digest of what a mirror writes to a version (its ``is_latest`` aside): a version whose
    digest differs from the one recorded was changed locally."""
    written = {
        "server": entry.server,
        "description": entry.description,
        "status": entry.status,
        "status_message": entry.status_message,
        "groups": sorted(entry.groups),
        "approved": entry.approved,
        "owner": entry.owner_subject,
    }
    text = json.dumps(written, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Decision:
    kind: Kind
    reason: str
    values: dict[str, Any] = field(default_factory=dict)


def _holder() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"


class MirrorSync:
    """Runs of one mirror against one database (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        mirror: MirrorSettings,
        db: Database,
        http: httpx.AsyncClient,
        *,
        clock: MillisClock = system_millis,
    ) -> None:
        self.mirror = mirror
        self.db = db
        self.http = http
        self.clock = clock
        self.filter = MirrorFilter(mirror)
        self.max_document_bytes = settings.registry.max_body_bytes
        self.max_pass_bytes = MAX_PASS_BYTES
        self.registry = Registry(
            db, settings.registry, clock=clock, challenge=lambda scope, dpop: ""
        )

    def __repr__(self) -> str:
        return f"MirrorSync({self.mirror.name!r}, {self.mirror.url!r})"

    @property
    def filters_digest(self) -> str:
        """A digest of what decides which servers the upstream's listing yields here (url,
        filters, follow_status): the mark holds only while it is unchanged."""
        m = self.mirror
        chosen = [m.url, sorted(m.namespaces), sorted(m.names), m.search, m.follow_status]
        return hashlib.sha256(json.dumps(chosen).encode("utf-8")).hexdigest()

    @property
    def lease_millis(self) -> int:
        """How long a run holds the mirror's lease: reading every page, and ten minutes more."""
        return int((self.read_budget + 600) * 1000)

    @property
    def read_budget(self) -> float:
        """The longest a run reads the upstream, in seconds."""
        return self.mirror.timeout_seconds * (self.mirror.max_pages + 1)

    async def run(self, *, dry_run: bool = False) -> SyncReport:
        """One run; a failure (upstream, database) ends up in ``report.error``, the mark
        unchanged."""
        report = SyncReport(self.mirror.name, dry_run)
        holder = _holder()
        now = self.clock()
        if not dry_run:
            async with writing(self.db) as conn:
                taken = await mirrors.claim(
                    conn, self.mirror.name, holder, now, now + self.lease_millis
                )
            if not taken:
                report.busy = True
                return report
        try:
            await self._run(report, holder, dry_run)
        except Exception as exc:  # the database: the mark stays, the next run asks again
            log.debug("mirror %s stopped", self.mirror.name, exc_info=True)
            report.error = (
                f"the run stopped ({exc.__class__.__name__}: {str(exc)[:300]}); the high-water "
                "mark is unchanged, the next run asks from the same point"
            )
        finally:
            if not dry_run:
                async with writing(self.db) as conn:
                    await mirrors.release(conn, self.mirror.name, holder, report.error)
        return report

    async def _run(self, report: SyncReport, holder: str, dry_run: bool) -> None:
        async with self.db.connect() as conn:
            state = await mirrors.mirror_state(conn, self.mirror.name)
        filters = self.filters_digest
        if state is None or state.filters != filters:
            state = mirrors.MirrorState(self.mirror.name)
        cursor, pass_high = state.pass_cursor, state.pass_high
        if cursor is not None:
            since = state.pass_since
        elif state.high_water is not None:
            since = state.high_water - OVERLAP_MS
        else:
            since = None
        report.since = since
        report.high_water = state.high_water
        try:
            async with asyncio.timeout(self.read_budget):
                upstream = await read_pass(
                    self.mirror,
                    self.http,
                    since=since,
                    cursor=cursor,
                    include_deleted=since is not None and self.mirror.follow_status,
                    max_bytes=self.max_pass_bytes,
                )
        except (UpstreamRefused, UpstreamUnavailable, TimeoutError) as exc:
            refused = isinstance(exc, UpstreamRefused)
            report.error = str(exc) or f"reading {self.mirror.url} took over {self.read_budget} s"
            if not dry_run:
                await self._audit_run(report, 502, "refused" if refused else "failed")
            return
        report.pages = upstream.pages
        seen = [t for t in map(updated_at_of, upstream.items) if t is not None]
        for item in upstream.items:
            report.changes.append(await self._one(item, dry_run))
        highest = max([*seen, *([pass_high] if pass_high is not None else [])], default=None)
        report.complete = upstream.next_cursor is None
        if report.complete:
            mark = state.high_water
            if highest is not None:
                mark = max(mark or 0, min(highest, self.clock()))
            report.high_water = mark
            progress: dict[str, Any] = {
                "high_water": mark,
                "pass_cursor": None,
                "pass_since": None,
                "pass_high": None,
            }
        else:
            progress = {
                "high_water": state.high_water,
                "pass_cursor": upstream.next_cursor,
                "pass_since": since,
                "pass_high": highest,
            }
        if dry_run:
            return
        async with writing(self.db) as conn:
            kept = await mirrors.save_progress(
                conn, self.mirror.name, holder, filters=filters, now=self.clock(), **progress
            )
        if not kept:
            report.error = "the run outlived its lease; its progress was not recorded"
        await self._audit_run(report, 200 if kept else 409, "ok" if kept else "lease_lost")

    async def _one(self, item: Any, dry_run: bool) -> Change:
        server = item.get("server") if isinstance(item, dict) else None
        if not isinstance(server, dict):
            return await self._refuse(None, None, "not a ServerResponse ({server, _meta})", dry_run)
        name, version = server.get("name"), server.get("version")
        label = clean_version(version)
        problem = name_problem(name)
        if problem is not None or not isinstance(name, str):
            return await self._refuse(None, label, f"name {problem}", dry_run)
        description = server.get("description")
        verdict = self.filter.verdict(name, description if isinstance(description, str) else "")
        if verdict == LOOKALIKE:
            reason = "the name matches the mirror's filters only when case is ignored"
            return await self._refuse(name, label, reason, dry_run)
        if verdict != INSIDE:
            return Change("filtered", name, label, "outside the mirror's filters")
        try:
            size = len(json.dumps(server, separators=(",", ":")).encode("utf-8"))
            if size > self.max_document_bytes:
                raise Refused(
                    f"the server.json has {size} bytes; a publication may have at most "
                    f"{self.max_document_bytes} (registry.max_body_bytes)"
                )
            upstream = parse_item(item, server)
        except Refused as exc:
            return await self._refuse(name, label, str(exc), dry_run)
        if dry_run:
            async with self.db.connect() as conn:
                decision = await self._decide(conn, upstream)
            return Change(decision.kind, name, upstream.valid.version, decision.reason)
        return await self._apply(upstream)

    async def _decide(self, conn: AsyncConnection, upstream: UpstreamVersion) -> _Decision:
        valid = upstream.valid
        existing = await rows.versions_of(conn, valid.name)
        provenance = await mirrors.provenance_of(conn, valid.name)
        for entry in existing:
            origin = provenance.get(entry.version)
            if origin is None:
                return _Decision("curated", f"version {entry.version} was published locally")
            if origin.mirror != self.mirror.name:
                return _Decision(
                    "curated", f"version {entry.version} comes from mirror {origin.mirror}"
                )
        current = next((e for e in existing if e.version == valid.version), None)
        if current is None:
            if upstream.status == "deleted":
                return _Decision("unchanged", "deleted upstream; not added")
            return _Decision("added", f"status {upstream.status}")
        origin = provenance[valid.version]
        if fingerprint(current) != origin.fingerprint:
            return _Decision("curated", "changed locally since the mirror wrote it")
        if upstream.updated_at < origin.upstream_updated_at:
            # A stale replica or a replayed page must not undo a newer upstream change.
            return _Decision("unchanged", "older than what the mirror has from the upstream")
        values: dict[str, Any] = {}
        if current.server != valid.server:
            values.update(server=valid.server, description=valid.description)
        if self.mirror.follow_status and (
            current.status != upstream.status or current.status_message != upstream.status_message
        ):
            values.update(status=upstream.status, status_message=upstream.status_message)
        if not values:
            return _Decision("unchanged", "")
        what = ", ".join(sorted(values))
        if "status" in values and current.status != upstream.status:
            what += f" ({current.status} -> {upstream.status})"
        return _Decision("updated", what, values)

    async def _apply(self, upstream: UpstreamVersion) -> Change:
        valid = upstream.valid
        async with self.db.connect() as conn:
            first = await self._decide(conn, upstream)
        if first.kind == "unchanged":
            return Change("unchanged", valid.name, valid.version, first.reason)
        now = self.clock()
        async with writing(self.db) as conn:
            if first.kind != "curated":
                await rows.lock_server(conn, valid.name, now)
            decision = await self._decide(conn, upstream) if first.kind != "curated" else first
            if decision.kind == "added":
                await rows.insert_entry(conn, self._new_entry(upstream, now))
            elif decision.kind == "updated":
                values = dict(decision.values, updated_at=now)
                if "status" in values:
                    values["status_changed_at"] = now
                await rows.update_entry(conn, valid.name, valid.version, **values)
            if decision.kind in ("added", "updated"):
                stored = await self.registry.relatest(conn, valid.name, valid.version, now)
                await mirrors.put_provenance(
                    conn,
                    mirrors.Mirrored(
                        valid.name,
                        valid.version,
                        self.mirror.name,
                        upstream.updated_at,
                        fingerprint(stored),
                    ),
                )
            change = Change(decision.kind, valid.name, valid.version, decision.reason)
            if decision.kind in _AUDITED:
                await rows.add_audit(conn, self._record(change, now))
        return change

    def _new_entry(self, upstream: UpstreamVersion, now: int) -> Entry:
        valid = upstream.valid
        return Entry(
            name=valid.name,
            version=valid.version,
            description=valid.description,
            server=valid.server,
            status=upstream.status,
            status_message=upstream.status_message,
            status_changed_at=now,
            # The upstream's order of publication decides the latest version, as upstream.
            published_at=min(upstream.published_at, now),
            updated_at=now,
            is_latest=False,
            owner_subject=self.mirror.owner_subject,
            owner_client_id=None,
            groups=tuple(self.mirror.groups),
            approved=self.mirror.approved,
        )

    async def _refuse(
        self, name: str | None, version: str | None, reason: str, dry_run: bool
    ) -> Change:
        change = Change("refused", name, version, reason)
        if not dry_run:
            async with writing(self.db) as conn:
                await rows.add_audit(conn, self._record(change, self.clock()))
        return change

    def _record(self, change: Change, now: int) -> AuditRecord:
        return AuditRecord(
            at=now,
            subject=self.mirror.owner_subject,
            client_id=None,
            action="mirror",
            server_name=clean_name(change.name),
            version=clean_version(change.version),
            status=_AUDITED.get(change.kind, 200),
            result=change.kind,
            detail={"mirror": self.mirror.name, "reason": change.reason[:500]},
        )

    async def _audit_run(self, report: SyncReport, status: int, result: str) -> None:
        detail: dict[str, Any] = {
            "mirror": self.mirror.name,
            "url": self.mirror.url,
            "pages": report.pages,
            "complete": report.complete,
            **report.counts(),
        }
        if report.error:
            detail["error"] = report.error[:500]
        async with writing(self.db) as conn:
            await rows.add_audit(
                conn,
                AuditRecord(
                    at=self.clock(),
                    subject=self.mirror.owner_subject,
                    client_id=None,
                    action="mirror_sync",
                    server_name=None,
                    version=None,
                    status=status,
                    result=result,
                    detail=detail,
                ),
            )


def chosen_mirrors(settings: Settings, name: str | None) -> list[MirrorSettings]:
    """Every configured mirror, or the one named ``name`` (ValueError naming the others)."""
    configured = settings.registry.mirrors
    if name is None:
        return list(configured)
    found = [m for m in configured if m.name == name]
    if not found:
        known = ", ".join(m.name for m in configured) or "none"
        raise ValueError(f"no mirror named {name!r} in [[registry.mirrors]] (configured: {known})")
    return found


def upstream_client() -> httpx.AsyncClient:
    """The HTTP client mirrors read upstreams with (no redirects, no proxy from the
    environment: the configured url is the one read)."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)


async def sync_now(
    settings: Settings,
    *,
    mirror: str | None = None,
    dry_run: bool = False,
    http: httpx.AsyncClient | None = None,
    clock: MillisClock = system_millis,
) -> list[SyncReport]:
    """``bastion registry sync``: run every mirror (or ``mirror``) once, now."""
    from bastion.authserver.admin import database

    chosen = chosen_mirrors(settings, mirror)
    client = http or upstream_client()
    try:
        async with database(settings) as db:
            return [
                await MirrorSync(settings, m, db, client, clock=clock).run(dry_run=dry_run)
                for m in chosen
            ]
    finally:
        if http is None:
            await client.aclose()


__all__ = [
    "OFFICIAL",
    "OVERLAP_MS",
    "Change",
    "MirrorSync",
    "SyncReport",
    "UpstreamVersion",
    "chosen_mirrors",
    "fingerprint",
    "parse_item",
    "sync_now",
    "updated_at_of",
    "upstream_client",
]
