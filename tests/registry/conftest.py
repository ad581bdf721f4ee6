"""Fixtures of the registry tests: a registry beside a bastion AS, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bastion.config import Settings
from tests.registry.harness import (
    MillisClock,
    Registry,
    RegistryFactory,
    registry_settings,
    running_registry,
)


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
