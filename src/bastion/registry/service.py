"""The registry's operations, independent of HTTP: list, read, publish, edit, delete, status.

Each takes the :class:`~bastion.registry.access.Caller` and raises
:class:`~bastion.registry.problems.Problem` for anything it refuses. Changes to a server's
versions run in one transaction that first locks the server's row, so the latest version is
chosen by one writer at a time (:mod:`bastion.registry.versions`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.config import RegistrySettings
from bastion.registry import cursor as cursors
from bastion.registry.access import ADMIN, READ, WRITE, Caller, owns_namespace
from bastion.registry.names import LATEST, namespace_of
from bastion.registry.problems import FieldError, Problem, bad_request, not_found
from bastion.registry.read_cache import writing
from bastion.registry.times import MillisClock
from bastion.registry.validation import PUBLISH_META, ValidServer, check_groups, validate_server
from bastion.registry.versions import Candidate, choose_latest
from bastion.resource.principal import Principal
from bastion.store import registry as rows
from bastion.store.database import Database
from bastion.store.registry import STATUSES, Entry, ListQuery

DEFAULT_LIMIT = 30
MAX_LIMIT = 100
MAX_STATUS_MESSAGE = 500
# Builds the WWW-Authenticate value of a 403 insufficient_scope for the scopes given, in the DPoP
# scheme when the token came with it (a DPoP-bound token, RFC 9449 §7.1), else Bearer.
Challenge = Callable[[str, bool], str]
# Writes the records of a change in its transaction: the entry before and after it.
Recorder = Callable[[AsyncConnection, Entry, Entry], Awaitable[None]]


@dataclass(frozen=True)
class Page:
    """One page of a list and the cursor of the next one (None: no more pages)."""

    entries: list[Entry]
    next_cursor: str | None


@dataclass(frozen=True)
class ListRequest:
    """The parsed query of GET /v0.1/servers."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    search: str | None = None
    updated_since: int | None = None
    version: str | None = None
    include_deleted: bool = False


@dataclass(frozen=True)
class StatusChange:
    """A PATCH .../status body: the new status, and bastion's own approval and groups."""

    status: str
    status_message: str | None = None
    approved: bool | None = None
    groups: tuple[str, ...] | None = None


def parse_status_change(document: dict[str, Any]) -> StatusChange:
    """The StatusUpdateRequest of a PATCH body, or a 400 Problem naming the failing members."""
    errors: list[FieldError] = []
    unknown = sorted(set(document) - {"status", "statusMessage", "approved", "groups"})
    for member in unknown:
        errors.append(FieldError(f"body.{member}", "unknown member"))
    status = document.get("status")
    if status not in STATUSES:
        errors.append(FieldError.of("body.status", f"must be one of {list(STATUSES)}", status))
    message = document.get("statusMessage")
    if message is not None and (not isinstance(message, str) or len(message) > MAX_STATUS_MESSAGE):
        errors.append(
            FieldError.of(
                "body.statusMessage", f"must be a string of at most {MAX_STATUS_MESSAGE}", message
            )
        )
    approved = document.get("approved")
    if approved is not None and not isinstance(approved, bool):
        errors.append(FieldError.of("body.approved", "must be true or false", approved))
    groups = None
    if document.get("groups") is not None:
        groups = check_groups(document["groups"], "body.groups", errors)
    if errors:
        raise Problem(400, "the status change is not valid", errors)
    return StatusChange(str(status), message, approved, groups)


def new_entry(
    valid: ValidServer,
    now: int,
    *,
    owner_subject: str,
    owner_client_id: str | None,
    groups: tuple[str, ...],
    approved: bool,
) -> Entry:
    """A new active entry for a validated server.json (published or imported at ``now``; the
    store decides whether it is the latest)."""
    return Entry(
        name=valid.name,
        version=valid.version,
        description=valid.description,
        server=valid.server,
        status="active",
        status_message=None,
        status_changed_at=now,
        published_at=now,
        updated_at=now,
        is_latest=False,
        owner_subject=owner_subject,
        owner_client_id=owner_client_id,
        groups=groups,
        approved=approved,
    )


