"""The mirror tests' world: an upstream registry under uvicorn serving the recorded official
pages (:mod:`tests.registry.upstream`), a bastion registry beside a bastion AS (its API for the
operator's changes), and runs of a mirror against the registry's database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from bastion.config import MirrorSettings
from bastion.registry.mirror import MirrorSync, SyncReport
from bastion.store import registry as rows
from bastion.store import registry_mirrors as mirrors
from bastion.store.database import Database
from bastion.store.registry import AuditRecord, Entry, ListQuery, Visibility
from tests.registry.harness import Registry
from tests.registry.upstream import Upstream

EVERYTHING = Visibility(everything=True, subject=None, groups=frozenset())


@dataclass
class Mirroring:
    """An upstream, the registry, its database, and an HTTP client for the mirror."""

    upstream: Upstream
    url: str
    reg: Registry
    db: Database
    http: httpx.AsyncClient

    def mirror(self, **overrides: Any) -> MirrorSettings:
        """Mirror settings reading the upstream (name "official", every namespace)."""
        values: dict[str, Any] = {"name": "official", "url": self.url, "namespaces": ["*"]}
        values.update(overrides)
        return MirrorSettings(**values)

    def sync_of(self, **overrides: Any) -> MirrorSync:
        return MirrorSync(
            self.reg.settings, self.mirror(**overrides), self.db, self.http, clock=self.reg.clock
        )

    async def sync(self, *, dry_run: bool = False, **overrides: Any) -> SyncReport:
        """One run of the mirror."""
        return await self.sync_of(**overrides).run(dry_run=dry_run)

    async def stored(self) -> list[Entry]:
        """Every entry of the registry (deleted ones too), in (name, version) order."""
        query = ListQuery(limit=10_000, include_deleted=True)
        async with self.db.connect() as conn:
            return await rows.list_entries(conn, query, EVERYTHING)

    async def keys(self) -> list[str]:
        """name@version of every stored entry."""
        return [f"{e.name}@{e.version}" for e in await self.stored()]

    async def entry(self, name: str, version: str) -> Entry:
        async with self.db.connect() as conn:
            found = await rows.get_entry(conn, name, version)
        assert found is not None, f"{name}@{version} is not stored"
        return found

    async def audit(self, *actions: str) -> list[AuditRecord]:
        """Audit records of ``actions`` (default: the mirror's), oldest first."""
        async with self.db.connect() as conn:
            records = await rows.audit_records(conn, limit=10_000)
        wanted = actions or ("mirror", "mirror_sync")
        return [r for r in records if r.action in wanted]

    async def state(self, name: str = "official") -> mirrors.MirrorState | None:
        async with self.db.connect() as conn:
            return await mirrors.mirror_state(conn, name)


def results(records: list[AuditRecord]) -> list[tuple[str | None, str | None, str]]:
    """(server, version, result) of per-document audit records."""
    return [(r.server_name, r.version, r.result) for r in records if r.action == "mirror"]


__all__ = ["EVERYTHING", "Mirroring", "results"]
