"""Fixtures of the registry's client-side tests: a live AS and registry, seeded.

``backend`` is SQLite only here: the client does not depend on the registry's database (the
registry's own tests and the end-to-end test run on PostgreSQL too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Settings
from tests.registry.live_registry import LiveRegistry, live_registry, seed


@pytest.fixture
def backend(tmp_path: Path) -> dict[str, Any]:
    """SQLite only: the client does not depend on the registry's database (the registry's own
    tests and the end-to-end test run on PostgreSQL too)."""
    return {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"}


@pytest.fixture
async def live(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[LiveRegistry]:
    async with live_registry(make_settings, tmp_path) as running:
        await seed(running)
        yield running
