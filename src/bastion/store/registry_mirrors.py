"""Rows of registry mirroring: each mirror's progress and lease, and the provenance of the
versions it wrote (docs/registry.md, "Mirroring").

The lease is a row claim, one ``UPDATE … WHERE lease_until < now`` that either database runs
atomically: the process whose update changed the row syncs the mirror until ``lease_until``;
every write of its progress names it, so a run that outlived its lease cannot move the mark.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store.schema import registry_mirrored, registry_mirrors


@dataclass(frozen=True)
class MirrorState:
    """Where a mirror stands: the high-water mark of its last complete pass (Unix ms of the
    upstream's ``updatedAt``) and, when a run stopped at its page limit, the pass to continue."""

    name: str
    high_water: int | None = None
    pass_cursor: str | None = None
    pass_since: int | None = None
    pass_high: int | None = None
    filters: str | None = None
    last_run_at: int | None = None
    last_success_at: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Mirrored:
    """Provenance of one mirrored version."""

    name: str
    version: str
    mirror: str
    upstream_updated_at: int
    fingerprint: str


async def mirror_state(conn: AsyncConnection, name: str) -> MirrorState | None:
    """The stored state of mirror ``name`` (None before its first run)."""
    m = registry_mirrors.c
    row = (await conn.execute(sa.select(registry_mirrors).where(m.name == name))).first()
    if row is None:
        return None
    return MirrorState(
        name=row.name,
        high_water=row.high_water,
        pass_cursor=row.pass_cursor,
        pass_since=row.pass_since,
        pass_high=row.pass_high,
        filters=row.filters,
        last_run_at=row.last_run_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
    )


async def claim(conn: AsyncConnection, name: str, owner: str, now: int, until: int) -> bool:
    """Take mirror ``name``'s lease for ``owner`` until ``until`` unless another holder's lease
    is still running; True when taken."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(registry_mirrors).values(name=name)
    await conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
    m = registry_mirrors.c
    taken = await conn.execute(
        sa.update(registry_mirrors)
        .where(
            m.name == name,
            sa.or_(m.lease_until.is_(None), m.lease_until < now, m.lease_owner == owner),
        )
        .values(lease_owner=owner, lease_until=until, last_run_at=now)
    )
    return taken.rowcount == 1


async def save_progress(
    conn: AsyncConnection,
    name: str,
    owner: str,
    *,
    high_water: int | None,
    pass_cursor: str | None,
    pass_since: int | None,
    pass_high: int | None,
    filters: str,
    now: int,
) -> bool:
    """Record a run's progress, only while ``owner`` holds the lease; True when recorded."""
    m = registry_mirrors.c
    done = await conn.execute(
        sa.update(registry_mirrors)
        .where(m.name == name, m.lease_owner == owner)
        .values(
            high_water=high_water,
            pass_cursor=pass_cursor,
            pass_since=pass_since,
            pass_high=pass_high,
            filters=filters,
            last_success_at=now,
            last_error=None,
        )
    )
    return done.rowcount == 1


async def release(conn: AsyncConnection, name: str, owner: str, error: str | None) -> None:
    """Give the lease back (``error``: why the run failed, kept for the operator)."""
    m = registry_mirrors.c
    values: dict[str, object] = {"lease_owner": None, "lease_until": None}
    if error is not None:
        values["last_error"] = error[:500]
    await conn.execute(
        sa.update(registry_mirrors).where(m.name == name, m.lease_owner == owner).values(**values)
    )


async def provenance_of(conn: AsyncConnection, name: str) -> dict[str, Mirrored]:
    """The mirrored versions of server ``name``, by version."""
    p = registry_mirrored.c
    rows = await conn.execute(sa.select(registry_mirrored).where(p.name == name))
    return {
        r.version: Mirrored(r.name, r.version, r.mirror, r.upstream_updated_at, r.fingerprint)
        for r in rows
    }


async def put_provenance(conn: AsyncConnection, mirrored: Mirrored) -> None:
    """Record (or replace) the provenance of one version."""
    values = {
        "name": mirrored.name,
        "version": mirrored.version,
        "mirror": mirrored.mirror,
        "upstream_updated_at": mirrored.upstream_updated_at,
        "fingerprint": mirrored.fingerprint,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(registry_mirrored).values(**values)
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=["name", "version"],
            set_={k: v for k, v in values.items() if k not in ("name", "version")},
        )
    )


__all__ = [
    "MirrorState",
    "Mirrored",
    "claim",
    "mirror_state",
    "provenance_of",
    "put_provenance",
    "release",
    "save_progress",
]
