"""Gateway upstreams listed in the registry from their configuration (``publish = true``;
docs/gateway.md, "Listing an upstream in the registry").

The configuration is the source of truth. Each upstream of an enabled gateway with
``publish = true`` is one registry entry: its ``[gateway.upstreams.registry]`` name, version,
description and groups, and a server.json whose only remote is the gateway's URL of that
upstream (``streamable-http``, ``gateway.public_url`` + ``path``), so what the gateway serves and
what the registry shows cannot drift. :func:`sync_gateway` makes the registry match, server by
server, each in one transaction that locks the server's row:

- **added**: a listed version the registry lacks, approved (the operator wrote it), owned by
  :data:`GATEWAY_OWNER` with no client: that is how the registry knows it made the entry;
- **updated**: a version it made whose document, description or groups differ (the URL moved),
  or that was deleted while the configuration still lists it;
- **deleted**: a version it made that the configuration no longer lists (upstream removed,
  ``publish = false``, another version, the gateway disabled): marked deleted, kept for the
  audit trail and for mirrors that follow ``updated_since``;
- **conflict**: a name that has versions published through the API or imported is never
  touched: the gateway does not overwrite them, and says so.

Every change (and every conflict) is one audit record, action ``gateway``, subject
:data:`GATEWAY_OWNER`, written in the transaction of the change. Entries made otherwise are
never read for a change, let alone written. The registry runs the sync at each start;
``bastion registry sync-gateway [--dry-run]`` runs it on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.config import Settings
from bastion.logs import get_logger
from bastion.private_files import private_dir
from bastion.registry.read_cache import writing
from bastion.registry.service import new_entry
from bastion.registry.times import MillisClock, system_millis
from bastion.registry.validation import SCHEMA_ID, validate_server
from bastion.registry.versions import Candidate, choose_latest
from bastion.store import registry as rows
from bastion.store.database import Database
from bastion.store.registry import AuditRecord, Entry

log = get_logger("bastion.registry.gateway")
GATEWAY_OWNER = "bastion:gateway"
ACTION = "gateway"
REMOVED = "no longer listed by the gateway configuration"
ChangeKind = Literal["added", "updated", "deleted", "conflict"]


@dataclass(frozen=True)
class Listing:
    """The registry entry one upstream's configuration asks for."""

    upstream: str
    url: str
    document: dict[str, Any]
    groups: tuple[str, ...]

    @property
    def name(self) -> str:
        return str(self.document["name"])

    @property
    def version(self) -> str:
        return str(self.document["version"])


@dataclass(frozen=True)
class Change:
    """One change the sync made (or, in a dry run, would make)."""

    kind: ChangeKind
    name: str
    version: str
    detail: str
    upstream: str | None = None
    values: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class SyncReport:
    """What a sync did: the changes, and how many listed entries were already up to date."""

    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0

    def of(self, kind: ChangeKind) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]


def listings(settings: Settings) -> list[Listing]:
    """The entries the configuration asks for (none when the gateway is disabled)."""
    gateway = settings.gateway
    if not gateway.enabled:
        return []
    found: list[Listing] = []
    for upstream in gateway.upstreams:
        if not upstream.publish:
            continue
        options = upstream.registry
        if options.name is None or gateway.public_url is None:  # Settings fills both in
            raise ValueError(f"upstream {upstream.name!r} has no registry name")
        url = gateway.public_url + upstream.path
        document: dict[str, Any] = {
            "$schema": SCHEMA_ID,
            "name": options.name,
            "description": options.description or f"{upstream.name} through the gateway"[:100],
            "version": options.version,
            "remotes": [{"type": "streamable-http", "url": url}],
        }
        validate_server(document)  # the configuration's checks make this pass
        groups = options.groups if options.groups is not None else settings.registry.default_groups
        found.append(Listing(upstream.name, url, document, tuple(sorted(set(groups)))))
    return found


def is_ours(entry: Entry) -> bool:
    """Whether the gateway sync made this entry (never true of a token's publication)."""
    return entry.owner_subject == GATEWAY_OWNER and entry.owner_client_id is None


