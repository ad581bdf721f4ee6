"""A mirror of another bastion registry: the generic registry API leaves the key of the registry
metadata in ``_meta`` to each registry (bastion's is ``dev.mcp-bastion/registry``), so a mirror
reads it there when the official key is absent (docs/registry.md, "Mirroring")."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from bastion.config import MirrorSettings, Settings
from bastion.registry.app import create_registry_app
from bastion.registry.mirror import MirrorSync
from bastion.registry.service import Registry, new_entry
from bastion.registry.validation import validate_server
from bastion.store.database import Database
from tests.registry.harness import MillisClock, registry_settings, server_json
from tests.registry.mirroring import Mirroring
from tests.support.live import serve


async def _source_settings(tmp_path: Path) -> Settings:
    """A second registry with its own SQLite database, anonymous read, one server in it."""
    settings = Settings(
        issuer="http://127.0.0.1:1",
        data_dir=tmp_path / "source",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'source.db'}",
        secret_key=secrets.token_urlsafe(32),
        registry=registry_settings(anonymous_read=True),
    )
    db = Database(settings.effective_database_url)
    try:
        await db.upgrade()
        registry = Registry(
            db, settings.registry, clock=MillisClock(), challenge=lambda scope, dpop: ""
        )
        for version in ("1.0.0", "1.1.0"):
            valid = validate_server(server_json("com.acme.team-a/weather", version))
            entry = new_entry(
                valid,
                1_759_000_000_000,
                owner_subject="ops",
                owner_client_id=None,
                groups=(),
                approved=True,
            )
            await registry.insert(entry, 1_759_000_000_000)
    finally:
        await db.dispose()
    return settings


async def test_a_mirror_follows_another_bastion_registry(
    mirroring: Mirroring, tmp_path: Path
) -> None:
    """The source's ServerResponses carry _meta["dev.mcp-bastion/registry"]; the mirror
    imports both versions with their status, the latest as at the source."""
    source = await _source_settings(tmp_path)
    async with httpx.AsyncClient() as jwks, serve(create_registry_app(source, http=jwks)) as url:
        mirror = MirrorSettings(name="peer", url=f"{url}/registry", namespaces=["com.acme.*"])
        report = await MirrorSync(
            mirroring.reg.settings, mirror, mirroring.db, mirroring.http, clock=mirroring.reg.clock
        ).run()
    assert report.error is None, report.error
    assert report.counts()["added"] == 2
    latest = [e.version for e in await mirroring.stored() if e.is_latest]
    assert latest == ["1.1.0"]