class Registry:
    """The registry of one app: its database, settings and clock."""

    def __init__(
        self,
        db: Database,
        settings: RegistrySettings,
        *,
        clock: MillisClock,
        challenge: Challenge,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.challenge = challenge

    def __repr__(self) -> str:
        return f"Registry(db={self.db.url.split('://')[0]!r})"

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (:func:`~bastion.registry.read_cache.writing`: once it is over,
        no answer read before it is served by this process)."""
        async with writing(self.db) as conn:
            yield conn

    # -- checks ---------------------------------------------------------------------------------

    def _need(self, caller: Caller, scope: str) -> Principal:
        if caller.principal is None:
            raise Problem(401, "this operation needs an access token", result="unauthorized")
        if not caller.has(scope):
            names = self.settings.scope_names
            wanted = " ".join(sorted({names.name_of(READ), names.name_of(scope)}))
            raise Problem(
                403,
                f"this operation needs scope {names.name_of(scope)}; the token has "
                f"{' '.join(sorted(caller.principal.scopes)) or 'no scope'}",
                headers={
                    "WWW-Authenticate": self.challenge(wanted, caller.principal.jkt is not None)
                },
                result="insufficient_scope",
            )
        return caller.principal

    def _need_admin(self, caller: Caller) -> None:
        self._need(caller, ADMIN)
        if not caller.is_admin:
            raise Problem(
                403,
                f"{self.settings.scope_names.admin} applies only to the members "
                f"registry.admins lists ({', '.join(self.settings.admins) or 'nobody'}); "
                "you are not one of them",
                result="not_admin",
            )

    def _may_edit(self, caller: Caller, entry: Entry) -> None:
        if caller.is_admin:
            return
        if not owns_namespace(caller, namespace_of(entry.name), self.settings.namespaces):
            raise Problem(
                403,
                f"you may not edit servers under namespace {namespace_of(entry.name)!r}; see "
                "registry.namespaces",
                result="namespace_denied",
            )
        if entry.owner_subject != caller.subject:
            raise Problem(
                403,
                "this version was published by someone else; only they or a registry admin may "
                "change it",
                result="not_owner",
            )

    def _groups_for(self, caller: Caller, valid: ValidServer) -> tuple[str, ...]:
        if valid.groups is None:
            return tuple(sorted(set(self.settings.default_groups)))
        if not caller.is_admin:
            foreign = sorted(set(valid.groups) - caller.groups)
            if foreign:
                raise Problem(
                    403,
                    "you may only give an entry groups you belong to (your token's groups claim)",
                    [FieldError.of(f"body._meta.{PUBLISH_META}.groups", "not yours", foreign)],
                    result="groups_denied",
                )
        return valid.groups

    # -- reads ----------------------------------------------------------------------------------

    def need_read(self, caller: Caller) -> None:
        """Refuse a token without the read scope (anonymous callers pass: anonymous_read)."""
        if caller.principal is not None and not caller.has(READ):
            self._need(caller, READ)

    async def list_servers(self, caller: Caller, request: ListRequest) -> Page:
        """GET /v0.1/servers."""
        self.need_read(caller)
        after = None
        if request.cursor:
            try:
                after = cursors.decode(request.cursor)
            except ValueError as exc:
                raise bad_request(
                    "the cursor is not valid",
                    FieldError.of("query.cursor", str(exc), request.cursor),
                ) from None
        query = ListQuery(
            limit=request.limit + 1,
            after=after,
            search=request.search,
            updated_since=request.updated_since,
            version=None if request.version == LATEST else request.version,
            latest_only=request.version == LATEST,
            # Registry OpenAPI: include_deleted is "always true when updated_since is provided".
            include_deleted=request.include_deleted or request.updated_since is not None,
        )
        async with self.db.connect() as conn:
            found = await rows.list_entries(conn, query, caller.viewer())
        if len(found) > request.limit:
            page = found[: request.limit]
            return Page(page, cursors.encode(page[-1].name, page[-1].version))
        return Page(found, None)

    async def list_versions(
        self, caller: Caller, name: str, *, include_deleted: bool
    ) -> list[Entry]:
        """GET /v0.1/servers/{name}/versions: newest publication first; 404 when none."""
        self.need_read(caller)
        async with self.db.connect() as conn:
            found = await rows.versions_of(conn, name, caller.viewer())
        if not include_deleted:
            found = [e for e in found if e.status != "deleted"]
        if not found:
            raise not_found(f"no server named {name!r}")
        return found

    async def get(self, caller: Caller, name: str, version: str, *, include_deleted: bool) -> Entry:
        """GET /v0.1/servers/{name}/versions/{version|latest}."""
        self.need_read(caller)
        async with self.db.connect() as conn:
            if version == LATEST:
                candidates = await rows.versions_of(conn, name, caller.viewer())
                entry = next((e for e in candidates if e.is_latest), None)
            else:
                entry = await rows.get_entry(conn, name, version, caller.viewer())
        if entry is None or (entry.status == "deleted" and not include_deleted):
            raise not_found(f"no version {version!r} of a server named {name!r}")
        return entry

    # -- writes ---------------------------------------------------------------------------------

    async def publish(self, caller: Caller, document: dict[str, Any]) -> Entry:
        """POST /v0.1/publish: a new version of a server."""
        principal = self._need(caller, WRITE)
        valid = validate_server(document)
        namespace = namespace_of(valid.name)
        if not owns_namespace(caller, namespace, self.settings.namespaces):
            raise Problem(
                403,
                f"you may not publish under namespace {namespace!r}: no registry.namespaces rule "
                "lists you for it",
                [FieldError.of("body.name", "namespace not yours", valid.name)],
                result="namespace_denied",
            )
        now = self.clock()
        entry = new_entry(
            valid,
            now,
            owner_subject=principal.subject,
            owner_client_id=principal.client_id,
            groups=self._groups_for(caller, valid),
            approved=caller.is_admin or self.settings.approve_on_publish,
        )
        return await self.insert(entry, now)

    async def insert(self, entry: Entry, now: int) -> Entry:
        """Store a new version and choose the server's latest; 409 when it exists."""
        async with self._writing() as conn:
            await rows.lock_server(conn, entry.name, now)
            existing = await rows.versions_of(conn, entry.name)
            if any(e.version == entry.version for e in existing):
                raise Problem(
                    409,
                    f"version {entry.version!r} of {entry.name!r} is already published; publish "
                    "a new version, or PUT to change this one",
                    [FieldError.of("body.version", "already published", entry.version)],
                )
            await rows.insert_entry(conn, entry)
            return await self._relatest(conn, entry.name, entry.version, now)

    async def _relatest(self, conn: AsyncConnection, name: str, version: str, now: int) -> Entry:
        everything = await rows.versions_of(conn, name)
        latest = choose_latest(
            [Candidate(e.version, e.published_at, e.status, e.approved) for e in everything]
        )
        await rows.set_latest(conn, name, latest, now)
        entry = await rows.get_entry(conn, name, version)
        if entry is None:  # it was written in this transaction
            raise RuntimeError(f"{name} {version} vanished inside its own transaction")
        return entry

    async def relatest(self, conn: AsyncConnection, name: str, version: str, now: int) -> Entry:
        """Choose ``name``'s latest version in the caller's transaction, which holds the
        server's lock (:func:`~bastion.store.registry.lock_server`); return ``version`` as
        stored."""
        return await self._relatest(conn, name, version, now)

    async def _editable(
        self, conn: AsyncConnection, caller: Caller, name: str, version: str
    ) -> Entry:
        entry = await rows.get_entry(conn, name, version, caller.viewer())
        if entry is None or (entry.status == "deleted" and not caller.is_admin):
            raise not_found(f"no version {version!r} of a server named {name!r}")
        return entry

    async def update(
        self, caller: Caller, name: str, version: str, document: dict[str, Any]
    ) -> Entry:
        """PUT /v0.1/servers/{name}/versions/{version}: replace a version's server.json."""
        self._need(caller, WRITE)
        valid = validate_server(document)
        mismatched = [
            FieldError.of(f"body.{member}", f"must equal the {member} in the URL ({path!r})", got)
            for member, path, got in (
                ("name", name, valid.name),
                ("version", version, valid.version),
            )
            if path != got
        ]
        if mismatched:
            raise bad_request("the body names another server or version", *mismatched)
        now = self.clock()
        async with self._writing() as conn:
            await rows.lock_server(conn, name, now)
            entry = await self._editable(conn, caller, name, version)
            self._may_edit(caller, entry)
            values: dict[str, Any] = {
                "server": valid.server,
                "description": valid.description,
                "updated_at": now,
            }
            if valid.groups is not None:
                values["groups"] = self._groups_for(caller, valid)
            if not caller.is_admin:
                # A changed document needs approving again, unless publications need none.
                values["approved"] = self.settings.approve_on_publish
            await rows.update_entry(conn, name, version, **values)
            return await self._relatest(conn, name, version, now)

    async def delete(self, caller: Caller, name: str, version: str) -> Entry:
        """DELETE /v0.1/servers/{name}/versions/{version}: mark it deleted (kept for audit and
        for mirrors that synchronise with updated_since)."""
        self._need(caller, WRITE)
        now = self.clock()
        async with self._writing() as conn:
            await rows.lock_server(conn, name, now)
            entry = await self._editable(conn, caller, name, version)
            self._may_edit(caller, entry)
            if entry.status == "deleted":
                raise not_found(f"version {version!r} of {name!r} is already deleted")
            await rows.update_entry(
                conn,
                name,
                version,
                status="deleted",
                status_message=None,
                status_changed_at=now,
                updated_at=now,
            )
            return await self._relatest(conn, name, version, now)

    def _changes(self, entry: Entry, change: StatusChange, now: int) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if change.status != entry.status:
            values["status"] = change.status
            values["status_changed_at"] = now
        if change.status_message != entry.status_message:
            values["status_message"] = change.status_message
        if change.approved is not None and change.approved != entry.approved:
            values["approved"] = change.approved
        if change.groups is not None and tuple(change.groups) != tuple(entry.groups):
            values["groups"] = change.groups
        if values:
            values["updated_at"] = now
        return values

    async def set_status(
        self,
        caller: Caller,
        name: str,
        version: str,
        change: StatusChange,
        *,
        record: Recorder | None = None,
    ) -> Entry:
        """PATCH /v0.1/servers/{name}/versions/{version}/status (registry admins); ``record``
        writes the change's audit records in its transaction (an operator's change, which no
        API request records)."""
        self._need_admin(caller)
        now = self.clock()
        async with self._writing() as conn:
            await rows.lock_server(conn, name, now)
            entry = await rows.get_entry(conn, name, version)
            if entry is None:
                raise not_found(f"no version {version!r} of a server named {name!r}")
            values = self._changes(entry, change, now)
            if not values:
                raise bad_request(f"no changes to apply: the status is already {entry.status}")
            await rows.update_entry(conn, name, version, **values)
            changed = await self._relatest(conn, name, version, now)
            if record is not None:
                await record(conn, entry, changed)
            return changed

    async def set_server_status(
        self, caller: Caller, name: str, change: StatusChange
    ) -> tuple[int, list[Entry]]:
        """PATCH /v0.1/servers/{name}/status: every version at once (registry admins)."""
        self._need_admin(caller)
        now = self.clock()
        async with self._writing() as conn:
            await rows.lock_server(conn, name, now)
            everything = await rows.versions_of(conn, name)
            if not everything:
                raise not_found(f"no server named {name!r}")
            changed = 0
            for entry in everything:
                values = self._changes(entry, change, now)
                if values:
                    changed += 1
                    await rows.update_entry(conn, name, entry.version, **values)
            await self._relatest(conn, name, everything[0].version, now)
            return changed, await rows.versions_of(conn, name)


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ListRequest",
    "Page",
    "Recorder",
    "Registry",
    "StatusChange",
    "new_entry",
    "parse_status_change",
]
