"""Fixtures of the registry tests: a registry beside a bastion AS, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from bastion.config import Settings
from bastion.store.database import Database
from tests.registry.harness import (
    MillisClock,
    Registry,
    RegistryFactory,
    registry_settings,
    running_registry,
)
from tests.registry.mirroring import Mirroring
from tests.registry.upstream import Upstream
from tests.support.live import serve


@pytest.fixture
def start_registry(make_settings: Callable[..., Settings]) -> RegistryFactory:
    """``async with start_registry(anonymous_read=True) as reg``: registry settings overrides."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Registry]:
        settings = make_settings(registry=registry_settings(**overrides))
        async with running_registry(settings, MillisClock()) as reg:
            yield reg

    return start


@pytest.fixture
async def reg(start_registry: RegistryFactory) -> AsyncIterator[Registry]:
    """A registry with the default test settings (anonymous read off, approval by admins)."""
    async with start_registry() as running:
        yield running


@pytest.fixture
async def mirroring(start_registry: RegistryFactory) -> AsyncIterator[Mirroring]:
    """An upstream serving the recorded official pages, a registry with anonymous read, and the
    registry's database for mirror runs (tests/registry/mirroring.py)."""
    upstream = Upstream()
    async with serve(upstream.app()) as url, start_registry(anonymous_read=True) as reg:
        settings = reg.settings
        db = Database(settings.effective_database_url, schema=settings.database_schema)
        try:
            async with httpx.AsyncClient(trust_env=False) as http:
                yield Mirroring(upstream, url, reg, db, http)
        finally:
            await db.dispose()