def plan(versions: Sequence[Entry], listing: Listing | None) -> tuple[list[Change], int]:
    """The changes that make one server's ``versions`` match ``listing`` (None: not listed),
    and 1 when the listed version is already up to date. Pure: no I/O."""
    name = listing.name if listing else versions[0].name
    ours = [e for e in versions if is_ours(e)]
    foreign = [e for e in versions if not is_ours(e)]
    if listing is not None and foreign:
        owners = ", ".join(sorted({f"{e.version} by {e.owner_subject}" for e in foreign}))
        detail = (
            f"{name} has versions published or imported otherwise ({owners}); the gateway "
            "leaves it alone: give the upstream another [gateway.upstreams.registry] name"
        )
        return [Change("conflict", name, listing.version, detail, listing.upstream)], 0
    changes: list[Change] = []
    unchanged = 0
    if listing is not None:
        same = next((e for e in ours if e.version == listing.version), None)
        if same is None:
            detail = f"lists {listing.url}"
            changes.append(Change("added", name, listing.version, detail, listing.upstream))
        else:
            values = _differences(same, listing)
            if values:
                detail = f"{', '.join(sorted(values))} changed; lists {listing.url}"
                changes.append(
                    Change("updated", name, same.version, detail, listing.upstream, values)
                )
            else:
                unchanged = 1
    for entry in ours:
        if entry.status != "deleted" and (listing is None or entry.version != listing.version):
            changes.append(Change("deleted", name, entry.version, REMOVED))
    return changes, unchanged


def _differences(entry: Entry, listing: Listing) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if entry.server != listing.document:
        values["server"] = listing.document
    if entry.description != listing.document["description"]:
        values["description"] = listing.document["description"]
    if tuple(entry.groups) != listing.groups:
        values["groups"] = listing.groups
    if not entry.approved:
        values["approved"] = True
    if entry.status == "deleted":
        values["status"] = "active"
        values["status_message"] = None
    return values


async def sync_gateway(
    settings: Settings, db: Database, *, clock: MillisClock = system_millis, dry_run: bool = False
) -> SyncReport:
    """Make the registry's gateway entries match the configuration (see the module docstring);
    with ``dry_run``, only say what would change."""
    wanted = {listing.name: listing for listing in listings(settings)}
    async with db.connect() as conn:
        names = set(wanted) | set(await rows.names_owned_by(conn, GATEWAY_OWNER))
    report = SyncReport()
    for name in sorted(names):
        listing = wanted.get(name)
        if dry_run:
            async with db.connect() as conn:
                changes, unchanged = plan(await rows.versions_of(conn, name), listing)
        else:
            async with writing(db) as conn:
                changes, unchanged = await _apply(conn, name, listing, clock())
        report.changes += changes
        report.unchanged += unchanged
    for change in report.changes if not dry_run else ():
        level = log.warning if change.kind == "conflict" else log.info
        level("gateway entry %s %s %s: %s", change.name, change.version, change.kind, change.detail)
    return report


async def _apply(
    conn: AsyncConnection, name: str, listing: Listing | None, now: int
) -> tuple[list[Change], int]:
    await rows.lock_server(conn, name, now)
    changes, unchanged = plan(await rows.versions_of(conn, name), listing)
    for change in changes:
        if change.kind == "added" and listing is not None:
            entry = new_entry(
                validate_server(listing.document),
                now,
                owner_subject=GATEWAY_OWNER,
                owner_client_id=None,
                groups=listing.groups,
                approved=True,
            )
            await rows.insert_entry(conn, entry)
        elif change.kind == "updated":
            values = dict(change.values, updated_at=now)
            if "status" in values:
                values["status_changed_at"] = now
            await rows.update_entry(conn, name, change.version, **values)
        elif change.kind == "deleted":
            await rows.update_entry(
                conn,
                name,
                change.version,
                status="deleted",
                status_message=REMOVED,
                status_changed_at=now,
                updated_at=now,
            )
    if any(c.kind != "conflict" for c in changes):
        everything = await rows.versions_of(conn, name)
        latest = choose_latest(
            [Candidate(e.version, e.published_at, e.status, e.approved) for e in everything]
        )
        await rows.set_latest(conn, name, latest, now)
    await rows.add_audits(conn, [_record(change, now) for change in changes])
    return changes, unchanged


async def run_sync(settings: Settings, *, dry_run: bool = False) -> SyncReport:
    """:func:`sync_gateway` on the database of ``settings`` (``bastion registry sync-gateway``)."""
    if settings.database_url is None:
        private_dir(settings.data_dir)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        return await sync_gateway(settings, db, dry_run=dry_run)
    finally:
        await db.dispose()


def _record(change: Change, now: int) -> AuditRecord:
    return AuditRecord(
        at=now,
        subject=GATEWAY_OWNER,
        client_id=None,
        action=ACTION,
        server_name=change.name,
        version=change.version,
        status=409 if change.kind == "conflict" else 200,
        result=change.kind,
        detail={"upstream": change.upstream, "detail": change.detail},
    )


__all__ = [
    "ACTION",
    "GATEWAY_OWNER",
    "REMOVED",
    "Change",
    "Listing",
    "SyncReport",
    "is_ours",
    "listings",
    "plan",
    "run_sync",
    "sync_gateway",
]
