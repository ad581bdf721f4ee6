"""Run the authorization server app in-process for tests (lifespan included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bastion.authserver.app import create_app
from bastion.config import Settings


@asynccontextmanager
async def running(settings: Settings, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client bound to the app through ASGITransport, with the lifespan entered."""
    app = create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=settings.issuer, follow_redirects=False
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client
