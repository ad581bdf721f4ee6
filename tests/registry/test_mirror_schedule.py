"""The registry server runs its mirrors in the background: at start and then on their interval;
a failing upstream never takes the registry down, is logged once per failure streak with what
to do, and is retried less and less often (docs/registry.md, "Mirroring")."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from starlette.responses import Response

from bastion.config import MirrorSettings
from bastion.registry.mirror_schedule import MirrorScheduler
from bastion.store.database import Database
from tests.registry.harness import RegistryFactory
from tests.registry.upstream import Upstream
from tests.support.live import serve

LOGGER = "bastion.registry.mirror"


def _mirror(url: str) -> MirrorSettings:
    return MirrorSettings(name="official", url=url, namespaces=["io.github.upstash/*"])


async def test_a_failing_upstream_does_not_take_the_registry_down(
    start_registry: RegistryFactory,
) -> None:
    """The upstream answers 503 to everything: the registry starts, serves, and its audit
    trail shows the failed run."""
    upstream = Upstream(override=lambda query, n: Response("down", status_code=503))
    async with (
        serve(upstream.app()) as url,
        start_registry(anonymous_read=True, mirrors=[_mirror(url)]) as reg,
    ):
        for _ in range(200):
            if upstream.requests:
                break
            await asyncio.sleep(0.05)
        assert upstream.requests, "the mirror did not run at start"
        response = await reg.client.get(f"{reg.base}/servers")
        assert response.status_code == 200 and response.json()["servers"] == []


async def test_the_registry_server_syncs_its_mirrors_in_the_background(
    start_registry: RegistryFactory,
) -> None:
    """With a mirror configured, what the filters allow appears in the registry without any
    command."""
    upstream = Upstream()
    async with (
        serve(upstream.app()) as url,
        start_registry(anonymous_read=True, mirrors=[_mirror(url)]) as reg,
    ):
        names: list[str] = []
        for _ in range(200):
            names = await reg.list_names(None)
            if len(names) == 2:
                break
            await asyncio.sleep(0.05)
        assert names == ["io.github.upstash/context7@1.0.13", "io.github.upstash/context7@1.0.14"]


async def test_a_failure_streak_is_logged_once_and_backs_off(
    start_registry: RegistryFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Three failed runs: one warning naming the mirror, the error and what to do; the delay
    before the next try doubles; the recovery is logged once and the mirror syncs."""
    upstream = Upstream(override=lambda query, n: Response("down", status_code=503))
    async with serve(upstream.app()) as url, start_registry() as reg:
        settings = reg.settings.model_copy(
            update={
                "registry": reg.settings.registry.model_copy(update={"mirrors": [_mirror(url)]})
            }
        )
        db = Database(settings.effective_database_url, schema=settings.database_schema)
        scheduler = MirrorScheduler(settings, db, clock=reg.clock, retry_base=10.0)
        try:
            caplog.set_level(logging.DEBUG, logger=LOGGER)
            delays = []
            for _ in range(3):
                await scheduler.run_one("official")
                delays.append(round(scheduler._due[0].at - time.monotonic()))
            mine = [r for r in caplog.records if r.name == LOGGER]
            warnings = [r for r in mine if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            text = warnings[0].getMessage()
            assert "official" in text and "503" in text and "bastion registry sync" in text
            assert delays == [10, 20, 40]
            upstream.override = None
            await scheduler.run_one("official")
            infos = [r.getMessage() for r in caplog.records if r.name == LOGGER]
            assert "mirror official works again after 3 failed runs" in infos
            assert scheduler._due[0].failures == 0
        finally:
            await scheduler.aclose()
            await db.dispose()
        assert len(await reg.list_names(await reg.admin())) == 2
