"""Registry changes made by an operator of the server (the console's registry page), outside
the registry API: approving an entry, changing its status or the groups that see it.

They go through the registry's own service (:meth:`~bastion.registry.service.Registry.set_status`,
with its checks and its choice of the latest version) as a registry admin named by ``actor``
(``console:<user name>``), and write, in the change's transaction, the two records an API
request would leave and more: a ``registry_audit`` row (subject ``actor``, action
``set_status``, what changed) for the registry's history, and an ``auth_audit`` record per kind
of change (``admin.registry_entry_approved``, ``admin.registry_entry_status_changed``,
``admin.registry_entry_groups_changed``) for the authorization server's trail.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.authserver.admin import changed
from bastion.config import RegistrySettings
from bastion.registry.access import ADMIN, READ, WRITE, Caller
from bastion.registry.service import Registry, StatusChange
from bastion.registry.times import MillisClock
from bastion.resource.principal import Principal
from bastion.store import registry as rows
from bastion.store.auth_audit import Event
from bastion.store.database import Database
from bastion.store.registry import AuditRecord, Entry

ACTION = "set_status"
TARGET_KIND = "registry_entry"


def operator_caller(actor: str) -> Caller:
    """A registry admin standing for ``actor`` (no token: the server's own operator)."""
    scopes = frozenset({READ, WRITE, ADMIN})
    principal = Principal(
        subject=actor, client_id=None, scopes=scopes, claims={}, token_id=None, expires_at=0
    )
    return Caller(principal, scopes, frozenset(), is_admin=True)


def operator_registry(db: Database, settings: RegistrySettings, clock: MillisClock) -> Registry:
    """The registry service on ``db`` for an operator's changes (no token challenge: an
    operator is never asked for a scope)."""
    return Registry(db, settings, clock=clock, challenge=lambda scope, dpop: "")


def _differences(before: Entry, after: Entry) -> dict[str, object]:
    found: dict[str, object] = {}
    for name in ("status", "status_message", "approved", "groups"):
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            found[name] = {
                "from": list(old) if name == "groups" else old,
                "to": list(new) if name == "groups" else new,
            }
    return found


def _events(differences: dict[str, object], after: Entry) -> list[Event]:
    events = []
    if "approved" in differences and after.approved:
        events.append(Event.REGISTRY_ENTRY_APPROVED)
    if (
        "status" in differences
        or "status_message" in differences
        or ("approved" in differences and not after.approved)
    ):
        events.append(Event.REGISTRY_ENTRY_STATUS_CHANGED)
    if "groups" in differences:
        events.append(Event.REGISTRY_ENTRY_GROUPS_CHANGED)
    return events


async def change_entry(
    registry: Registry,
    actor: str,
    name: str,
    version: str,
    change: StatusChange,
    *,
    request_id: str | None = None,
) -> Entry:
    """Apply ``change`` to one version as ``actor``, with its records (see the module);
    :class:`~bastion.registry.problems.Problem` 404 when there is no such version, 400 when
    nothing would change."""

    async def record(conn: AsyncConnection, before: Entry, after: Entry) -> None:
        differences = _differences(before, after)
        await rows.add_audit(
            conn,
            AuditRecord(
                at=registry.clock(),
                subject=actor,
                client_id=None,
                action=ACTION,
                server_name=name,
                version=version,
                status=200,
                result="ok",
                detail=differences,
                request_id=request_id,
            ),
        )
        for event in _events(differences, after):
            await changed(conn, event, TARGET_KIND, f"{name}@{version}", differences)

    return await registry.set_status(operator_caller(actor), name, version, change, record=record)


__all__ = ["ACTION", "TARGET_KIND", "change_entry", "operator_caller", "operator_registry"]
